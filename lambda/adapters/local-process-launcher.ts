/**
 * Local launcher: each job is a child process running the runner, in its own process group.
 * Stop sends SIGTERM to the runner (it forwards to its engine, which saves the partial notebook and
 * shuts the kernel down), then SIGKILL to the whole group after a grace period.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
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
}

export class LocalProcessLauncher implements Launcher {
  private readonly children = new Map<string, number>();
  /** Resolves when each live runner has exited (and its onExit has been called). */
  private readonly exits = new Map<string, Promise<void>>();

  constructor(private readonly options: LocalLauncherOptions) {
    mkdirSync(options.stderrDir, { recursive: true });
  }

  async launch(job: JobRecord): Promise<LaunchResult> {
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
      const exited = new Promise<void>((resolve) =>
        child.once('exit', (code, signal) => {
          this.children.delete(job.job_id);
          this.exits.delete(job.job_id);
          this.options.onExit(
            job.job_id,
            signal ? `runner killed by ${signal}` : `runner exited with code ${code}`,
          );
          resolve();
        }),
      );
      this.exits.set(job.job_id, exited);
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
      // The pid must still be this job's runner, not a recycled pid.
      return readFileSync(`/proc/${ref.pid}/cmdline`, 'utf8').includes(ref.jobId);
    } catch {
      return false;
    }
  }

  /** Kills every runner this launcher started (server shutdown in tests). */
  /** Kills every runner's process group and resolves once they have all exited. */
  async killAll(): Promise<void> {
    for (const pid of this.children.values()) signal(-pid, 'SIGKILL');
    await Promise.all(this.exits.values());
  }
}

function parseRef(ref: string): { pid: number; jobId: string } | null {
  const match = /^local:(\d+):(job_\w+)$/.exec(ref);
  return match ? { pid: Number(match[1]), jobId: match[2] as string } : null;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
