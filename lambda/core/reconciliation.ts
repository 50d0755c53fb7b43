/**
 * Reconciliation: no job stays `running` after its runner is gone. A runner's exit (local child,
 * ECS task STOPPED), a restart that orphans runners, and the periodic sweep (deadlines, lost
 * runners, leaked slots) end jobs through the lifecycle, free slots, and dispatch the next jobs.
 */
import { isTerminal, type JobRecord } from './job.ts';
import { transitions } from './lifecycle.ts';
import { jobFields } from './logging.ts';
import type { RunnerState, RunnerStop } from './ports.ts';
import type { Scheduler } from './scheduling.ts';
import type { ServiceContext } from './service-context.ts';

/** What a runner's stop meant for its job. */
export type RunnerStopped =
  | { reconciled: true; job_id: string; tenant: string }
  | {
      reconciled: false;
      reason:
        | 'no such job'
        | "task of an earlier attempt, not the job's runner"
        | "the job's runner is not recorded yet";
      tenant?: string;
    };

/** How many jobs wait and run, across tenants (the dashboard's gauges). */
export interface JobGauges {
  queued: number;
  running: number;
}

export interface SweepResult {
  timed_out: string[];
  /** Failed: the runner is gone without a result. */
  lost: string[];
  /** The run was lost to infrastructure (its task's stop code says so): back in the queue. */
  requeued: string[];
  released: string[];
}

