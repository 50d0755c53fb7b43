/**
 * What a job may produce, with real kernels: the engines send output in bounded events; the runner
 * caps log lines and log bytes (the job goes on), and fails a job whose executed notebook is over
 * the output limit, saving it cut down. The runner runs against the DynamoDB store on dynalite,
 * file artifacts and a log file, as in runner.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogReader, FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import type { JobRecord } from '../../lambda/core/job.ts';
import type { LogLine } from '../../lambda/core/ports.ts';
import { parseNotebookText } from '../../lambda/notebook/notebook.ts';
import { DEFAULT_LIMITS, type RunnerLimits } from '../../container/runner/limits.ts';
import { runJob } from '../../container/runner/runner.ts';
import { codeCell, joined, makeNotebook, writeNotebook } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';
import { runningJob as startedJob } from '../helpers/jobs.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const db = dynalite({ createTableMs: 0 });
const work = mkdtempSync(join(tmpdir(), 'notebook-jobs-limits-'));
const artifacts = new FileArtifacts({ root: join(work, 'artifacts'), workspace: work });
const logsFolder = join(work, 'logs');
let store: DynamoDbJobStore;

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  const client = createDocumentClient({ endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}` });
  await createJobTable(client, 'limits');
  store = new DynamoDbJobStore({ client, tableName: 'limits' });
});
afterAll(async () => {
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

const runningJob = (notebook: object) => startedJob(store, artifacts, notebook);

/** Runs a job with the nbclient engine under `limits`; returns its outcome and whole log. */
async function run(job: JobRecord, limits: Partial<RunnerLimits>) {
  const logs = new FileLogSink(jobLogPath(logsFolder, job.job_id));
  try {
    const outcome = await runJob(job.job_id, {
      store,
      artifacts,
      logs,
      python: TEST_PYTHON,
      engine: 'nbclient',
      workDir: join(work, 'w', job.job_id),
      limits: { ...DEFAULT_LIMITS, ...limits },
    });
    const page = await new FileLogReader(logsFolder).read(job, { limit: 100_000 });
    expect(page.at_end).toBe(true);
    return { outcome, log: page.lines, logBytes: statSync(jobLogPath(logsFolder, job.job_id)).size };
  } finally {
    await logs.close();
  }
}

const isLimitLine = (l: LogLine) => l.stream === 'runner' && l.text.startsWith('log limit reached');

describe('runner limits', () => {
  it('keeps a job that prints past the log limit running, and ends its output with the limit line', async () => {
    const job = await runningJob(
      makeNotebook([
        codeCell("for i in range(20000):\n    print(f'line {i}')"),
        codeCell("print('after the flood')\nx = 42"),
      ]),
    );
    const { outcome, log, logBytes } = await run(job, { maxLogBytes: 32 * 1024 });
    expect(outcome.status).toBe('completed');
    expect((await store.get(job.job_id))?.progress).toMatchObject({ cells_executed: 2, percent: 100 });

    const limitAt = log.findIndex(isLimitLine);
    expect(limitAt).toBeGreaterThan(100);
    expect(log.filter(isLimitLine)).toHaveLength(1);
    // Output up to the limit, in order; after it only the runner's own lines (how the job ended).
    const printed = log.slice(0, limitAt).filter((l) => l.stream === 'stdout');
    expect(printed.map((l) => l.text)).toEqual(printed.map((_, i) => `line ${i}`));
    const after = log.slice(limitAt + 1);
    expect(after.every((l) => l.stream === 'runner')).toBe(true);
    expect(after.map((l) => l.text)).toContain('job completed');
    expect(log.some((l) => l.text === 'after the flood')).toBe(false);
    expect(logBytes).toBeLessThan(32 * 1024 + 64 * 1024);
  });

  it('cuts one 5 MB line to the line limit and marks it truncated; the lines after it are whole', async () => {
    const job = await runningJob(
      makeNotebook([
        codeCell("import sys\nsys.stdout.write('y' * 5_000_000)\nprint()\nprint('next line')"),
        codeCell("print('é' * 3000)"),
      ]),
    );
    const { outcome, log } = await run(job, { maxLogLineBytes: 1024 });
    expect(outcome.status).toBe('completed');
    const stdout = log.filter((l) => l.stream === 'stdout');
    expect(stdout).toEqual([
      expect.objectContaining({ text: 'y'.repeat(1024), truncated: true }),
      expect.objectContaining({ text: 'next line' }),
      expect.objectContaining({ text: 'é'.repeat(512), truncated: true }),
    ]);
    expect(stdout[1]?.truncated).toBeUndefined();
    // The notebook keeps the whole output: only the log is capped.
    const saved = parseNotebookText(readFileSync(new URL(job.output_uri)));
    expect(joined(saved.cells[0]?.outputs?.[0]?.text as string[]).length).toBeGreaterThan(5_000_000);
  });

  it('fails a job whose executed notebook is over the output limit, saving it cut down', async () => {
    const job = await runningJob(
      makeNotebook([
        codeCell("print('x' * 2_000_000)"),
        codeCell("print('small output kept')"),
        codeCell('21 * 2'),
      ]),
    );
    const { outcome, log } = await run(job, { maxOutputBytes: 256 * 1024 });
    expect(outcome.status).toBe('failed');
    expect(outcome.error?.type).toBe('output_too_large');
    expect(outcome.error?.message).toMatch(
      /the executed notebook is \d+ bytes .* over the output limit of 262144 bytes/,
    );
    expect(outcome.error?.message).toContain('NOTEBOOK_JOBS_MAX_OUTPUT_BYTES');

    const stored = await store.get(job.job_id);
    expect(stored).toMatchObject({ status: 'failed', output_saved: true, error: outcome.error });
    const body = readFileSync(new URL(job.output_uri));
    expect(body.length).toBeLessThanOrEqual(256 * 1024);
    const saved = parseNotebookText(body);
    expect(saved.cells[0]?.outputs).toEqual([
      expect.objectContaining({
        output_type: 'stream',
        name: 'stderr',
        text: expect.stringMatching(/output removed: \d+ bytes/),
      }),
    ]);
    expect(saved.cells[1]?.outputs).toHaveLength(1);
    expect(joined(saved.cells[1]?.outputs?.[0]?.text as string[])).toBe('small output kept\n');
    const result = saved.cells[2]?.outputs?.[0] as { output_type: string; data: Record<string, string[]> };
    expect(result.output_type).toBe('execute_result');
    expect(joined(result.data['text/plain'])).toBe('42');
    expect(saved.cells[2]?.execution_count).toBe(3);
    expect(log.some((l) => l.stream === 'runner' && l.text === outcome.error?.message)).toBe(true);
  });
});

