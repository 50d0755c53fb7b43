/**
 * Local launcher: each job is a child process running the runner, in its own process group.
 * Stop sends SIGTERM to the runner (it forwards to its engine, which saves the partial notebook and
 * shuts the kernel down), then SIGKILL to the whole group after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { JobRecord } from '../core/job.ts';
import type { LaunchResult, Launcher } from '../core/ports.ts';

export interface LocalLauncherOptions {
  /** argv that starts the runner; the job id is appended. */
  command: string[];
  env: Record<string, string>;
  cwd: string;
  /** Folder for each runner's own stderr (crash traces), one file per job. */
  stderrDir: string;
  stopGraceMs: number;
  /** Called once a runner process has exited (code or signal). */
  onExit: (jobId: string, description: string) => void;
  /**
   * Warm runners kept ready for jobs of `kernel` (the runner's `--warm` mode: its kernel started
   * ahead of demand). Each runs one job; the pool refills in the background. Absent or 0: none.
   */
  warm?: { kernel: string; count: number; log: (text: string) => void };
}

/** A warm runner waiting for a job. */
interface WarmRunner {
  child: ChildProcess;
  slot: string;
  ready: boolean;
  stderrPath: string;
}

/** A warm runner that dies sooner than this after its start counts as a failed start. */
const WARM_QUICK_DEATH_MS = 30_000;
/** Longest wait before starting a warm runner again after failed starts. */
const WARM_BACKOFF_MAX_MS = 60_000;

export class LocalProcessLauncher implements Launcher {
  private readonly children = new Map<string, number>();
  /** Resolves when each live runner has exited (and its onExit has been called). */
  private readonly exits = new Map<string, Promise<void>>();

  private readonly idle: WarmRunner[] = [];
  private starting = 0;
  private failures = 0;
  private closed = false;

  constructor(private readonly options: LocalLauncherOptions) {
    mkdirSync(options.stderrDir, { recursive: true });
    this.fillPool();
  }

  /** Warm runners waiting for a job, and how many of them have their kernel ready. */
  warmRunners(): { idle: number; ready: number } {
    return { idle: this.idle.length, ready: this.idle.filter((runner) => runner.ready).length };
  }