export class Reconciler {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly scheduler: Scheduler,
  ) {}

  /**
   * A job's runner is known to be gone. A job still `running` then failed; or, when the run was
   * `lostToInfrastructure` (a Fargate Spot interruption, a task that failed to start), requeued as
   * a new attempt while it has attempts left. Its slot is released and the next job dispatched.
   *
   * With `runnerRef` (ECS: the stopped task's ARN), this changes nothing unless that runner is the
   * job's current one: an earlier attempt's task (a STOPPED event delivered twice, or late) must
   * never end the attempt that runs now. A job whose current runner is not recorded yet (between
   * its launch and recording the task) is left alone too: if its own task stopped, the sweep finds
   * that out with the ref. The write itself is conditional on the attempt seen here, and an
   * attempt's runner is recorded once, so the check and the write agree. Without `runnerRef` (a
   * local child's exit, which only the job's own runner reports) the job's status decides. An
   * unknown job changes nothing (it holds no slot this could free; the sweep frees a deleted
   * job's slot).
   */
  async runnerStopped(
    jobId: string,
    reason: string,
    runnerRef?: string,
    { lostToInfrastructure = false }: { lostToInfrastructure?: boolean } = {},
  ): Promise<RunnerStopped> {
    const { store } = this.ctx.deps;
    const job = await store.get(jobId);
    if (!job) return { reconciled: false, reason: 'no such job' };
    if (runnerRef && job.runner_ref !== runnerRef) {
      const reason = job.runner_ref
        ? "task of an earlier attempt, not the job's runner"
        : "the job's runner is not recorded yet";
      return { reconciled: false, reason, tenant: job.tenant };
    }
    await this.settleStoppedRun(job, { reason, lostToInfrastructure });
    await store.releaseSlot(jobId);
    await this.scheduler.dispatch();
    return { reconciled: true, job_id: job.job_id, tenant: job.tenant };
  }

  /**
   * The one rule for a running job whose runner stopped: requeued as a new attempt when the run
   * was lost to infrastructure and attempts are left, else failed. A job that is no longer in the
   * attempt seen (someone decided first) is left as it is. Says what was done; the caller frees
   * the slot.
   */
  private async settleStoppedRun(job: JobRecord, stop: RunnerStop): Promise<'requeued' | 'failed' | null> {
    if (job.status !== 'running') return null;
    const { clock } = this.ctx.deps;
    const { maxAttempts } = this.ctx.config;
    const { reason, lostToInfrastructure } = stop;
    if (lostToInfrastructure && job.attempt < maxAttempts) {
      if (!(await this.ctx.lifecycle.applyIfCurrent(job, transitions.requeued(job, reason, clock.now()))))
        return null;
      this.ctx.log('run lost to infrastructure; the job is requeued as a new attempt', {
        ...jobFields(job),
        attempt: job.attempt,
        reason,
      });
      return 'requeued';
    }
    const message = lostToInfrastructure
      ? `the job's run was lost to infrastructure on attempt ${job.attempt} of at most ${maxAttempts}: ${reason}`
      : `the job's runner stopped before reporting a result: ${reason}`;
    if (!(await this.ctx.lifecycle.applyIfCurrent(job, transitions.runnerLost(message, clock.now()))))
      return null;
    this.ctx.log('runner stopped without a result; the job failed', { ...jobFields(job), reason });
    return 'failed';
  }

  /**
   * Ends every running job as failed with `message` after stopping whatever is left of its runner
   * (local mode at start-up: a previous server's runners can no longer report to this store).
   */
  async abandonRunning(message: string): Promise<string[]> {
    const { store, launcher, clock } = this.ctx.deps;
    const ended: string[] = [];
    for (const job of await store.listRunning()) {
      if (job.runner_ref && (await launcher.isAlive(job.runner_ref))) await launcher.stop(job);
      if (await this.ctx.lifecycle.applyIfCurrent(job, transitions.runnerLost(message, clock.now())))
        ended.push(job.job_id);
      await store.releaseSlot(job.job_id);
    }
    return ended;
  }

  /**
   * Periodic repair: stops jobs past their deadline; settles jobs whose runner is gone (by the stop
   * event's rule when the launcher says why it stopped: requeued when lost to infrastructure, else
   * failed); frees leaked slots; and dispatches. Safe to run from several places at once.
   */
  async sweep(): Promise<SweepResult> {
    const { store, launcher, clock } = this.ctx.deps;
    const { lifecycle, config } = this.ctx;
    const now = clock.now();
    const timedOut: string[] = [];
    const lost: string[] = [];
    const requeued: string[] = [];
    for (const job of await store.listRunning()) {
      const deadline = job.deadline_at ? Date.parse(job.deadline_at) : Infinity;
      if (now.getTime() > deadline + config.deadlineGraceSeconds * 1000) {
        if (await lifecycle.applyIfCurrent(job, transitions.timedOut(job, now))) {
          this.ctx.log('sweep: the job ran past its deadline and failed as a timeout', jobFields(job));
          await launcher.stop(job);
        }
        timedOut.push(job.job_id);
        continue;
      }
      const state = job.runner_ref ? await this.runnerState(job.runner_ref) : { alive: null };
      if (state.stop) {
        // The platform says why it stopped (its STOPPED event may have been lost): the event's rule.
        const settled = await this.settleStoppedRun(job, state.stop);
        if (settled === 'requeued') {
          await store.releaseSlot(job.job_id); // a queued job holds none; the slot loop skips it
          requeued.push(job.job_id);
        } else if (settled === 'failed') lost.push(job.job_id);
        continue;
      }
      const launchOverdue =
        !job.runner_ref &&
        job.started_at &&
        now.getTime() - Date.parse(job.started_at) > config.launchGraceSeconds * 1000;
      if (state.alive === false || launchOverdue) {
        const message = launchOverdue
          ? 'the job was never picked up by a runner'
          : "the job's runner is gone (the process or task ended without reporting a result)";
        if (await lifecycle.applyIfCurrent(job, transitions.runnerLost(message, now)))
          this.ctx.log(`sweep: ${message}; the job failed`, jobFields(job));
        lost.push(job.job_id);
      }
    }
    const released: string[] = [];
    for (const holder of await store.slotHolders()) {
      const job = await store.get(holder);
      if (job && !isTerminal(job.status)) continue;
      const alive = job?.runner_ref ? await launcher.isAlive(job.runner_ref) : false;
      if (alive) continue; // a cancelled runner still saving its notebook keeps its slot
      await store.releaseSlot(holder);
      released.push(holder);
    }
    await this.scheduler.dispatch();
    return { timed_out: timedOut, lost, requeued, released };
  }

  /** The launcher's view of a runner, with why it stopped when the launcher can tell. */
  private async runnerState(runnerRef: string): Promise<RunnerState> {
    const { launcher } = this.ctx.deps;
    return launcher.runnerState
      ? launcher.runnerState(runnerRef)
      : { alive: await launcher.isAlive(runnerRef) };
  }

  async gauges(): Promise<JobGauges> {
    const { store } = this.ctx.deps;
    const [queued, running] = await Promise.all([store.countQueued(), store.listRunning()]);
    return { queued, running: running.length };
  }
}
