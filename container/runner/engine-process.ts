/**
 * Starting an engine: the driver inside its sandbox, with the kernel's allow-listed environment,
 * cold (the job is known: its notebook paths are arguments) or warm (the kernel starts first and
 * the job comes later as one line on the driver's stdin: container/engines/README.md, "Warm
 * start"). A warm engine is the same process a cold one would be, started earlier: same sandbox,
 * user, environment and a fresh working folder, so a job cannot tell it was warm except by speed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { sandboxCommand, sandboxInput } from '../../lambda/kernels/engine-sandbox.ts';
import { kernelEnvironment } from '../../lambda/kernels/kernel-env.ts';
import type { EngineName } from '../../lambda/kernels/python.ts';
import { type RunOutcome } from './progress-reporter.ts';
import { type JobError, type JobRecord } from '../../lambda/core/job.ts';
import type { StopReason } from './runner.ts';

export interface EngineSettings {
  python: string;
  engine: EngineName;
  /** The engine driver script (engineScript). */
  driver: string;
  enginesDir: string;
  /** The kernel's working folder (made fresh here). */
  workDir: string;
  kernelUser?: string;
  kernelEnvPass?: readonly string[];
  /** AWS variables for the kernel (its tenant's notebook role), when it has any. */
  notebookAws?: Record<string, string>;
  /** The job's resolved secrets, as variables of the kernel's environment. */
  jobVariables?: Record<string, string>;
  stopGraceMs: number;
}

/** A started engine: the sandbox process and its events, one parsed JSON object per line. */
export interface EngineProcess {
  child: ChildProcess;
  events: Interface;
  /** Output the engine wrote before the job was handed to it (a warm engine's start-up). */
  early: Array<{ stream: 'stdout' | 'stderr'; text: string }>;
}

/** At most this much start-up output of a warm engine is kept for the job's log. */
const EARLY_OUTPUT_CHARS = 64 * 1024;

/** Makes the working folder afresh: an earlier attempt's folder holds whatever its kernel left. */
export async function freshWorkDir(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true, mode: 0o700 });
}

/** Starts the driver (`driverArgs` after the script) in its sandbox. */
export function startEngine(settings: EngineSettings, driverArgs: readonly string[]): EngineProcess {
  const env = kernelEnvironment({
    from: process.env,
    workDir: settings.workDir,
    kernelUser: settings.kernelUser,
    extraNames: settings.kernelEnvPass,
    notebookAws: settings.notebookAws,
    jobVariables: settings.jobVariables,
  });
  // The driver runs inside the sandbox (container/engines/sandbox.py), which outlives it to stop
  // whatever the job started. Its own session: when the runner's process group is SIGKILLed, the
  // sandbox hears of it (parent-death signal) and still cleans up.
  const [program, ...args] = sandboxCommand(
    {
      python: settings.python,
      enginesDir: settings.enginesDir,
      workDir: settings.workDir,
      kernelUser: settings.kernelUser,
      graceMs: settings.stopGraceMs,
    },
    [settings.python, settings.driver, ...driverArgs],
  );
  const child = spawn(program as string, args, {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    env: { PATH: env.PATH ?? '/usr/bin:/bin' },
    detached: true,
  });
  child.stdin?.on('error', () => undefined); // a sandbox that exits at once says why on stderr
  child.stdin?.write(sandboxInput(env));
  return { child, events: createInterface({ input: child.stdio[3] as Readable }), early: [] };
}

/**
 * A warm engine: started with `--warm` for `kernel`, waiting for its job. `ready` resolves once its
 * kernel answered (the driver's `warm` event) and rejects if the engine exits first.
 */
export class WarmEngine {
  readonly process: EngineProcess;
  readonly ready: Promise<void>;
  private taken = false;
  private readonly collect: (stream: 'stdout' | 'stderr') => (chunk: Buffer) => void;

  private constructor(
    readonly kernel: string,
    readonly settings: EngineSettings,
  ) {
    this.process = startEngine(settings, [
      '--warm',
      '--kernel',
      kernel,
      '--cwd',
      settings.workDir,
      '--events-fd',
      '3',
    ]);
    const { child, events, early } = this.process;
    let kept = 0;
    this.collect = (stream) => (chunk) => {
      const text = chunk.toString();
      if (kept + text.length <= EARLY_OUTPUT_CHARS) early.push({ stream, text });
      kept += text.length;
    };
    child.stdout?.on('data', this.collect('stdout'));
    child.stderr?.on('data', this.collect('stderr'));
    this.ready = new Promise<void>((resolve, reject) => {
      const onLine = (line: string) => {
        if (line.includes('"warm"')) {
          events.off('line', onLine);
          resolve();
        }
      };
      events.on('line', onLine);
      child.once('close', (code, signal) => {
        const tail = early
          .map((piece) => piece.text)
          .join('')
          .trim()
          .split('\n')
          .slice(-5)
          .join('\n');
        reject(
          new Error(
            `the warm engine exited (${signal ?? `code ${code}`}) before its kernel was ready: ${tail}`,
          ),
        );
      });
    });
    this.ready.catch(() => undefined); // whoever awaits it sees the error
  }

