/**
 * The CLI as a user runs it: `bin/notebook-jobs.ts` in a child process, talking over HTTP to one
 * real local service (dynalite on disk, runner child processes, real Python kernels).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliRun } from '../helpers/cli.ts';
import { isEnded, startTestService, type TestService } from '../helpers/local-service.ts';
import { codeCell, joined, makeNotebook, readNotebook, writeNotebook } from '../helpers/notebooks.ts';

const JOB_ID = /job_[0-9A-HJKMNP-TV-Z]{30}/;

let svc: TestService;
let dir: string;
const nb = { greet: '', fail: '', ticker: '', sleeper: '' };

/** Runs the CLI with `args` against the test service (or `url`) and collects what it printed. */
function cli(args: string[], options: { url?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  return runCli(args, { NOTEBOOK_JOBS_URL: options.url ?? svc.server.url }, options.timeoutMs);
}

function jobIdIn(text: string): string {
  const id = JOB_ID.exec(text)?.[0];
  expect(id, `no job id in: ${text}`).toBeDefined();
  return id as string;
}

/** The text column of `logs` output lines (`<ts> <stream> <text>`) of one stream. */
function logTexts(stdout: string, stream: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => /^\S* (\S+) (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === stream)
    .map((m) => m[2] as string);
}

// Jobs that take a kernel are started early and awaited where they are checked, so two kernels
// work at once on this two-core machine.
let greetRun: Promise<CliRun>;
let failRun: Promise<CliRun>;

beforeAll(async () => {
  svc = await startTestService({ maxConcurrentJobs: 4 });
  dir = mkdtempSync(join(tmpdir(), 'notebook-jobs-cli-'));
  nb.greet = await writeNotebook(
    dir,
    'greet.ipynb',
    makeNotebook([
      codeCell('name = "world"  # who to greet\ncount = 1  # how many times', ['parameters']),
      codeCell('for i in range(count):\n    print(f"hello {name} {i}")'),
      codeCell('total = count * 10\nprint("total", total)'),
    ]),
  );
  nb.fail = await writeNotebook(
    dir,
    'fail.ipynb',
    makeNotebook([codeCell('print("before")'), codeCell('x = 1 / 0'), codeCell('print("after")')]),
  );
  nb.ticker = await writeNotebook(
    dir,
    'ticker.ipynb',
    makeNotebook([
      codeCell('import time\nfor i in range(7):\n    print(f"tick {i}", flush=True)\n    time.sleep(0.3)'),
    ]),
  );
  nb.sleeper = await writeNotebook(
    dir,
    'sleeper.ipynb',
    makeNotebook([codeCell('print("started", flush=True)'), codeCell('import time\ntime.sleep(120)')]),
  );
  greetRun = cli(['run', nb.greet, '-p', 'name', '"Ada"', '-p', 'count', '2', '--wait'], {
    timeoutMs: 45_000,
  });
  failRun = cli(['run', nb.fail, '--wait'], { timeoutMs: 45_000 });
  // Handled where awaited; keep an early rejection from being reported as unhandled meanwhile.
  greetRun.catch(() => undefined);
  failRun.catch(() => undefined);
});

afterAll(async () => {
  await Promise.allSettled([greetRun, failRun]);
  await svc?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('help and inspect', () => {
  it('--help exits 0 and lists every command', async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).toBe(0);
    for (const command of ['serve', 'run', 'status', 'logs', 'cancel', 'list', 'result', 'output', 'inspect'])
      expect(stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('inspect prints the kernel and each parameter with its type, default and comment', async () => {
    const { code, stdout, stderr } = await cli(['inspect', nb.greet]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('kernel: python3 (python)');
    expect(stdout).toContain('name: str = "world"  # who to greet');
    expect(stdout).toContain('count: int = 1  # how many times');
  });
});

describe('a completed job', () => {
  let jobId: string;

  it('run -p ... --wait exits 0 and prints completed, the result summary and the output location', async () => {
    const { code, stdout, stderr } = await greetRun;
    expect(code, stderr).toBe(0);
    jobId = jobIdIn(stdout);
    expect(stderr).toContain(`submitted ${jobId}`);
    expect(stdout).toMatch(new RegExp(`^${jobId}  completed  greet\\.ipynb$`, 'm'));
    expect(stdout).toMatch(/^cells: code_cells 4, ok 4, error 0/m);
    expect(stdout).toContain('hello Ada 1');
    expect(stdout).toContain('total 20');
    const location = /^executed notebook: (file:\/\/\S+)$/m.exec(stdout)?.[1];
    expect(location, stdout).toBeDefined();
    const path = fileURLToPath(location as string);
    expect(path.startsWith(svc.dataDir)).toBe(true);
    expect(existsSync(path)).toBe(true);
  });

  it('status shows it completed with its notebook and output', async () => {
    const { code, stdout, stderr } = await cli(['status', jobId]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(`${jobId}  completed  greet.ipynb`);
    expect(stdout).toMatch(/\[#{24}\] 4\/4 cells {2}completed/);
    expect(stdout).toMatch(/^executed notebook: file:\/\//m);
  });

  it('list --status completed lists it, and --status running does not', async () => {
    const completed = await cli(['list', '--status', 'completed']);
    expect(completed.code, completed.stderr).toBe(0);
    expect(completed.stdout).toMatch(new RegExp(`^${jobId}  completed .* greet\\.ipynb$`, 'm'));
    const running = await cli(['list', '--status', 'running']);
    expect(running.code, running.stderr).toBe(0);
    expect(running.stdout).not.toContain(jobId);
  });

  it('result prints per-cell statuses and their output', async () => {
    const { code, stdout, stderr } = await cli(['result', jobId]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^cells: code_cells 4, ok 4, error 0/m);
    expect(stdout).toMatch(/^ {2}\[2\] ok \d+\.\d{2}s {2}hello Ada 0 \| hello Ada 1$/m);
    expect(stdout).toMatch(/^ {2}\[3\] ok \d+\.\d{2}s {2}total 20$/m);
  });

  it('logs prints the lines the notebook printed, in order', async () => {
    const { code, stdout, stderr } = await cli(['logs', jobId]);
    expect(code, stderr).toBe(0);
    expect(logTexts(stdout, 'stdout')).toEqual(['hello Ada 0', 'hello Ada 1', 'total 20']);
    expect(logTexts(stdout, 'runner').at(-1)).toMatch(/^job completed/);
    const tail = await cli(['logs', jobId, '--tail', '1']);
    expect(tail.stdout.trim().split('\n')).toHaveLength(1);
    expect(tail.stdout).toContain('job completed');
  });

  it('output -o writes the executed notebook with the injected values', async () => {
    const file = join(dir, 'executed.ipynb');
    const { code, stdout, stderr } = await cli(['output', jobId, '-o', file]);
    expect(code, stderr).toBe(0);
    expect(stdout.trim()).toBe(`wrote ${file}`);
    const executed = await readNotebook(file);
    expect(executed.nbformat).toBe(4);
    const injected = executed.cells[1];
    expect(injected?.metadata.tags).toContain('injected-parameters');
    expect(joined(injected?.source)).toContain('name = "Ada"');
    expect(joined(injected?.source)).toContain('count = 2');
    const printed = executed.cells[2];
    expect(printed?.cell_type === 'code' && printed.outputs.map((o) => joined(o.text)).join('')).toBe(
      'hello Ada 0\nhello Ada 1\n',
    );
  });

  it('cancel of the ended job exits non-zero with the 409 message', async () => {
    const { code, stdout, stderr } = await cli(['cancel', jobId]);
    expect(code).not.toBe(0);
    expect(stdout).toBe('');
    expect(stderr).toContain(`409: job ${jobId} already ended as completed`);
    const after = await svc.request('GET', `/v1/jobs/${jobId}`);
    expect(after.body.status).toBe('completed');
  });
});

describe('a failing job', () => {
  it('run --wait exits 1 and prints the failing cell and its error', async () => {
    const { code, stdout, stderr } = await failRun;
    expect(code, stderr).toBe(1);
    const jobId = jobIdIn(stdout);
    expect(stdout).toMatch(new RegExp(`^${jobId}  failed  fail\\.ipynb$`, 'm'));
    expect(stdout).toMatch(/^error \(cell_error\) in cell 1: .*ZeroDivisionError/m);
    expect(stdout).toMatch(/^ {2}\[1\] error .*ZeroDivisionError/m);
    expect(stdout).toMatch(/^ {2}\[2\] not_run$/m);
  });
});

describe('a running job', () => {
  it('logs --follow ends by itself when the job ends and prints every line exactly once', async () => {
    const submitted = await cli(['run', nb.ticker]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const jobId = jobIdIn(submitted.stdout);

    const started = Date.now();
    const followed = await cli(['logs', jobId, '--follow'], { timeoutMs: 30_000 });
    expect(followed.code, followed.stderr).toBe(0);
    // It followed the job while it ran (the ticks alone take 2.1 s) and stopped once it ended.
    expect(Date.now() - started).toBeGreaterThan(2000);
    const job = (await svc.request('GET', `/v1/jobs/${jobId}`)).body;
    expect(job.status).toBe('completed');

    const ticks = Array.from({ length: 7 }, (_, i) => `tick ${i}`);
    expect(logTexts(followed.stdout, 'stdout')).toEqual(ticks);
    // Nothing repeated or lost against the whole log read afterwards.
    const whole = await cli(['logs', jobId]);
    const lines = (out: string) => out.split('\n').filter((l) => l.length > 0);
    const followedLines = lines(followed.stdout);
    expect(new Set(followedLines).size).toBe(followedLines.length);
    expect(lines(whole.stdout).slice(0, followedLines.length)).toEqual(followedLines);
  });

  it('run without --wait prints a job id at once; cancel of it while it runs prints cancelled', async () => {
    const submitted = await cli(['run', nb.sleeper, '--tag', 'kind=sleeper']);
    expect(submitted.code, submitted.stderr).toBe(0);
    const jobId = jobIdIn(submitted.stdout);
    expect(submitted.stdout).toMatch(new RegExp(`^${jobId}  (queued|running)$`, 'm'));
    expect(submitted.stdout).toContain(`notebook-jobs status ${jobId}`);

    await svc.waitFor(jobId, (j) => j.progress.current_cell?.index === 1, 30_000);
    const status = await cli(['status', jobId]);
    expect(status.stdout).toContain(`${jobId}  running`);

    const cancelled = await cli(['cancel', jobId]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout.trim()).toBe(`${jobId}  cancelled`);
    const after = await svc.waitFor(jobId, isEnded, 10_000);
    expect(after.status).toBe('cancelled');
  });
});

describe('bad usage', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['run with no notebook', ['run'], /name a notebook file/],
    ['-p with a missing value', ['run', 'greet.ipynb', '-p', 'name'], /-p takes a name and a value/],
    ['an unknown command', ['frobnicate'], /unknown command "frobnicate"/],
    ['output without -o', ['output', 'job_0000000000AAAAAAAAAAAAAAAAAAAA'], /output needs -o FILE/],
    ['an unknown option', ['list', '--colour', 'red'], /--colour/],
    // serve's flags are held to their settings' bounds, as the variables are.
    [
      'too many warm kernels',
      ['serve', '--warm-kernels', '33'],
      /--warm-kernels must be an integer from 0 to 32, got "33"/,
    ],
    [
      'a negative warm pool',
      ['serve', '--warm-kernels=-1'],
      /--warm-kernels must be an integer from 0 to 32/,
    ],
    ['a fractional warm pool', ['serve', '--warm-kernels', '1.5'], /--warm-kernels must be an integer/],
    [
      'no concurrency',
      ['serve', '--max-concurrent', '0'],
      /--max-concurrent must be an integer from 1 to 1000/,
    ],
    ['a port out of range', ['serve', '--port', '70000'], /--port must be an integer from 0 to 65535/],
  ];
  for (const [what, args, message] of cases) {
    it(`${what} exits 2 naming the problem`, async () => {
      const { code, stdout, stderr } = await cli(args);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toMatch(/^notebook-jobs: /);
      expect(stderr).toMatch(message);
    });
  }

  it('an unreachable service gives a clear message and a non-zero exit', async () => {
    const url = 'http://127.0.0.1:1';
    const { code, stdout, stderr } = await cli(['list'], { url });
    expect(code).not.toBe(0);
    expect(stdout).toBe('');
    expect(stderr).toContain(`cannot reach ${url}`);
    expect(stderr).toContain('notebook-jobs serve');
    expect(stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
  });
});
