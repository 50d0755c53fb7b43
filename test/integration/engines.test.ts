/**
 * The engine drivers (container/engines/*_driver.py) against real kernels: events, endings, exit
 * codes and the output notebook, as container/engines/README.md specifies. The papermill driver
 * runs against the fake papermill in test/fixtures/fake-papermill (papermill is not installable
 * here), which executes on the real nbclient.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobError } from '../../lambda/core/job.ts';
import {
  codeCell,
  joined,
  makeNotebook,
  markdownCell,
  readNotebook,
  writeNotebook,
  type CodeCell,
  type Notebook,
  type NotebookCell,
} from '../helpers/notebooks.ts';
import { processesMentioning } from '../helpers/local-service.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PYTHON = process.env.NOTEBOOK_JOBS_PYTHON ?? '/usr/bin/python3';

interface Driver {
  name: string;
  script: string;
  env: Record<string, string>;
}

const DRIVERS: Driver[] = [
  {
    name: 'nbclient',
    script: path.join(ROOT, 'container/engines/nbclient_driver.py'),
    env: {},
  },
  {
    name: 'papermill (fake package)',
    script: path.join(ROOT, 'container/engines/papermill_driver.py'),
    env: { PYTHONPATH: path.join(ROOT, 'test/fixtures/fake-papermill') },
  },
];

interface EngineEvent {
  event: string;
  cells_total?: number;
  pid?: number | null;
  index?: number;
  stream?: string;
  text?: string;
  status?: string;
  duration_seconds?: number;
  error?: JobError | null;
}

interface Received {
  event: EngineEvent;
  /** performance.now() when the line arrived */
  at: number;
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  exitedAt: number;
  stderr: string;
  events: EngineEvent[];
}

interface DriverRun {
  child: ChildProcess;
  received: Received[];
  waitFor(predicate: (e: EngineEvent) => boolean, timeoutMs?: number): Promise<Received>;
  ended: Promise<Ended>;
}

const running = new Set<ChildProcess>();

function startDriver(driver: Driver, args: string[]): DriverRun {
  const child = spawn(PYTHON, [driver.script, ...args], {
    // fd 3 is the events pipe
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: '1', ...driver.env },
  });
  running.add(child);
  const received: Received[] = [];
  const listeners = new Set<() => void>();
  const notify = () => [...listeners].forEach((listener) => listener());
  let stderr = '';
  let exitedAt = 0;
  let closed = false;
  child.stdout!.resume();
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdio[3] as Readable }).on('line', (line) => {
    let event: EngineEvent;
    try {
      event = JSON.parse(line) as EngineEvent;
    } catch {
      event = { event: 'unparseable', text: line };
    }
    received.push({ event, at: performance.now() });
    notify();
  });
  child.on('exit', () => (exitedAt = performance.now()));
  const ended = new Promise<Ended>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      closed = true;
      running.delete(child);
      notify();
      resolve({ code, signal, exitedAt, stderr, events: received.map((r) => r.event) });
    });
  });

  function waitFor(predicate: (e: EngineEvent) => boolean, timeoutMs = 30_000): Promise<Received> {
    return new Promise((resolve, reject) => {
      const stop = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      const fail = (why: string) => {
        stop();
        const seen = received.map((r) => JSON.stringify(r.event)).join('\n');
        reject(new Error(`${why}\nevents:\n${seen}\nstderr:\n${stderr}`));
      };
      const check = () => {
        const hit = received.find((r) => predicate(r.event));
        if (hit) {
          stop();
          resolve(hit);
        } else if (closed) {
          fail('the driver exited before the awaited event');
        }
      };
      const timer = setTimeout(() => fail(`no awaited event within ${timeoutMs} ms`), timeoutMs);
      listeners.add(check);
      check();
    });
  }

  return { child, received, waitFor, ended };
}

/** The events without values that vary between runs, adjacent outputs of one stream merged. */
function skeleton(events: EngineEvent[]): EngineEvent[] {
  const out: EngineEvent[] = [];
  for (const { pid: _pid, duration_seconds: _duration, ...rest } of events) {
    const last = out.at(-1);
    if (
      rest.event === 'output' &&
      last?.event === 'output' &&
      last.index === rest.index &&
      last.stream === rest.stream
    ) {
      last.text = (last.text ?? '') + (rest.text ?? '');
      continue;
    }
    out.push({ ...rest });
  }
  return out;
}

