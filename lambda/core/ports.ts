/**
 * Ports: the interfaces the core needs from the outside world. Adapters implement them
 * (DynamoDB, files, child processes; later S3, ECS, CloudWatch) and are wired once per entry point.
 */
import type { JobChanges, JobRecord, JobStateChange, JobStatus } from './job.ts';

export interface Page<T> {
  items: T[];
  /** Opaque continuation, or null on the last page. */
  next_cursor: string | null;
}

export interface ListJobsQuery {
  tenant: string;
  status?: JobStatus;
  tag?: { key: string; value: string };
  limit: number;
  cursor?: string;
  /** Only jobs created strictly before this ISO time (used by cleanup). */
  created_before?: string;
}

export interface IdempotencyClaim {
  /** The job id recorded for this key (ours when we won the claim). */
  job_id: string;
  request_hash: string;
  /** When the claim was made: a claim without its job is only stale once it is old. */
  created_at: string;
  /** True when this call created the claim. */
  created: boolean;
}

export interface JobStore {
  /** Creates a queued job; fails with ConflictError if the id exists. */
  create(job: JobRecord): Promise<void>;
  get(jobId: string): Promise<JobRecord | null>;
  /**
   * Conditional write: applies `changes` only while the job's status is one of `from` (and, with
   * `attempt`, while the job is at that attempt, so a requeued job's earlier runner cannot write).
   * Returns the updated job, or throws StateConflictError carrying the current job
   * (NotFoundError if it does not exist). The carried job was read after the failed write, so
   * in a race its status may already be one of `from` again; callers decide on what it is now.
   */
  update(
    jobId: string,
    from: readonly JobStatus[],
    changes: JobChanges,
    attempt?: number,
  ): Promise<JobRecord>;
  delete(jobId: string): Promise<void>;
  /** Newest first; cost follows the page (index query, never a scan). */
  list(query: ListJobsQuery): Promise<Page<JobRecord>>;
  /** Queued jobs across tenants, highest priority first, FIFO within a priority. */
  listQueued(limit: number): Promise<JobRecord[]>;
  /** How many queued jobs start before this one (0 = next); cost follows that number. */
  countQueuedAhead(job: JobRecord): Promise<number>;
  /** How many jobs are queued, across tenants (a count: no jobs are read). */
  countQueued(): Promise<number>;
  /** All running jobs across tenants (reconciliation). */
  listRunning(): Promise<JobRecord[]>;
  /** The job a runner ref (an ECS task ARN) is recorded on, or null (a keys-only index Query). */
  findByRunnerRef(runnerRef: string): Promise<JobRecord | null>;
  /**
   * Claims an idempotency key for a tenant (conditional put), or returns the existing claim. `now`
   * is the service's clock: claims are stamped and aged by one clock.
   */
  claimIdempotencyKey(
    tenant: string,
    key: string,
    jobId: string,
    requestHash: string,
    now?: Date,
  ): Promise<IdempotencyClaim>;
  /** Replaces a claim whose job never got created (a crash between the two writes). */
  replaceIdempotencyKey(
    tenant: string,
    key: string,
    staleJobId: string,
    jobId: string,
    requestHash: string,
    now?: Date,
  ): Promise<boolean>;
  /** Deletes a claim if it still names `jobId` (never another request's claim). */
  releaseIdempotencyKey(tenant: string, key: string, jobId: string): Promise<void>;
  /** Concurrency slots: a set of holder job ids on one item. Acquire is idempotent per job. */
  acquireSlot(jobId: string, limit: number): Promise<boolean>;
  releaseSlot(jobId: string): Promise<void>;
  slotHolders(): Promise<string[]>;
}

/** Where notebooks live: local files or S3. Keys are relative ("inputs/<job>/x.ipynb"). */
export interface Artifacts {
  /** The URI a key is stored at (file:///... or s3://...). */
  uriFor(key: string): string;
  put(key: string, body: Buffer | string): Promise<string>;
  /**
   * Reads one of this deployment's own artifacts by the URI `uriFor`/`put` gave (job records hold
   * them). With `maxBytes`, a larger object fails with PayloadTooLargeError before it is read.
   */
  read(uri: string, maxBytes?: number): Promise<Buffer>;
  /**
   * Reads a URI a caller named (a notebook to submit or inspect): only the tenant's own uploads
   * (`uploadsPrefix(tenant)`) and the external locations this deployment allows that tenant
   * (AWS: configured s3:// prefixes; local: the workspace folder, never the data folder). Anything
   * else is refused with InvalidRequestError saying what may be named; another tenant's upload reads
   * as not found. `maxBytes` as for `read`.
   */
  readSubmitted(tenant: string, uri: string, maxBytes: number): Promise<Buffer>;
  /**
   * The files under a folder a caller named (`file:///.../` locally, `s3://bucket/prefix/` on AWS),
   * by the same rules as `readSubmitted`: every file, recursively, with its path relative to the
   * folder ('/'-separated) and the URI to read it by with `readSubmitted`. Cache and tool folders
   * (SKIPPED_FOLDERS) and, locally, links to folders and private folders are left out. More than
   * `maxFiles` files is an InvalidRequestError.
   */
  listSubmitted(tenant: string, folderUri: string, maxFiles: number): Promise<SubmittedFile[]>;
  exists(uri: string): Promise<boolean>;
  /** Deletes one artifact by key; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Deletes every artifact of a job (`jobKeyPrefixes`: its inputs and outputs). */
  deleteJob(tenant: string, jobId: string): Promise<void>;
  /**
   * A short-lived URL callers can download an artifact from directly (AWS: presigned S3 GET).
   * Without it, callers download through this service.
   */
  downloadUrl?(uri: string, expiresInSeconds: number): Promise<string>;
}

