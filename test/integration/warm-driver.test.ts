/**
 * The nbclient driver's warm start (container/engines/README.md, "Warm start"): the kernel starts
 * before the job is known, the job comes as one line on stdin, and the run is then the same as a
 * cold one. Also through the sandbox, which passes the rest of its stdin on to the driver.
 */
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { codeCell, joined, makeNotebook, type CodeCell, type Notebook } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';

const ENGINES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../container/engines');

interface Event {
  event: string;
  pid?: number | null;
  status?: string;
  error?: { type: string; message: string } | null;
  text?: string;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'warm-driver-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts a warm driver (through the sandbox when `sandboxed`) and collects its events. */
function startWarm(sandboxed = false) {
  const driver = [path.join(ENGINES, 'nbclient_driver.py'), '--warm', '--kernel', 'python3', '--cwd', dir];
  const argv = sandboxed
    ? ['-I', path.join(ENGINES, 'sandbox.py'), '--grace', '5', '--', TEST_PYTHON, ...driver]
    : driver;
  const child = spawn(TEST_PYTHON, argv, {
    stdio: ['pipe', 'ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYDEVD_DISABLE_FILE_VALIDATION: '1' },
  });
  const stdin = child.stdin as Writable;
  if (sandboxed) stdin.write(`${JSON.stringify({ env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } })}\n`);
  const events: Event[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdio[3] as Readable }).on('line', (line) => {
    events.push(JSON.parse(line) as Event);
    waiters.splice(0).forEach((wake) => wake());
  });
  let stderr = '';
  (child.stderr as Readable).on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ended = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = async (name: string) => {
    while (!events.some((e) => e.event === name)) {
      const more = new Promise<void>((wake) => waiters.push(wake));
      const gone = ended.then(() => {
        throw new Error(`driver exited before '${name}': ${stderr}`);
      });
      await Promise.race([more, gone]);
    }
    return events.find((e) => e.event === name) as Event;
  };
  return { child, stdin, events, until, ended, stderr: () => stderr };
}

/** Whether a process is there and not a zombie. */
function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

async function writeJob(nb: Notebook) {
  const input = path.join(dir, 'input.ipynb');
  await writeFile(input, JSON.stringify(nb));
  return { input, output: path.join(dir, 'output.ipynb'), cell_timeout: null };
}

describe('a warm nbclient driver', () => {
  for (const sandboxed of [false, true])
    it(`starts its kernel first, then runs the job it reads from stdin in that kernel${sandboxed ? ' (through the sandbox)' : ''}`, async () => {
      const warm = startWarm(sandboxed);
      const ready = await warm.until('warm');
      expect(ready.pid).toBeGreaterThan(0);
      expect(warm.events.map((e) => e.event)).toEqual(['warm']); // nothing runs before the job
      const job = await writeJob(
        makeNotebook([codeCell('import os; print(os.getpid(), os.getcwd())'), codeCell('x = 6 * 7\nx')]),
      );
      warm.stdin.end(`${JSON.stringify(job)}\n`);
      expect(await warm.ended).toBe(0);
      const names = warm.events.map((e) => e.event);
      expect(names.slice(0, 3)).toEqual(['warm', 'started', 'kernel_started']);
      expect(warm.events.find((e) => e.event === 'kernel_started')?.pid).toBe(ready.pid);
      expect(warm.events.at(-1)).toMatchObject({ event: 'finished', status: 'ok' });
      expect(warm.events.find((e) => e.event === 'output')?.text).toBe(`${ready.pid} ${dir}\n`);
      const out = JSON.parse(await readFile(job.output, 'utf8')) as Notebook;
      expect(
        joined((out.cells[1] as CodeCell | undefined)?.outputs?.[0]?.data?.['text/plain'] as string),
      ).toBe('42');
      expect(out.metadata.language_info).toMatchObject({ name: 'python' });
      expect(alive(ready.pid as number)).toBe(false);
    }, 60_000);

  it('shuts its kernel down and exits 0 when stdin closes before a job comes', async () => {
    const warm = startWarm();
    const ready = await warm.until('warm');
    warm.stdin.end();
    expect(await warm.ended).toBe(0);
    expect(warm.events.map((e) => e.event)).toEqual(['warm']);
    expect(alive(ready.pid as number)).toBe(false);
  }, 60_000);

  it('shuts its kernel down and exits 0 on SIGTERM while it waits', async () => {
    const warm = startWarm();
    const ready = await warm.until('warm');
    warm.child.kill('SIGTERM');
    expect(await warm.ended).toBe(0);
    expect(alive(ready.pid as number)).toBe(false);
  }, 60_000);

  it('fails as infrastructure, naming the problem, for a job line that is not one', async () => {
    const warm = startWarm();
    const ready = await warm.until('warm');
    warm.stdin.end('{"input": 1}\n');
    expect(await warm.ended).toBe(4);
    expect(warm.events.at(-1)).toMatchObject({
      event: 'finished',
      status: 'failed',
      error: { type: 'infrastructure' },
    });
    expect(warm.events.at(-1)?.error?.message).toContain('"input": PATH');
    expect(alive(ready.pid as number)).toBe(false);
  }, 60_000);

  it('refuses --warm without --kernel and --cwd, or with --input', async () => {
    for (const args of [
      ['--warm', '--cwd', dir],
      ['--warm', '--kernel', 'python3', '--cwd', dir, '--input', 'x'],
    ]) {
      const child = spawn(TEST_PYTHON, [path.join(ENGINES, 'nbclient_driver.py'), ...args], {
        stdio: 'pipe',
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(64);
      expect(stderr).toMatch(/--warm/);
    }
  });
});