  /** Makes a fresh working folder and starts the engine in it. */
  static async start(kernel: string, settings: EngineSettings): Promise<WarmEngine> {
    await freshWorkDir(settings.workDir);
    return new WarmEngine(kernel, settings);
  }

  /** Hands the job over: from now on the caller reads the engine's output and events. */
  take(job: { input: string; output: string; cell_timeout: number | null }): EngineProcess {
    if (this.taken) throw new Error('a warm engine runs one job only');
    this.taken = true;
    const { child } = this.process;
    child.stdout?.removeAllListeners('data');
    child.stderr?.removeAllListeners('data');
    (child.stdin as Writable).end(`${JSON.stringify(job)}\n`);
    return this.process;
  }

  /**
   * Not used after all: its driver shuts the kernel down when its stdin closes. Resolves once the
   * engine is gone (SIGKILL to its sandbox's group after `waitMs`).
   */
  async dispose(waitMs = 10_000): Promise<void> {
    const { child } = this.process;
    if (!this.taken) child.stdin?.end();
    this.taken = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }, waitMs);
    await gone;
    clearTimeout(timer);
  }
}

export interface EngineEvent {
  event: 'warm' | 'started' | 'kernel_started' | 'cell_start' | 'output' | 'cell_done' | 'finished';
  index?: number;
  /** On `started`: how many cells the engine will run. */
  cells_total?: number;
  pid?: number | null;
  stream?: 'stdout' | 'stderr' | 'output';
  text?: string;
  status?: string;
  duration_seconds?: number;
  error?: JobError | null;
  /** On `finished`: where a notebook that ended itself cleanly (SystemExit 0) stopped. */
  stopped?: { cell_index: number; message: string } | null;
}

export function outcomeOf(
  job: JobRecord,
  finished: EngineEvent | null,
  stopReason: StopReason | null,
  exit: { code: number | null; signal: NodeJS.Signals | null } | null,
  engineErr: string,
): RunOutcome {
  const status = finished?.status;
  if (stopReason === 'timeout') {
    const cell = finished?.error?.cell_index ?? null;
    return {
      status: 'failed',
      error: {
        type: 'timeout',
        message: `the job exceeded its timeout of ${job.timeout_seconds} s`,
        cell_index: cell,
      },
    };
  }
  if (stopReason === 'cancel') return { status: 'cancelled', error: null };
  if (stopReason === 'interrupted') {
    // The platform stopped the task (a Fargate Spot interruption): the job is left running for
    // reconciliation, which reads the task's stop code and requeues it as a new attempt or fails it.
    return { status: 'skipped', error: null };
  }
  if (stopReason === 'orphaned') {
    return {
      status: 'failed',
      error: { type: 'infrastructure', message: 'the local server stopped while the job was running' },
    };
  }
  if (status === 'ok') return { status: 'completed', error: null };
  if (status === 'timeout') {
    const error = finished?.error;
    return {
      status: 'failed',
      error: {
        ...error,
        type: 'timeout',
        message: error?.message ?? `a cell exceeded cell_timeout_seconds=${job.cell_timeout_seconds}`,
      },
    };
  }
  if (finished?.error) return { status: 'failed', error: finished.error };
  const tail = engineErr.trim().split('\n').slice(-5).join('\n');
  return {
    status: 'failed',
    error: {
      type: status === 'kernel_died' ? 'kernel_died' : 'infrastructure',
      message: `the engine exited (${exit?.signal ?? `code ${exit?.code}`}) without a result${tail ? `: ${tail}` : ''}`,
    },
  };
}

/** How long past its own grace period a sandbox may take to kill and reap before it is killed. */
export const SANDBOX_BACKSTOP_MS = 15_000;

/**
 * SIGTERM to the sandbox, which forwards it to the engine and, once the engine exits or its grace
 * period ends, kills every process the job started. SIGKILL to the sandbox's process group (sandbox
 * and engine) only if it is still there well after that: a backstop for a sandbox that hangs.
 */
export function stopper(child: ChildProcess, graceMs: number): () => void {
  let sent = false;
  return () => {
    if (sent || child.exitCode !== null) return;
    sent = true;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs + SANDBOX_BACKSTOP_MS);
    child.once('close', () => clearTimeout(timer));
  };
}

/** The engine shuts its kernel down; this is the backstop if the engine itself died. */
export function killLeftover(pid: number | null): void {
  if (!pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone: the normal case
  }
}
