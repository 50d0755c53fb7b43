/**
 * The runner on its own (no server): a real kernel, the DynamoDB store on dynalite wrapped to
 * count writes, file artifacts and logs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import {
  htmlOutputKey,
  inputKey,
  type JobChanges,
  type JobRecord,
  type JobStatus,
} from '../../lambda/core/job.ts';
import { REDACTED_PARAMETERS_FILE } from '../../lambda/core/secrets.ts';
import { RunnerControl, runJob, type RunnerDeps } from '../../container/runner/runner.ts';
import { NbconvertRenderer } from '../../lambda/adapters/nbconvert-renderer.ts';
import type { NotebookRenderer } from '../../lambda/core/ports.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import type { LogFields } from '../../lambda/core/logging.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';
import { runningJob as startedJob } from '../helpers/jobs.ts';

const db = dynalite({ createTableMs: 0 });
const work = mkdtempSync(join(tmpdir(), 'notebook-jobs-runner-'));
let store: DynamoDbJobStore;
const artifacts = new FileArtifacts({ root: join(work, 'artifacts'), workspace: work });

/** Records every update the runner makes. */
class CountingStore extends DynamoDbJobStore {
  updates: JobChanges[] = [];
  override async update(jobId: string, from: readonly JobStatus[], changes: JobChanges): Promise<JobRecord> {
    this.updates.push(changes);
    return super.update(jobId, from, changes);
  }
}

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  const client = createDocumentClient({ endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}` });
  await createJobTable(client, 'runner');
  store = new CountingStore({ client, tableName: 'runner' });
});
afterAll(async () => {
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

const runningJob = (notebook: object, overrides?: Partial<JobRecord>) =>
  startedJob(store, artifacts, notebook, overrides);

/** Runs a job with the nbclient engine and a log file, as the runner entry point would. */
async function run(
  job: JobRecord,
  progressIntervalMs?: number,
  control?: RunnerControl,
  renderer?: NotebookRenderer,
  tenant?: string,
  extra: Partial<RunnerDeps> = {},
) {
  const logs = new FileLogSink(jobLogPath(join(work, 'logs'), job.job_id));
  try {
    return await runJob(
      job.job_id,
      {
        store,
        artifacts,
        logs,
        python: TEST_PYTHON,
        engine: 'nbclient',
        workDir: join(work, 'w', job.job_id),
        progressIntervalMs,
        renderer,
        tenant,
        ...extra,
      },
      control,
    );
  } finally {
    await logs.close();
  }
}

describe('runner', () => {
  it('writes progress at most every interval however many cells run, and every stage change', async () => {
    const cells = Array.from({ length: 400 }, (_, i) => codeCell(`v = ${i}`));
    const job = await runningJob(makeNotebook([...cells, codeCell('import time\ntime.sleep(0.6)')]));
    const counting = store as CountingStore;
    counting.updates = [];
    const started = Date.now();
    const outcome = await run(job, 250);
    const seconds = (Date.now() - started) / 1000;
    expect(outcome.status).toBe('completed');

    const stages = counting.updates.filter((u) => u.stage && u.status === undefined).map((u) => u.stage);
    expect([...new Set(stages)]).toEqual(['starting_kernel', 'executing', 'saving']);
    // 401 cells, but writes are bounded by time: at most one per interval plus the stage changes.
    const progressWrites = counting.updates.filter((u) => u.progress && u.status === undefined).length;
    expect(progressWrites).toBeLessThanOrEqual(Math.ceil(seconds / 0.25) + 4);
    expect(progressWrites).toBeLessThan(40);

    const final = await store.get(job.job_id);
    expect(final?.progress).toMatchObject({ cells_total: 401, cells_executed: 401, percent: 100 });
    expect(final?.stage).toBeNull();
    expect(final?.output_saved).toBe(true);
    const saved = JSON.parse(readFileSync(new URL(final?.output_uri as string), 'utf8'));
    expect(saved.cells[399].execution_count).not.toBeNull();
  });

  it("refuses a job of another tenant than the one it was started for (AWS: its credentials are that tenant's)", async () => {
    const job = await runningJob(makeNotebook([codeCell('open("ran", "w").write("x")')]));
    const outcome = await run(job, undefined, undefined, undefined, `not-${job.tenant}`);
    expect(outcome).toMatchObject({ status: 'failed', error: { type: 'infrastructure' } });
    expect(outcome.error?.message).toMatch(/belongs to another tenant/);
    expect(existsSync(join(work, 'w', job.job_id, 'ran'))).toBe(false);
  });

  it('does nothing for a job that is no longer running', async () => {
    const job = await runningJob(makeNotebook([codeCell('x = 1')]));
    await store.update(job.job_id, ['running'], { status: 'cancelled' });
    const outcome = await run(job);
    expect(outcome.status).toBe('skipped');
    expect((await store.get(job.job_id))?.status).toBe('cancelled');
    expect(await artifacts.exists(job.output_uri)).toBe(false);
  });

  it('leaves a job whose task was stopped without a cancel (Spot interruption) to reconciliation, keeping the partial notebook', async () => {
    // With a redacted parameter: its values stay for the attempt a requeue would start.
    const job = await runningJob(
      makeNotebook([
        codeCell('api_key = "[redacted]"', ['injected-parameters']),
        codeCell('print("started", flush=True)'),
        codeCell('import time\ntime.sleep(120)'),
      ]),
      { input_parameterized: true, parameters: { api_key: '[redacted]' }, redact_parameters: ['api_key'] },
    );
    const values = inputKey(job.tenant, job.job_id, REDACTED_PARAMETERS_FILE);
    await artifacts.put(values, JSON.stringify({ api_key: 'sk-live-12345' }));
    const control = new RunnerControl();
    const running = run(job, 100, control);
    for (let i = 0; i < 200 && (await store.get(job.job_id))?.progress.cells_executed !== 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    control.stop('interrupted');
    const outcome = await running;
    expect(await artifacts.exists(artifacts.uriFor(values))).toBe(true);
    // Reconciliation requeues it (or fails it) from the task's stop code: the runner writes no ending.
    expect(outcome).toEqual({ status: 'skipped', error: null });
    const final = await store.get(job.job_id);
    expect(final).toMatchObject({ status: 'running', error: null });
    const saved = JSON.parse(readFileSync(new URL(final?.output_uri as string), 'utf8'));
    expect(saved.cells[1].outputs[0].text.join('')).toBe('started\n');
    expect(JSON.stringify(saved)).not.toContain('sk-live-12345');
  });

  it('saves an HTML copy beside the executed notebook when given a renderer; a failing one costs nothing else', async () => {
    const job = await runningJob(makeNotebook([codeCell('print("rendered " + str(6 * 7))')]));
    const outcome = await run(job, undefined, undefined, new NbconvertRenderer(TEST_PYTHON));
    expect(outcome.status).toBe('completed');
    const html = (
      await artifacts.read(artifacts.uriFor(htmlOutputKey(job.tenant, job.job_id, 'nb.ipynb')))
    ).toString();
    expect(html).toContain('<html');
    expect(html).toContain('rendered 42');

    const other = await runningJob(makeNotebook([codeCell('x = 1')]));
    const broken: NotebookRenderer = { html: async () => Promise.reject(new Error('no nbconvert here')) };
    expect((await run(other, undefined, undefined, broken)).status).toBe('completed');
    expect(
      await artifacts.exists(artifacts.uriFor(htmlOutputKey(other.tenant, other.job_id, 'nb.ipynb'))),
    ).toBe(false);
    const log = readFileSync(jobLogPath(join(work, 'logs'), other.job_id), 'utf8');
    expect(log).toContain('no HTML copy: no nbconvert here');
  });
});

describe('the stored notebook', () => {
  /** A parameters cell saying x = 5, and a cell printing x. */
  const declared = () =>
    makeNotebook([codeCell('x = 5', ['parameters']), codeCell('print(f"x is {x}", flush=True)')]);
  const printed = (job: JobRecord) => readFileSync(jobLogPath(join(work, 'logs'), job.job_id), 'utf8');

  it('runs exactly as submit stored it: parameters are not injected again, cells_total comes from the record', async () => {
    // The record's parameters say x = 1; injecting them again would print "x is 1".
    const job = await runningJob(declared(), {
      parameters: { x: 1 },
      input_parameterized: true,
      progress: { cells_total: 2, cells_executed: 0, percent: 0, current_cell: null },
    });
    const outcome = await run(job);
    expect(outcome.status).toBe('completed');
    expect(printed(job)).toContain('x is 5');
    const final = await store.get(job.job_id);
    expect(final?.progress).toMatchObject({ cells_total: 2, cells_executed: 2, percent: 100 });
    const saved = JSON.parse(readFileSync(new URL(final?.output_uri as string), 'utf8'));
    expect(saved.cells).toHaveLength(2);
  });

  it('injects the parameters itself for a job submitted before inputs were stored parameterized', async () => {
    const job = await runningJob(declared(), { parameters: { x: 1 } });
    expect((await run(job)).status).toBe('completed');
    expect(printed(job)).toContain('x is 1');
    expect((await store.get(job.job_id))?.progress).toMatchObject({ cells_total: 3, cells_executed: 3 });
  });

  it("logs a mismatch between the record's cells_total and the engine's count, with job_id and tenant", async () => {
    const job = await runningJob(declared(), {
      input_parameterized: true,
      progress: { cells_total: 7, cells_executed: 0, percent: 0, current_cell: null },
    });
    const logged: Array<[string, LogFields | undefined]> = [];
    const log = (message: string, fields?: LogFields) => void logged.push([message, fields]);
    expect((await run(job, undefined, undefined, undefined, undefined, { log })).status).toBe('completed');
    expect(printed(job)).toContain('the engine will run 2 cells; the job counted 7');
    expect(logged).toEqual([
      [
        'cells_total mismatch between the job and the engine',
        { job_id: job.job_id, tenant: job.tenant, cells_total: 7, engine_cells_total: 2 },
      ],
    ]);
  });
});
