/**
 * JobService: the use cases, behind one facade. REST routes, MCP tools, Lambda handlers and the
 * local server all call this. The work is done by its parts, each on the same ports and
 * configuration (service-context.ts): submission, views (queries), scheduling (dispatch),
 * reconciliation (runner exits, the sweep), retention (delete, cleanup); every state change goes
 * through the lifecycle (lifecycle.ts).
 */
import { ConflictError, StateConflictError } from './errors.ts';
import { isTerminal } from './job.ts';
import { transitions } from './lifecycle.ts';
import type {
  CleanupResult,
  DeleteResult,
  InspectResult,
  JobFiles,
  JobList,
  OutputFile,
  JobView,
  LogPage,
  ResultView,
  UploadSlot,
} from './contract.ts';
import type { InspectRequest, ListJobsRequest, LogsRequest } from './schemas.ts';
import { JobViews, type FileReadOptions } from './job-views.ts';
import { Reconciler, type JobGauges, type RunnerStopped, type SweepResult } from './reconciliation.ts';
import { Retention } from './retention.ts';
import { Scheduler } from './scheduling.ts';
import {
  getOwned,
  serviceContext,
  type JobServiceConfig,
  type JobServiceDeps,
  type ServiceContext,
} from './service-context.ts';
import { Submission } from './submission.ts';

export { DEFAULT_SERVICE_CONFIG, type JobServiceConfig, type JobServiceDeps } from './service-context.ts';
export type { JobGauges, RunnerStopped, SweepResult } from './reconciliation.ts';
export type { CleanupResult, InspectResult, JobView, ResultView } from './contract.ts';

export class JobService {
  /** Shared with every part: tuning it (tests do) applies everywhere. */
  readonly config: JobServiceConfig;
  private readonly ctx: ServiceContext;
  private readonly views: JobViews;
  private readonly scheduler: Scheduler;
  private readonly submission: Submission;
  private readonly reconciler: Reconciler;
  private readonly retention: Retention;

  constructor(deps: JobServiceDeps) {
    this.ctx = serviceContext(deps);
    this.config = this.ctx.config;
    this.views = new JobViews(this.ctx);
    this.scheduler = new Scheduler(this.ctx);
    this.submission = new Submission(this.ctx, this.views, this.scheduler);
    this.reconciler = new Reconciler(this.ctx, this.scheduler);
    this.retention = new Retention(this.ctx);
  }

  /** Validates, stores the runnable notebook, records a queued job, and dispatches. */
  create(tenant: string, input: unknown, idempotencyKey?: string): Promise<JobView> {
    return this.submission.create(tenant, input, idempotencyKey);
  }

  inspect(tenant: string, input: InspectRequest): Promise<InspectResult> {
    return this.submission.inspect(tenant, input);
  }

  /** A short-lived URL to PUT a notebook to, and the URI to submit it by afterwards. */
  createUpload(tenant: string, input: unknown): Promise<UploadSlot> {
    return this.submission.createUpload(tenant, input);
  }

  get(tenant: string, jobId: string): Promise<JobView> {
    return this.views.get(tenant, jobId);
  }

  list(tenant: string, query: ListJobsRequest): Promise<JobList> {
    return this.views.list(tenant, query);
  }

  logs(tenant: string, jobId: string, query: LogsRequest): Promise<LogPage> {
    return this.views.logs(tenant, jobId, query);
  }

  result(tenant: string, jobId: string): Promise<ResultView> {
    return this.views.result(tenant, jobId);
  }

  /** The executed notebook (partial for failed and cancelled jobs), as .ipynb or rendered HTML. */
  output(
    tenant: string,
    jobId: string,
    format: 'ipynb' | 'html' = 'ipynb',
    options: { allowUrl?: boolean } = {},
  ): Promise<{ name: string; body: Buffer } | { name: string; url: string }> {
    return this.views.output(tenant, jobId, format, options);
  }

  /** The files the job's notebook created or changed (saved when it ended). */
  files(tenant: string, jobId: string): Promise<JobFiles> {
    return this.views.files(tenant, jobId);
  }

