/**
 * Scheduling: starts queued jobs while concurrency slots are free (highest priority first, FIFO
 * within a priority) and launches their runners. Every step is conditional, so dispatchers in
 * several processes may race harmlessly.
 */
import { errorMessage, LaunchUnavailableError, StateConflictError } from './errors.ts';
import { transitions } from './lifecycle.ts';
import { jobFields } from './logging.ts';
import type { JobRecord } from './job.ts';
import { sleep, type ServiceContext } from './service-context.ts';

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
    await this.settleExpiredOffers();
    // Jobs whose launch was deferred in this pass: the queue index may still show them as they
    // were (no retry time yet), and they must not be tried again at once.
    const deferred = new Set<string>();
    for (;;) {
      const now = clock.now().getTime();
      const queued = await store.listQueued(QUEUE_LOOKAHEAD);
      // A job waiting for its launch retry lets the jobs behind it pass (another size may fit).
      const next = queued.find((job) => !deferred.has(job.job_id) && retryDue(job, now));
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
      if (!(await this.launch(job))) deferred.add(job.job_id);
    }
  }

  /** Launches a started job's runner; false when the launch was deferred (the job waits queued). */
  private async launch(job: JobRecord): Promise<boolean> {
    const { store } = this.ctx.deps;
    const handed = await this.handToWarmRunner(job);
    if (handed !== 'launch') {
      if (handed === 'ended') await store.releaseSlot(job.job_id); // cancelled while offered
      return true;
    }
    return this.launchCold(job);
  }

  /** Launches the job's runner with the launcher; false when the launch was deferred. */
  private async launchCold(job: JobRecord): Promise<boolean> {
    const { launcher, clock, store } = this.ctx.deps;
    try {
      const { runner_ref } = await launcher.launch(job);
      // A job that already ended keeps its ending (its runner finds it not running and does nothing).
      await this.ctx.lifecycle.applyIfCurrent(job, transitions.runnerAssigned(runner_ref));
      return true;
    } catch (error) {
      let waiting = false;
      if (error instanceof LaunchUnavailableError) {
        waiting = await this.deferLaunch(job, error);
      } else {
        this.ctx.log('launch failed; the job fails', { ...jobFields(job), error });
        await this.ctx.lifecycle.applyIfCurrent(
          job,
          transitions.launchFailed(errorMessage(error), clock.now()),
        );
      }
      // Nothing runs for it (waiting, failed, or cancelled meanwhile): its slot is free at once.
      await store.releaseSlot(job.job_id);
      return !waiting;
    }
  }

  /**
   * Offers a started job to an idle warm runner and waits (polling the job) until the runner claims
   * it, the job ends (cancelled while offered), or the offer deadline passes; then the offer is
   * withdrawn, conditionally, and the job is launched as usual. 'launch' when the job still needs a
   * runner; 'taken' when a warm runner has it (or another dispatcher withdrew the offer and
   * launches); 'ended' when the job ended meanwhile and nothing will run for it.
   */
  private async handToWarmRunner(job: JobRecord): Promise<'launch' | 'taken' | 'ended'> {
    const { warm, store, clock } = this.ctx.deps;
    if (!warm || !fitsWarmRunner(job, warm.kernel)) return 'launch';
    const offerMs = this.ctx.config.warmOfferMs;
    const deadline = new Date(clock.now().getTime() + offerMs);
    let runnerId: string | null;
    try {
      runnerId = await warm.offer(job, deadline, clock.now());
    } catch (error) {
      this.ctx.log('offering the job to a warm runner failed; launching it', { ...jobFields(job), error });
      return 'launch';
    }
    if (!runnerId) {
      const current = await store.get(job.job_id);
      return current?.status === 'running' && current.attempt === job.attempt ? 'launch' : 'ended';
    }
    // Wall-clock time, not clock.now(): this is a wait, and tests drive the service's clock.
    const end = Date.now() + offerMs;
    for (;;) {
      const current = await store.get(job.job_id);
      if (current?.runner_ref) return 'taken';
      if (current?.status !== 'running' || current.attempt !== job.attempt) break;
      if (Date.now() >= end) break;
      await sleep(this.ctx.config.waitPollMs);
    }
    return this.withdrawOffer(job.job_id, runnerId);
  }

  /** Withdraws an untaken offer; 'launch' when the job, still running, now needs a cold launch. */
  private async withdrawOffer(jobId: string, runnerId: string): Promise<'launch' | 'taken' | 'ended'> {
    const { warm, store } = this.ctx.deps;
    const withdrawn = await warm?.withdraw(jobId, runnerId);
    // Not withdrawn: the runner claimed it at the last moment, or another dispatcher (the sweep)
    // withdrew it first and launches it.
    if (!withdrawn) return 'taken';
    const current = await store.get(jobId);
    if (current?.status === 'running' && !current.runner_ref) {
      this.ctx.log('no warm runner took the job in time; launching it', jobFields(current));
      return 'launch';
    }
    return current?.status === 'running' ? 'taken' : 'ended';
  }

  /**
   * Offers whose deadline passed while nobody waited for them (the dispatching Lambda was frozen or
   * stopped): withdrawn and launched here, so such a job starts cold at the next dispatch (the sweep
   * runs one every minute) instead of waiting for the launch grace to fail it.
   */
  private async settleExpiredOffers(): Promise<void> {
    const { warm, store, clock } = this.ctx.deps;
    if (!warm) return;
    for (const offer of await warm.expiredOffers(clock.now())) {
      const outcome = await this.withdrawOffer(offer.job_id, offer.runner_id);
      const job = outcome === 'taken' ? null : await store.get(offer.job_id);
      if (outcome === 'ended') {
        if (job && job.status !== 'running') await store.releaseSlot(offer.job_id);
      } else if (outcome === 'launch' && job) {
        await this.launchCold(job);
      }
    }
  }

  /**
   * The platform could not take the job now: back to the queue with a retry time (doubling, capped,
   * never past the launch deadline), or failed once a try fails at or after the deadline. True when
   * the job now waits for its retry.
   */
  private async deferLaunch(job: JobRecord, error: LaunchUnavailableError): Promise<boolean> {
    const { lifecycle, config } = this.ctx;
    const now = this.ctx.deps.clock.now();
    const deadline = job.launch_deadline_at
      ? new Date(job.launch_deadline_at)
      : new Date(now.getTime() + config.launchDeadlineSeconds * 1000);
    const tries = (job.launch_attempts ?? 0) + 1;
    if (now.getTime() >= deadline.getTime()) {
      const waited = job.launch_deadline_at ? ` for ${config.launchDeadlineSeconds} s` : '';
      const message = `no capacity to start the job${waited} (${tries} launch ${tries === 1 ? 'try' : 'tries'}, launch deadline reached): ${error.message}`;
      this.ctx.log('launch deadline reached; the job fails', { ...jobFields(job), error });
      await lifecycle.applyIfCurrent(job, transitions.launchFailed(message, now));
      return false;
    }
    const backoff = Math.min(config.launchRetryBaseSeconds * 2 ** (tries - 1), config.launchRetryMaxSeconds);
    const retryAt = new Date(Math.min(now.getTime() + backoff * 1000, deadline.getTime()));
    this.ctx.log('launch deferred; the job waits queued for its retry', {
      ...jobFields(job),
      launch_attempts: tries,
      launch_retry_at: retryAt.toISOString(),
      error,
    });
    const deferred = await lifecycle.applyIfCurrent(
      job,
      transitions.launchDeferred(
        job,
        { error: error.message, retryAt, deadlineAt: deadline, nothingStarted: error.nothingStarted },
        now,
      ),
    );
    return deferred !== null;
  }
}

/** Queued jobs looked at per dispatch step, so jobs waiting for a launch retry can be passed. */
const QUEUE_LOOKAHEAD = 10;

/** Whether a queued job may be launched now (it is not waiting for a launch retry). */
function retryDue(job: JobRecord, now: number): boolean {
  return !job.launch_retry_at || Date.parse(job.launch_retry_at) <= now;
}

/**
 * Whether a warm runner may take the job: its kernel, the task's default size, and nothing that is
 * fixed when a kernel starts and differs per job (secrets in its environment, input files in its
 * folder before it starts). A tenant's notebook role is also such a setting; the dispatcher does not
 * read tenant settings, so the warm runner itself starts a fresh kernel for such a job.
 */
export function fitsWarmRunner(job: JobRecord, kernel: string): boolean {
  return (
    job.kernel === kernel &&
    job.cpu === null &&
    job.memory === null &&
    !job.secrets &&
    (job.input_files?.count ?? 0) === 0
  );
}