  async launch(job: JobRecord): Promise<LaunchResult> {
    const warm = this.takeWarm(job);
    if (warm) return warm;
    const { command, env, cwd, stderrDir } = this.options;
    const [program, ...args] = command;
    if (!program) throw new Error('runner command is empty');
    const stderr = openSync(join(stderrDir, `${job.job_id}.stderr`), 'a');
    try {
      const child = spawn(program, [...args, job.job_id], {
        cwd,
        detached: true, // its own process group, so SIGKILL can take the whole tree
        // stdin stays open as a lifeline: when this server dies, the runner sees EOF and stops.
        stdio: ['pipe', 'ignore', stderr],
        env: { ...process.env, ...env, NOTEBOOK_JOBS_WATCH_STDIN: '1' },
      });
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('spawn', () => resolve(child.pid as number));
        child.once('error', reject);
      });
      this.children.set(job.job_id, pid);
      this.exits.set(job.job_id, this.exited(child, job.job_id));
      return { runner_ref: `local:${pid}:${job.job_id}` };
    } finally {
      closeSync(stderr);
    }
  }

  async stop(job: JobRecord): Promise<void> {
    const pid = job.runner_ref ? parseRef(job.runner_ref)?.pid : this.children.get(job.job_id);
    if (!pid || !(await this.isAlive(job.runner_ref ?? `local:${pid}:${job.job_id}`))) return;
    signal(pid, 'SIGTERM');
    const timer = setTimeout(() => signal(-pid, 'SIGKILL'), this.options.stopGraceMs);
    timer.unref();
  }

  async isAlive(runnerRef: string): Promise<boolean | null> {
    const ref = parseRef(runnerRef);
    if (!ref) return null;
    try {
      // The pid must still be this job's runner (or warm runner's slot), not a recycled pid.
      return readFileSync(`/proc/${ref.pid}/cmdline`, 'utf8').includes(ref.slot ?? ref.jobId);
    } catch {
      return false;
    }
  }

  /** Ends the warm runners waiting for a job (their kernels shut down) and starts no more. */
  async endPool(): Promise<void> {
    this.closed = true;
    const idle = this.idle.splice(0);
    await Promise.all(
      idle.map(async (runner) => {
        const { child } = runner;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.stdin?.end();
        const timer = setTimeout(() => signal(-(child.pid as number), 'SIGKILL'), 10_000);
        await gone;
        clearTimeout(timer);
      }),
    );
  }

  /** Kills every runner's process group and ends the warm ones; resolves once all have exited. */
  async killAll(): Promise<void> {
    const pool = this.endPool();
    for (const pid of this.children.values()) signal(-pid, 'SIGKILL');
    await Promise.all([...this.exits.values(), pool]);
  }

  /** Resolves once the runner of `jobId` has exited and onExit has been called. */
  private exited(child: ChildProcess, jobId: string): Promise<void> {
    return new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        this.children.delete(jobId);
        this.exits.delete(jobId);
        this.options.onExit(jobId, signal ? `runner killed by ${signal}` : `runner exited with code ${code}`);
        resolve();
      }),
    );
  }

  /** Hands `job` to a warm runner of its kernel (a ready one first), or null: start it cold. */
  private takeWarm(job: JobRecord): LaunchResult | null {
    if (!this.options.warm || job.kernel !== this.options.warm.kernel) return null;
    const at = Math.max(
      this.idle.findIndex((runner) => runner.ready),
      this.idle.length ? 0 : -1,
    );
    const runner = at < 0 ? undefined : this.idle.splice(at, 1)[0];
    if (!runner) return null;
    const pid = runner.child.pid as number;
    runner.child.stdin?.write(`${job.job_id}\n`);
    try {
      renameSync(runner.stderrPath, join(this.options.stderrDir, `${job.job_id}.stderr`));
    } catch {
      // the trace stays under the slot's name
    }
    this.children.set(job.job_id, pid);
    this.exits.set(job.job_id, this.exited(runner.child, job.job_id));
    this.fillPool();
    return { runner_ref: `local:${pid}:${job.job_id}@${runner.slot}` };
  }

  /** Starts warm runners until the pool is full (after a back-off when starts keep failing). */
  private fillPool(): void {
    const warm = this.options.warm;
    if (!warm || this.closed) return;
    while (this.idle.length + this.starting < warm.count) {
      this.starting++;
      const delay = this.failures ? Math.min(WARM_BACKOFF_MAX_MS, 1000 * 2 ** (this.failures - 1)) : 0;
      setTimeout(() => {
        this.starting--;
        if (!this.closed) this.startWarm(warm.kernel);
      }, delay).unref();
    }
  }

  private startWarm(kernel: string): void {
    const { command, env, cwd, stderrDir } = this.options;
    const [program, ...args] = command;
    const slot = `warm_${randomBytes(8).toString('hex')}`;
    const stderrPath = join(stderrDir, `${slot}.stderr`);
    const stderr = openSync(stderrPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(program as string, [...args, '--warm', kernel, slot], {
        cwd,
        detached: true,
        // stdin: the job id, then the lifeline (EOF: the server is gone); stdout: `warm` when ready.
        stdio: ['pipe', 'pipe', stderr],
        env: { ...process.env, ...env, NOTEBOOK_JOBS_WATCH_STDIN: '1' },
      });
    } finally {
      closeSync(stderr);
    }
    const runner: WarmRunner = { child, slot, ready: false, stderrPath };
    const started = Date.now();
    this.idle.push(runner);
    child.stdin?.on('error', () => undefined);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('warm')) {
        runner.ready = true;
        this.failures = 0;
      }
    });
    child.once('exit', (code, sig) => {
      const at = this.idle.indexOf(runner);
      if (at < 0) return; // it had a job: its exit is the job's
      this.idle.splice(at, 1);
      if (this.closed) return;
      if (Date.now() - started < WARM_QUICK_DEATH_MS) this.failures++;
      this.options.warm?.log(
        `a warm runner exited before it had a job (${sig ?? `code ${code}`}); see ${stderrPath}`,
      );
      this.fillPool();
    });
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function parseRef(ref: string): { pid: number; jobId: string; slot?: string } | null {
  const match = /^local:(\d+):(job_\w+)(?:@(warm_\w+))?$/.exec(ref);
  return match ? { pid: Number(match[1]), jobId: match[2] as string, slot: match[3] } : null;
}