  /** One output file by its path in the working folder: its bytes or a short-lived URL. */
  file(
    tenant: string,
    jobId: string,
    path: string,
    options: FileReadOptions = {},
  ): Promise<{ file: OutputFile; body: Buffer } | { file: OutputFile; url: string }> {
    return this.views.file(tenant, jobId, path, options);
  }

  /** Waits for a job to end, up to `seconds` from `since` (the request's arrival). */
  waitForEnd(tenant: string, jobId: string, seconds: number, since?: number): Promise<JobView> {
    return this.views.waitForEnd(tenant, jobId, seconds, since);
  }

  /** Cancels a queued or running job; a terminal job answers 409 with its state. */
  async cancel(tenant: string, jobId: string): Promise<JobView> {
    const { deps, lifecycle } = this.ctx;
    let job = await getOwned(this.ctx, tenant, jobId);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (job.status === 'cancelled') return this.views.view(job, null);
      if (isTerminal(job.status)) {
        throw new ConflictError(
          `job ${jobId} already ended as ${job.status}; only queued or running jobs can be cancelled`,
          { job_id: jobId, status: job.status },
        );
      }
      try {
        const cancelled = await lifecycle.apply(job, transitions.cancelled(job.status, deps.clock.now()));
        if (job.status === 'running') await deps.launcher.stop(cancelled);
        else await deps.store.releaseSlot(jobId);
        return this.views.view(cancelled, null);
      } catch (error) {
        if (!(error instanceof StateConflictError)) throw error;
        job = error.current; // it moved (e.g. queued -> running): decide again on what it is now
      }
    }
    throw new ConflictError(`job ${jobId} kept changing state; try again`, { job_id: jobId });
  }

  /** Deletes a terminal job: record, notebooks and logs. */
  delete(tenant: string, jobId: string): Promise<DeleteResult> {
    return this.retention.delete(tenant, jobId);
  }

  /** Deletes this tenant's ended jobs that ended more than `olderThanHours` ago. */
  cleanup(tenant: string, olderThanHours: number): Promise<CleanupResult> {
    return this.retention.cleanup(tenant, olderThanHours);
  }

  /** Starts queued jobs while slots are free: highest priority first, FIFO within a priority. */
  dispatch(): Promise<void> {
    return this.scheduler.dispatch();
  }

  /**
   * A job's runner is gone (local child exit, ECS task STOPPED): a running job fails (or, when the
   * run was lost to infrastructure, is requeued as a new attempt while it has attempts left), its
   * slot is freed and the next job dispatched. An unknown job, or another runner than the job's
   * current one (`runnerRef`), changes nothing.
   */
  runnerStopped(
    jobId: string,
    reason: string,
    runnerRef?: string,
    options?: { lostToInfrastructure?: boolean },
  ): Promise<RunnerStopped> {
    return this.reconciler.runnerStopped(jobId, reason, runnerRef, options);
  }

  /** The id of the job a runner (an ECS task ARN) took, or null (a warm runner that had none). */
  async jobOfRunner(runnerRef: string): Promise<string | null> {
    return (await this.ctx.deps.store.findByRunnerRef(runnerRef))?.job_id ?? null;
  }

  /** Ends every running job whose runner this process can no longer hear (local restart). */
  abandonRunning(message: string): Promise<string[]> {
    return this.reconciler.abandonRunning(message);
  }

  /** Periodic repair: deadlines, lost runners, leaked slots; then dispatch. */
  sweep(): Promise<SweepResult> {
    return this.reconciler.sweep();
  }

  /** How many jobs are queued and running, across tenants. */
  gauges(): Promise<JobGauges> {
    return this.reconciler.gauges();
  }

  /** Idle warm runners with a fresh heartbeat; null when this deployment has no warm pool. */
  async idleWarmRunners(): Promise<number | null> {
    const { warm, clock } = this.ctx.deps;
    return warm ? warm.countIdle(clock.now()) : null;
  }
}
