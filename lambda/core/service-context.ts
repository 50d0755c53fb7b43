/**
 * What the parts of JobService share: its dependencies (the ports), its configuration, the
 * lifecycle every state change goes through, and the log. Each part (submission, views,
 * scheduling, reconciliation, retention) is built on one ServiceContext; JobService is their facade.
 */
import { MAX_INLINE_NOTEBOOK_BYTES, SETTINGS } from './settings.ts';
import { dropRedactedValues, NO_SECRETS, type SecretPolicy } from './secrets.ts';
import { NotFoundError } from './errors.ts';
import { DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES, type JobRecord } from './job.ts';
import { Lifecycle } from './lifecycle.ts';
import { textLog, type LogFn } from './logging.ts';
import type {
  Artifacts,
  Clock,
  IdGenerator,
  JobEventPublisher,
  JobStore,
  KernelCatalog,
  Launcher,
  LogReader,
  NotebookRenderer,
  UploadUrls,
  WarmRunners,
} from './ports.ts';
import type { CursorCodec } from './cursor.ts';
import { JobIdSchema, parseRequest } from './schemas.ts';

export interface JobServiceConfig {
  maxConcurrentJobs: number;
  /** Largest notebook accepted inline in a request, in bytes. */
  maxInlineNotebookBytes: number;
  /** Largest notebook accepted by URI or upload, in bytes. */
  maxNotebookBytes: number;
  /** How long an upload URL stays valid. */
  uploadTtlSeconds: number;
  /** How old a claimed idempotency key without its job must be before it counts as abandoned. */
  idempotencyClaimGraceSeconds: number;
  /** How long past its deadline a running job may go before the sweep stops it. */
  deadlineGraceSeconds: number;
  /** How long a freshly started job may go without a runner ref before the sweep fails it. */
  launchGraceSeconds: number;
  /** Poll interval while waiting for a job to finish (wait_seconds). */
  waitPollMs: number;
  /** How long a direct download URL (AWS: presigned S3 GET) stays valid. */
  downloadUrlTtlSeconds: number;
  /** Largest executed notebook a result summary reads; a larger one is only downloadable. */
  maxResultNotebookBytes: number;
  /** How long a create request waits for the dispatch it starts before answering. */
  dispatchWaitMs: number;
  /** How long launches may keep meeting no capacity (quota, throttling) before the job fails. */
  launchDeadlineSeconds: number;
  /** The wait before the first launch retry; it doubles per retry up to `launchRetryMaxSeconds`. */
  launchRetryBaseSeconds: number;
  launchRetryMaxSeconds: number;
  /** Runs of one job, the first included, when runs are lost to infrastructure. */
  maxAttempts: number;
  /** Input files a job may bring (NOTEBOOK_JOBS_MAX_INPUT_FILES). */
  maxInputFiles: number;
  /** Total unpacked bytes of a job's input files (NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES). */
  maxInputFilesBytes: number;
  /** Which secret references jobs may name (lambda/core/secrets.ts); default: none. */
  secrets: SecretPolicy;
  /** How long a warm runner has to claim a job offered to it before the job is launched cold. */
  warmOfferMs: number;
}

export const DEFAULT_SERVICE_CONFIG: JobServiceConfig = {
  maxConcurrentJobs: SETTINGS.maxConcurrentJobs.default,
  maxInlineNotebookBytes: MAX_INLINE_NOTEBOOK_BYTES,
  maxNotebookBytes: 100 * 1024 * 1024,
  uploadTtlSeconds: 900,
  idempotencyClaimGraceSeconds: 60,
  deadlineGraceSeconds: 30,
  launchGraceSeconds: 120,
  waitPollMs: 100,
  downloadUrlTtlSeconds: 900,
  maxResultNotebookBytes: DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES,
  dispatchWaitMs: 3000,
  launchDeadlineSeconds: SETTINGS.launchDeadlineSeconds.default,
  // 15 s, 30 s, 60 s, then every 2 min: Fargate capacity and throttling recover in minutes, and the
  // sweep (every minute on AWS) is what retries when nothing else dispatches.
  launchRetryBaseSeconds: 15,
  launchRetryMaxSeconds: 120,
  maxAttempts: SETTINGS.maxAttempts.default,
  maxInputFiles: SETTINGS.maxInputFiles.default,
  maxInputFilesBytes: SETTINGS.maxInputFilesBytes.default,
  secrets: NO_SECRETS,
  // A warm runner polls its item every 300 ms (container/runner/warm-runner.ts): 3 s is ten polls.
  warmOfferMs: 3000,
};

export interface JobServiceDeps {
  store: JobStore;
  artifacts: Artifacts;
  launcher: Launcher;
  logs: LogReader;
  kernels: KernelCatalog;
  clock: Clock;
  ids: IdGenerator;
  cursors: CursorCodec;
  uploads: UploadUrls;
  renderer: NotebookRenderer;
  /** Warm runners a started job is offered to before a launch (AWS warm pool; default: none). */
  warm?: WarmRunners;
  /** Where state changes are published (default: nowhere). */
  events?: JobEventPublisher;
  /**
   * Where failures that reach no caller are reported, with the job's `job_id` and `tenant` and the
   * error itself (default: text lines on stderr).
   */
  log?: LogFn;
  config?: Partial<JobServiceConfig>;
}

export interface ServiceContext {
  deps: JobServiceDeps;
  /** Shared by every part: a change (tests tune limits) applies to all of them. */
  config: JobServiceConfig;
  lifecycle: Lifecycle;
  log: LogFn;
}

export function serviceContext(deps: JobServiceDeps): ServiceContext {
  const log = deps.log ?? textLog();
  return {
    deps,
    config: { ...DEFAULT_SERVICE_CONFIG, ...deps.config },
    lifecycle: new Lifecycle({
      store: deps.store,
      events: deps.events,
      // A job the service ends no runner will end: its redacted parameter values go now.
      ended: (job) => dropRedactedValues(job, deps.artifacts, log),
    }),
    log,
  };
}

/** The caller's job; another tenant's job is indistinguishable from a missing one. */
export async function getOwned(ctx: ServiceContext, tenant: string, jobId: string): Promise<JobRecord> {
  parseRequest(JobIdSchema, jobId, 'job_id');
  const job = await ctx.deps.store.get(jobId);
  if (!job || job.tenant !== tenant) throw new NotFoundError(`job ${jobId} not found`, { job_id: jobId });
  return job;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