/** A file found under a folder a caller named (Artifacts.listSubmitted). */
export interface SubmittedFile {
  path: string;
  uri: string;
  size: number;
}

export interface LaunchResult {
  runner_ref: string;
}

export interface Launcher {
  /**
   * Rejects per-job cpu/memory this launcher cannot provide (InvalidRequestError naming what is
   * allowed). Called before a job is created. Launchers that ignore cpu/memory leave it out.
   */
  checkResources?(resources: { cpu: number | null; memory: number | null }): void;
  /**
   * Starts the job's runner with one try: no retry and no sleep here, since a request may be
   * waiting. Throws LaunchUnavailableError when the platform cannot take the job now (capacity,
   * quota, throttling): the job then waits queued and the dispatcher retries it with backoff; any
   * other error fails the job.
   */
  launch(job: JobRecord): Promise<LaunchResult>;
  /** Stops a job's runner (graceful first); a no-op when it is already gone. */
  stop(job: JobRecord): Promise<void>;
  /** Whether the runner behind a ref is still alive; null when the launcher cannot tell. */
  isAlive(runnerRef: string): Promise<boolean | null>;
  /**
   * As isAlive, with why a stopped runner stopped when the platform says so, in one look-up (ECS:
   * DescribeTasks). The sweep settles a runner whose stop it was never told about by the same rule
   * as the stop event (requeue a run lost to infrastructure, else fail). Launchers that cannot tell
   * why leave it out.
   */
  runnerState?(runnerRef: string): Promise<RunnerState>;
}

/** Why a runner stopped, as the platform reports it (ECS: the task's stop code and reason). */
export interface RunnerStop {
  /** What stopped it, with the runner's exit code when known: for the job's error or attempt history. */
  reason: string;
  /** The platform, not the notebook or a person, ended the run (a Spot interruption, a failed start). */
  lostToInfrastructure: boolean;
}

/** A runner as its launcher sees it: `alive` as isAlive answers, and `stop` once it has stopped. */
export interface RunnerState {
  alive: boolean | null;
  stop?: RunnerStop;
}

import type { LogLine, LogPage } from './contract.ts';
export type { LogLine, LogPage } from './contract.ts';

export interface LogReadOptions {
  cursor?: string;
  limit: number;
  tail?: number;
}

/** What a log reader needs to find a job's log (AWS: the task ARN names the log stream). */
export type LogSource = Pick<JobRecord, 'job_id' | 'runner_ref'>;

export interface LogReader {
  read(job: LogSource, options: LogReadOptions): Promise<LogPage>;
  delete(job: LogSource): Promise<void>;
}

/**
 * Publishes job state changes (AWS: EventBridge). Best effort: a state change has already been
 * stored when it is published, so adapters report their own failures and never throw.
 */
export interface JobEventPublisher {
  publish(change: JobStateChange): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export interface IdGenerator {
  jobId(): string;
}

/** Where a runner writes log lines (local: a file per job; AWS: stdout -> CloudWatch). */
export interface LogSink {
  write(line: LogLine): void;
  flush(): Promise<void>;
}

export interface KernelInfo {
  name: string;
  language: string;
  display_name: string;
}

/** The kernels this deployment can run. */
export interface KernelCatalog {
  list(): Promise<KernelInfo[]>;
}

/** Short-lived URLs a caller can PUT a notebook to (AWS: presigned S3 PUT; local: this server). */
export interface UploadUrls {
  create(key: string, expiresAt: Date): Promise<string>;
}

/** Renders an executed notebook for people. */
export interface NotebookRenderer {
  /** HTML for an .ipynb; throws InvalidRequestError when this deployment cannot render. */
  html(notebook: Buffer): Promise<Buffer>;
}

/**
 * Warm runners (AWS: a service of runner tasks whose kernel is already started) and the hand-off
 * of a started job to one (docs/architecture.md, "Warm runners (AWS)"). Every step is a conditional
 * write on the job item, so an offer is either taken by its runner or withdrawn, never both.
 */
export interface WarmRunners {
  /** The kernel the warm runners have started. */
  readonly kernel: string;
  /**
   * Offers a started job (running, no runner yet) to an idle runner with a fresh heartbeat: marks
   * the job offered to it, then reserves the runner (idle -> offered). Returns the runner's id, or
   * null when no runner is idle or every reservation lost its race (the job is then not offered).
   */
  offer(job: JobRecord, deadline: Date, now: Date): Promise<string | null>;
  /**
   * Withdraws an offer its runner has not taken. True when withdrawn (the job may now be launched
   * cold); false when the runner took it or someone else withdrew it first.
   */
  withdraw(jobId: string, runnerId: string): Promise<boolean>;
  /** Offers whose deadline passed (the dispatcher that made them gave up or stopped). */
  expiredOffers(now: Date): Promise<Array<{ job_id: string; runner_id: string }>>;
  /** Idle runners with a fresh heartbeat (the dashboard's gauge). */
  countIdle(now: Date): Promise<number>;
}