/**
 * A log sink slower than the kernel: it takes 500 lines every 10 ms (50,000 a second; a kernel
 * prints several times that) and says it is behind past 1,000 queued lines.
 */
class SlowSink {
  readonly taken: LogLine[] = [];
  private queue: LogLine[] = [];
  private waiters: Array<() => void> = [];
  maxQueued = 0;
  private readonly timer = setInterval(() => this.take(500), 10);

  write(line: LogLine): void {
    this.queue.push(line);
    this.maxQueued = Math.max(this.maxQueued, this.queue.length);
  }
  get backlogged(): boolean {
    return this.queue.length > 1000;
  }
  drained(): Promise<void> {
    return this.backlogged ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve();
  }
  async flush(): Promise<void> {
    while (this.queue.length) await new Promise((r) => setTimeout(r, 10));
  }
  close(): void {
    clearInterval(this.timer);
  }
  private take(count: number): void {
    this.taken.push(...this.queue.splice(0, count));
    if (this.backlogged) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

describe('runner backpressure', () => {
  it('pauses the engine while the log sink is behind: its queue stays bounded and no line is lost', async () => {
    const total = 200_000;
    const job = await runningJob(makeNotebook([codeCell(`for i in range(${total}):\n    print(i)`)]));
    const sink = new SlowSink();
    try {
      const outcome = await runJob(job.job_id, {
        store,
        artifacts,
        logs: sink,
        python: TEST_PYTHON,
        engine: 'nbclient',
        workDir: join(work, 'w', job.job_id),
      });
      expect(outcome).toEqual({ status: 'completed', error: null });
    } finally {
      sink.close();
    }
    const printed = sink.taken.filter((l) => l.stream === 'stdout').map((l) => l.text);
    expect(printed).toEqual(Array.from({ length: total }, (_, i) => String(i)));
    // Past 1,000 lines the runner stops reading the engine; what it already read (one pipe read
    // of output events, at most 64 KiB: ~22,000 short lines) still goes in. Without the pause the
    // queue holds most of the 200,000 lines.
    expect(sink.maxQueued).toBeLessThan(1000 + 25_000);
  });
});

describe.each([
  { name: 'nbclient', script: 'container/engines/nbclient_driver.py', env: {} },
  {
    name: 'papermill (fake package)',
    script: 'container/engines/papermill_driver.py',
    env: { PYTHONPATH: join(ROOT, 'test/fixtures/fake-papermill') },
  },
])('the $name engine', ({ script, env }) => {
  it('sends a 5 MB print and a 1 MB result as bounded output events', async () => {
    const dir = mkdtempSync(join(work, 'engine-'));
    const input = await writeNotebook(
      dir,
      'in.ipynb',
      makeNotebook([
        codeCell("import sys\nsys.stdout.write('€' * 5_000_000 + '\\n')"),
        codeCell("'r' * 1_000_000"),
      ]),
    );
    const child = spawn(
      TEST_PYTHON,
      [join(ROOT, script), '--input', input, '--output', join(dir, 'out.ipynb'), '--events-fd', '1'],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);

    const lines = stdout.split('\n').filter(Boolean);
    const events = lines.map(
      (l) => JSON.parse(l) as { event: string; index?: number; stream?: string; text?: string },
    );
    // No event line grows with the output: at most 16 Ki characters of text, escaped as JSON.
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(16 * 1024 * 6 + 200);
    const textOf = (index: number, stream: string) =>
      events
        .filter((e) => e.event === 'output' && e.index === index && e.stream === stream)
        .map((e) => e.text)
        .join('');
    expect(textOf(0, 'stdout')).toBe(`${'€'.repeat(5_000_000)}\n`);
    expect(textOf(1, 'output')).toBe(`'${'r'.repeat(1_000_000)}'`);
    expect(events.filter((e) => e.event === 'output').length).toBeGreaterThan(300);
  });
});