/** What every run must satisfy, whatever the ending. */
function expectProtocolInvariants(events: EngineEvent[]): void {
  expect(events.filter((e) => e.event === 'unparseable')).toEqual([]);
  expect(events[0]?.event).toBe('started');
  expect(events.filter((e) => e.event === 'finished')).toHaveLength(1);
  expect(events.at(-1)?.event).toBe('finished');
  for (const e of events.filter((e) => e.event === 'kernel_started')) {
    expect(Number.isInteger(e.pid) && (e.pid ?? 0) > 0).toBe(true);
  }
  // Each cell once: cell_start, its outputs, then cell_done with a duration; nothing after.
  let open: number | null = null;
  const done = new Set<number>();
  for (const e of events) {
    if (e.event === 'cell_start') {
      expect(open).toBeNull();
      expect(done.has(e.index!)).toBe(false);
      open = e.index!;
    } else if (e.event === 'output') {
      expect(e.index).toBe(open);
      expect(['stdout', 'stderr', 'output']).toContain(e.stream);
    } else if (e.event === 'cell_done') {
      expect(e.index).toBe(open);
      expect(['ok', 'error']).toContain(e.status);
      expect(e.duration_seconds).toBeGreaterThanOrEqual(0);
      done.add(e.index!);
      open = null;
    }
  }
  expect(open).toBeNull();
  expect(JSON.stringify(events)).not.toContain('\\u001b'); // no ANSI colour codes
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

function kernelPid(events: EngineEvent[]): number {
  const pid = events.find((e) => e.event === 'kernel_started')?.pid;
  if (typeof pid !== 'number') throw new Error(`no kernel pid in ${JSON.stringify(events)}`);
  return pid;
}

function code(nb: Notebook, index: number): CodeCell {
  const cell: NotebookCell | undefined = nb.cells[index];
  if (cell?.cell_type !== 'code') throw new Error(`cell ${index} is not a code cell`);
  return cell;
}

function outputTexts(cell: CodeCell): string[] {
  return cell.outputs.map((o) => (o.output_type === 'stream' ? joined(o.text) : o.output_type));
}

function expectUnexecuted(cell: CodeCell): void {
  expect(cell.outputs).toEqual([]);
  expect(cell.execution_count).toBeNull();
}

let dir: string;

beforeEach(async () => {
  dir = await realpath(await mkdtemp(path.join(tmpdir(), 'engines-test-')));
});

afterEach(async () => {
  for (const child of running) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe.each(DRIVERS)('$name driver', (driver) => {
  async function start(cells: NotebookCell[], extraArgs: string[] = []) {
    const input = await writeNotebook(dir, 'input.ipynb', makeNotebook(cells));
    const output = path.join(dir, 'output.ipynb');
    const run = startDriver(driver, ['--input', input, '--output', output, ...extraArgs]);
    return { run, output };
  }

  async function execute(cells: NotebookCell[], extraArgs: string[] = []) {
    const { run, output } = await start(cells, extraArgs);
    const startedAt = performance.now();
    const ended = await run.ended;
    expectProtocolInvariants(ended.events);
    return { ...ended, run, output, seconds: (ended.exitedAt - startedAt) / 1000 };
  }

  it('reports a 3-cell notebook in order, skipping markdown and blank cells, and saves it', async () => {
    const result = await execute([
      markdownCell('# Title'),
      codeCell('a = 2'),
      codeCell('   \n'),
      codeCell("print('hello', a)"),
      codeCell('a * 21'),
    ]);
    console.log(`${driver.name}: 3-cell notebook took ${result.seconds.toFixed(2)} s`);

    expect(result.code, result.stderr).toBe(0);
    expect(skeleton(result.events)).toEqual([
      { event: 'started', cells_total: 3 },
      { event: 'kernel_started' },
      { event: 'cell_start', index: 1 },
      { event: 'cell_done', index: 1, status: 'ok' },
      { event: 'cell_start', index: 3 },
      { event: 'output', index: 3, stream: 'stdout', text: 'hello 2\n' },
      { event: 'cell_done', index: 3, status: 'ok' },
      { event: 'cell_start', index: 4 },
      { event: 'output', index: 4, stream: 'output', text: '42' },
      { event: 'cell_done', index: 4, status: 'ok' },
      { event: 'finished', status: 'ok', error: null },
    ]);

    const nb = await readNotebook(result.output);
    expect(nb.cells.map((c) => c.cell_type)).toEqual(['markdown', 'code', 'code', 'code', 'code']);
    expect(nb.metadata.language_info?.name).toBe('python');
    expect(outputTexts(code(nb, 3))).toEqual(['hello 2\n']);
    const [result42] = code(nb, 4).outputs;
    expect(result42?.output_type).toBe('execute_result');
    expect(joined(result42?.data?.['text/plain'] as string | string[])).toBe('42');
    expect([1, 3, 4].map((i) => code(nb, i).execution_count)).toEqual([1, 2, 3]);
    expectUnexecuted(code(nb, 2));
    for (const i of [1, 3, 4]) {
      // record_timing: nbclient's per-cell execution timestamps
      expect(code(nb, i).metadata.execution).toMatchObject({
        'iopub.execute_input': expect.any(String),
        'shell.execute_reply': expect.any(String),
      });
    }
    expect('papermill' in nb.metadata).toBe(true); // both engines write papermill's metadata
  });

  it('streams output live, before the cell finishes', async () => {
    const result = await execute([codeCell("import time\nprint('tick')\ntime.sleep(1.5)\nprint('tock')")]);

    expect(result.code, result.stderr).toBe(0);
    const received = result.run.received;
    const tick = received.find((r) => r.event.event === 'output' && r.event.text?.includes('tick'));
    const tock = received.find((r) => r.event.event === 'output' && r.event.text?.includes('tock'));
    const done = received.find((r) => r.event.event === 'cell_done' && r.event.index === 0);
    expect(tick && tock && done).toBeTruthy();
    // tick must arrive while the cell still sleeps, not with the cell's end
    expect(done!.at - tick!.at).toBeGreaterThan(1000);
    expect(tock!.at).toBeGreaterThan(tick!.at);
    expect(done!.at).toBeGreaterThanOrEqual(tock!.at);
  });

  it('stops at a failing cell: cell_error, exit 1, outputs saved up to that cell', async () => {
    const result = await execute([
      codeCell("print('one')"),
      codeCell("raise ValueError('boom')"),
      codeCell("print('never')"),
    ]);

    expect(result.code, result.stderr).toBe(1);
    expect(skeleton(result.events)).toEqual([
      { event: 'started', cells_total: 3 },
      { event: 'kernel_started' },
      { event: 'cell_start', index: 0 },
      { event: 'output', index: 0, stream: 'stdout', text: 'one\n' },
      { event: 'cell_done', index: 0, status: 'ok' },
      { event: 'cell_start', index: 1 },
      {
        event: 'output',
        index: 1,
        stream: 'stderr',
        text: expect.stringMatching(/^ValueError: boom\n[^]*raise ValueError/),
      },
      { event: 'cell_done', index: 1, status: 'error' },
      {
        event: 'finished',
        status: 'cell_error',
        error: {
          type: 'cell_error',
          message: 'ValueError: boom',
          cell_index: 1,
          ename: 'ValueError',
          evalue: 'boom',
          traceback: expect.arrayContaining([expect.stringContaining("raise ValueError('boom')")]),
        },
      },
    ]);

    const nb = await readNotebook(result.output);
    expect(nb.cells).toHaveLength(3); // no papermill error-marker cells
    expect(outputTexts(code(nb, 0))).toEqual(['one\n']);
    expect(code(nb, 1).outputs).toMatchObject([
      { output_type: 'error', ename: 'ValueError', evalue: 'boom' },
    ]);
    expectUnexecuted(code(nb, 2));
  });

  it('ends a cell that outruns --cell-timeout: status timeout, exit 2', async () => {
    const result = await execute(
      [codeCell("print('start')"), codeCell('import time\ntime.sleep(30)'), codeCell("print('never')")],
      ['--cell-timeout', '1'],
    );

    expect(result.code, result.stderr).toBe(2);
    expect(skeleton(result.events)).toEqual([
      { event: 'started', cells_total: 3 },
      { event: 'kernel_started' },
      { event: 'cell_start', index: 0 },
      { event: 'output', index: 0, stream: 'stdout', text: 'start\n' },
      { event: 'cell_done', index: 0, status: 'ok' },
      { event: 'cell_start', index: 1 },
      { event: 'cell_done', index: 1, status: 'error' },
      {
        event: 'finished',
        status: 'timeout',
        error: expect.objectContaining({ type: 'timeout', cell_index: 1 }),
      },
    ]);
    expect(result.seconds).toBeLessThan(15);
    const nb = await readNotebook(result.output);
    expect(outputTexts(code(nb, 0))).toEqual(['start\n']);
    expectUnexecuted(code(nb, 2));
    expect(processExists(kernelPid(result.events))).toBe(false);
  });

  it('on SIGTERM interrupts the cell, saves the partial notebook, leaves no kernel and exits 3', async () => {
    const { run, output } = await start([
      codeCell("print('before')"),
      codeCell("import time\nprint('sleeping', flush=True)\ntime.sleep(60)"),
      codeCell("print('never')"),
    ]);
    await run.waitFor((e) => e.event === 'output' && e.index === 1 && e.text === 'sleeping\n');
    const sentAt = performance.now();
    run.child.kill('SIGTERM');
    const ended = await within(run.ended, 10_000, 'exiting after SIGTERM');
    const seconds = (ended.exitedAt - sentAt) / 1000;
    console.log(`${driver.name}: SIGTERM to exit took ${seconds.toFixed(2)} s`);

    expectProtocolInvariants(ended.events);
    expect(ended.code, ended.stderr).toBe(3);
    expect(seconds).toBeLessThan(5);
    expect(ended.events.at(-1)).toEqual({ event: 'finished', status: 'cancelled', error: null });
    expect(ended.events).toContainEqual(
      expect.objectContaining({ event: 'cell_done', index: 1, status: 'error' }),
    );
    expect(processExists(kernelPid(ended.events))).toBe(false);

    const nb = await readNotebook(output);
    expect(outputTexts(code(nb, 0))).toEqual(['before\n']);
    expect(outputTexts(code(nb, 1))[0]).toBe('sleeping\n');
    expectUnexecuted(code(nb, 2));
  });

  it('on SIGTERM also stops a kernel that ignores the interrupt', async () => {
    const { run, output } = await start([
      codeCell(
        'import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n' +
          "print('stubborn', flush=True)\ntime.sleep(60)",
      ),
      codeCell("print('never')"),
    ]);
    await run.waitFor((e) => e.event === 'output' && e.text === 'stubborn\n');
    const sentAt = performance.now();
    run.child.kill('SIGTERM');
    const ended = await within(run.ended, 10_000, 'exiting after SIGTERM');
    const seconds = (ended.exitedAt - sentAt) / 1000;
    console.log(`${driver.name}: SIGTERM to exit (interrupt ignored) took ${seconds.toFixed(2)} s`);

    expectProtocolInvariants(ended.events);
    expect(ended.code, ended.stderr).toBe(3);
    expect(seconds).toBeLessThan(5);
    expect(ended.events.at(-1)).toEqual({ event: 'finished', status: 'cancelled', error: null });
    expect(processExists(kernelPid(ended.events))).toBe(false);
    const nb = await readNotebook(output);
    expect(outputTexts(code(nb, 0))[0]).toBe('stubborn\n');
    expectUnexecuted(code(nb, 1));
  });

  it('on SIGTERM while the kernel starts, exits 3 and leaves no kernel', async () => {
    const { run, output } = await start([codeCell("print('never')")]);
    await run.waitFor((e) => e.event === 'started');
    const sentAt = performance.now();
    run.child.kill('SIGTERM');
    const ended = await within(run.ended, 10_000, 'exiting after SIGTERM');

    expectProtocolInvariants(ended.events);
    expect(ended.code, ended.stderr).toBe(3);
    expect((ended.exitedAt - sentAt) / 1000).toBeLessThan(5);
    expect(ended.events.at(-1)).toEqual({ event: 'finished', status: 'cancelled', error: null });
    expect(ended.events.filter((e) => e.event === 'cell_start')).toEqual([]);
    const pid = ended.events.find((e) => e.event === 'kernel_started')?.pid;
    if (typeof pid === 'number') expect(processExists(pid)).toBe(false);
    expectUnexecuted(code(await readNotebook(output), 0));
  });

  it('reports a kernel that dies: kernel_died, exit 4, notebook saved', async () => {
    const result = await execute([
      codeCell("print('start')"),
      codeCell('import os, signal\nos.kill(os.getpid(), signal.SIGKILL)'),
      codeCell("print('never')"),
    ]);

    expect(result.code, result.stderr).toBe(4);
    expect(skeleton(result.events).slice(-3)).toEqual([
      { event: 'cell_start', index: 1 },
      { event: 'cell_done', index: 1, status: 'error' },
      {
        event: 'finished',
        status: 'kernel_died',
        error: expect.objectContaining({ type: 'kernel_died', cell_index: 1 }),
      },
    ]);
    const nb = await readNotebook(result.output);
    expect(outputTexts(code(nb, 0))).toEqual(['start\n']);
    expectUnexecuted(code(nb, 2));
  });

  it('starts the kernel again when it dies before answering kernel_info (the port race), before any cell', async () => {
    // A kernel spec whose first start exits at once, as a kernel does whose port another process
    // took ("Address already in use"); its second start is a real ipykernel.
    const { jupyter } = await kernelFailingFirst(dir, 'flaky', 'sys.exit(1)');
    const input = await writeNotebook(dir, 'input.ipynb', makeNotebook([codeCell('print(6 * 7)')], 'flaky'));
    const flaky = { ...driver, env: { ...driver.env, JUPYTER_PATH: jupyter } };
    const ended = await startDriver(flaky, ['--input', input, '--output', path.join(dir, 'output.ipynb')])
      .ended;

    expect(ended.code, ended.stderr).toBe(0);
    expect(ended.stderr).toContain('starting a new one');
    expect(ended.events.filter((e) => e.event === 'kernel_started')).toHaveLength(1);
    expect(ended.events).toContainEqual(expect.objectContaining({ event: 'output', text: '42\n' }));
  });

  it('starts the kernel again when it does not answer kernel_info within --startup-timeout', async () => {
    // A kernel spec whose first start stays silent (the soak saw "Kernel didn't respond in 60
    // seconds" once in a thousand jobs); its second start is a real ipykernel.
    const { jupyter, script } = await kernelFailingFirst(dir, 'silent', 'time.sleep(600)');
    const input = await writeNotebook(dir, 'input.ipynb', makeNotebook([codeCell('print(6 * 7)')], 'silent'));
    const silent = { ...driver, env: { ...driver.env, JUPYTER_PATH: jupyter } };
    const args = ['--input', input, '--output', path.join(dir, 'output.ipynb'), '--startup-timeout', '3'];
    const ended = await startDriver(silent, args).ended;

    expect(ended.code, ended.stderr).toBe(0);
    expect(ended.stderr).toMatch(/Kernel didn't respond in 3 seconds\); starting a new one/);
    expect(ended.events).toContainEqual(expect.objectContaining({ event: 'output', text: '42\n' }));
    // The silent first kernel was stopped, not left behind.
    expect(processesMentioning(script)).toEqual([]);
  }, 60_000);

  it('runs the kernel in --cwd', async () => {
    const cwd = path.join(dir, 'work');
    await mkdir(cwd);
    const result = await execute([codeCell('import os\nprint(os.getcwd())')], ['--cwd', cwd]);

    expect(result.code, result.stderr).toBe(0);
    expect(result.events).toContainEqual(
      expect.objectContaining({ event: 'output', index: 0, text: `${cwd}\n` }),
    );
  });
});

describe.each(DRIVERS)('$name driver, failing before any cell', (driver) => {
  it('exits 64 on bad usage', async () => {
    const ended = await startDriver(driver, ['--input', 'x.ipynb']).ended;
    expect(ended.code).toBe(64);
    expect(ended.stderr).toContain('--output');
  });

  it('reports an unreadable notebook as invalid_notebook, exit 4', async () => {
    const input = path.join(dir, 'broken.ipynb');
    await writeFile(input, '{"cells": [', 'utf8');
    const ended = await startDriver(driver, ['--input', input, '--output', path.join(dir, 'out.ipynb')])
      .ended;
    expect(ended.code).toBe(4);
    expect(ended.events).toEqual([
      { event: 'finished', status: 'failed', error: expect.objectContaining({ type: 'invalid_notebook' }) },
    ]);
  });

  it('fails with exit 4 on an unknown kernel, still writing the notebook', async () => {
    const input = await writeNotebook(dir, 'input.ipynb', makeNotebook([codeCell('1')], 'no-such-kernel'));
    const output = path.join(dir, 'output.ipynb');
    const ended = await startDriver(driver, ['--input', input, '--output', output]).ended;

    expectProtocolInvariants(ended.events);
    expect(ended.code).toBe(4);
    expect(ended.events.at(-1)).toEqual({
      event: 'finished',
      status: 'failed',
      error: expect.objectContaining({
        type: 'infrastructure',
        message: expect.stringContaining('no-such-kernel'),
      }),
    });
    expect((await readNotebook(output)).cells).toHaveLength(1);
  });
});

describe('the nbclient driver when a kernel dies while starting', () => {
  it('starts a new kernel (no cell has run yet), as when a port was taken between choice and bind', async () => {
    // A kernel spec whose first start exits at once, the way ipykernel does on "Address already in
    // use"; the second start is a real kernel.
    const spec = path.join(dir, 'jupyter', 'kernels', 'flaky');
    await mkdir(spec, { recursive: true });
    const marker = path.join(dir, 'died-once');
    await writeFile(
      path.join(spec, 'flaky.py'),
      'import os, sys\n' +
        `marker = ${JSON.stringify(marker)}\n` +
        'if not os.path.exists(marker):\n    open(marker, "w").close()\n    sys.exit(1)\n' +
        'os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *sys.argv[1:]])\n',
    );
    await writeFile(
      path.join(spec, 'kernel.json'),
      JSON.stringify({
        argv: [PYTHON, path.join(spec, 'flaky.py'), '-f', '{connection_file}'],
        display_name: 'flaky',
        language: 'python',
      }),
    );
    const input = await writeNotebook(dir, 'input.ipynb', makeNotebook([codeCell('print(6 * 7)')], 'flaky'));
    const output = path.join(dir, 'output.ipynb');
    const run = startDriver({ ...DRIVERS[0]!, env: { JUPYTER_PATH: path.join(dir, 'jupyter') } }, [
      '--input',
      input,
      '--output',
      output,
    ]);
    const ended = await run.ended;
    expect(ended.stderr).toMatch(/kernel failed while starting/);
    expect(ended.events.at(-1)).toMatchObject({ event: 'finished', status: 'ok' });
    expect(ended.events.filter((e) => e.event === 'kernel_started')).toHaveLength(1);
  }, 60_000);
});

/**
 * A kernel spec NAME (in its own JUPYTER_PATH folder under `dir`) whose first start runs
 * `firstStart` (Python, e.g. exit or hang) and whose later starts are a real ipykernel.
 */
async function kernelFailingFirst(dir: string, name: string, firstStart: string) {
  const jupyter = path.join(dir, `jupyter-${name}`);
  const spec = path.join(jupyter, 'kernels', name);
  await mkdir(spec, { recursive: true });
  const marker = path.join(dir, `${name}-first-start`);
  const script = path.join(spec, `${name}.py`);
  await writeFile(
    script,
    [
      'import os, runpy, sys, time',
      `if not os.path.exists(${JSON.stringify(marker)}):`,
      `    open(${JSON.stringify(marker)}, 'w').close()`,
      `    ${firstStart}`,
      "runpy.run_module('ipykernel_launcher', run_name='__main__')",
    ].join('\n'),
  );
  const argv = [PYTHON, script, '-f', '{connection_file}'];
  await writeFile(
    path.join(spec, 'kernel.json'),
    JSON.stringify({ argv, display_name: name, language: 'python' }),
  );
  return { jupyter, script };
}
