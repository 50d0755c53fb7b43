/**
 * Scheduling: starts queued jobs while concurrency slots are free (highest priority first, FIFO
 * within a priority) and launches their runners. Every step is conditional, so dispatchers in
 * several processes may race harmlessly.
 */
import { errorMessage, StateConflictError } from './errors.ts';
import { transitions } from './lifecycle.ts';
import { jobFields } from './logging.ts';
import type { JobRecord } from './job.ts';
import type { ServiceContext } from './service-context.ts';

export class Scheduler {
  private dispatching: Promise<void> | null = null;
  private dispatchAgain = false;

  constructor(private readonly ctx: ServiceContext) {}

  /**
   * Starts queued jobs while slots are free. Concurrent calls in this process coalesce; across
   * processes the conditional writes decide.
   */
  async dispatch(): Promise<void> {
    if (this.dispatching) {
      this.dispatchAgain = true;
      return this.dispatching;
    }
    this.dispatching = (async () => {
      do {
        this.dispatchAgain = false;
        await this.dispatchOnce();
      } while (this.dispatchAgain);
    })().finally(() => {
      this.dispatching = null;
    });
    return this.dispatching;
  }

  /**
   * Dispatches, waiting for it at most `ms`: a slow launch (RunTask retries, a busy store) goes on
   * in the background instead of eating the request's time (API Gateway allows 29 s), and a
   * failure leaves the job queued for the next dispatch (the sweep runs one) instead of failing the
   * request that stored it.
   */
  async dispatchWithin(ms: number): Promise<void> {
    const dispatched = this.dispatch().catch((error: unknown) => {
      this.ctx.log('dispatch failed (queued jobs wait for the next one)', { error });
    });
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((done) => (timer = setTimeout(done, ms)));
    await Promise.race([dispatched, bound]);
    clearTimeout(timer);
  }

  private async dispatchOnce(): Promise<void> {
    const { store, clock } = this.ctx.deps;
    for (;;) {
      const [next] = await store.listQueued(1);
      if (!next) return;
      if (!(await store.acquireSlot(next.job_id, this.ctx.config.maxConcurrentJobs))) return;
      let job: JobRecord;
      try {
        job = await this.ctx.lifecycle.apply(next, transitions.started(next, clock.now()));
      } catch (error) {
        if (!(error instanceof StateConflictError)) throw error;
        // Another dispatcher started it (the slot is then its, same holder id) or it was cancelled.
        if (error.current.status !== 'running') await store.releaseSlot(next.job_id);
        continue;
      }
      await this.launch(job);
    }
  }

  private async launch(job: JobRecord): Promise<void> {
    const { launcher, clock } = this.ctx.deps;
    try {
      const { runner_ref } = await launcher.launch(job);
      // A job that already ended keeps its ending (its runner finds it not running and does nothing).
      await this.ctx.lifecycle.applyIfCurrent(job, transitions.runnerAssigned(runner_ref));
    } catch (error) {
      this.ctx.log('launch failed; the job fails', { ...jobFields(job), error });
      await this.ctx.lifecycle.applyIfCurrent(
        job,
        transitions.launchFailed(errorMessage(error), clock.now()),
      );
    }
  }
}
