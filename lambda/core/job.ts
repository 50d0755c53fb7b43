/**
 * The job model and its state machine. Pure data and rules: no I/O here.
 */
import { InvalidRequestError } from './errors.ts';

export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export const STAGES = ['provisioning', 'starting_kernel', 'executing', 'saving'] as const;
export type Stage = (typeof STAGES)[number];

export const ERROR_TYPES = [
  'cell_error',
  'timeout',
  'kernel_died',
  'infrastructure',
  'invalid_notebook',
  'output_too_large',
  'secret_unavailable',
] as const;
export type JobErrorType = (typeof ERROR_TYPES)[number];

/**
 * Default limit on an executed notebook's size (the runner's output limit), and on what the result
 * summary reads back: enough for plots and tables, small enough that a few summaries at once
 * do not exhaust the server's memory.
 */
export const DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES = 50 * 1024 * 1024;

/**
 * Allowed transitions; every state write is conditional on the `from` state. Applied only through
 * lambda/core/lifecycle.ts, which builds each change and checks it against this table.
 */
const TRANSITIONS: Record<JobStatus, readonly JobStatus[]> = {
  queued: ['running', 'cancelled', 'failed'],
  // running -> queued: a launch that met no capacity waits for its retry, and a run lost to
  // infrastructure (Fargate Spot interruption) is requeued as a new attempt.
  running: ['completed', 'failed', 'cancelled', 'queued'],
  completed: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The statuses a job may be in before moving to `to`. */
export function sourcesOf(to: JobStatus): JobStatus[] {
  return JOB_STATUSES.filter((from) => TRANSITIONS[from].includes(to));
}

export interface JobError {
  type: JobErrorType;
  message: string;
  cell_index?: number | null;
  ename?: string | null;
  evalue?: string | null;
  traceback?: string[];
}

/** An earlier attempt of a job, ended by the infrastructure (the current attempt is the job itself). */
export interface AttemptRecord {
  attempt: number;
  started_at: string | null;
  ended_at: string;
  /** Why it ended, e.g. the ECS stop code and reason of a Fargate Spot interruption. */
  reason: string;
}

export interface CurrentCell {
  index: number;
  source_preview: string;
}

export interface Progress {
  cells_total: number;
  cells_executed: number;
  percent: number;
  current_cell: CurrentCell | null;
}

export function emptyProgress(cellsTotal: number): Progress {
  return { cells_total: cellsTotal, cells_executed: 0, percent: 0, current_cell: null };
}

export function percentOf(executed: number, total: number): number {
  if (total <= 0) return 100;
  return Math.round((executed / total) * 1000) / 10;
}

/** The stored job: everything the service, the runner and reconciliation need. */
export interface JobRecord {
  job_id: string;
  tenant: string;
  status: JobStatus;
  stage: Stage | null;
  notebook: { name: string; uri: string };
  parameters: Record<string, unknown>;
  kernel: string;
  language: string;
  progress: Progress;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  ended_at: string | null;
  timeout_seconds: number;
  cell_timeout_seconds: number | null;
  /** Set when the job starts running: started_at + timeout_seconds. */
  deadline_at: string | null;
  priority: number;
  tags: Record<string, string>;
  attempt: number;
  cpu: number | null;
  memory: number | null;
  /** Where the executed notebook is (or will be) written; fixed at creation. */
  output_uri: string;
  /**
   * True once the runner saved the executed notebook, so showing a job needs no storage lookup
   * (an S3 HEAD per listed job). Absent on records written before the field existed: then unknown.
   */
  output_saved?: boolean;
  /**
   * True when the input notebook was stored already parameterized (submit injects the parameters it
   * validated), so the runner executes it as stored and takes `progress.cells_total` from here.
   * Absent on jobs submitted before: the runner then injects `parameters` itself.
   */
  input_parameterized?: boolean;
  /**
   * The files the job brought (stored under `inputs/<tenant>/<job>/files/`, listed in that
   * folder's manifest), placed in its working folder before the kernel starts. Absent: none.
   */
  input_files?: { count: number; bytes: number };
  /**
   * The job's secrets: environment variable name -> reference (never a value; lambda/core/secrets.ts).
   * Absent when the job has none.
   */
  secrets?: Record<string, string>;
  /**
   * Parameters whose values are redacted: `parameters` holds `[redacted]` for them, and the values
   * wait for the runner in the job's input folder (REDACTED_PARAMETERS_FILE). Absent when none.
   */
  redact_parameters?: string[];
  error: JobError | null;
  /**
   * Earlier attempts lost to infrastructure, oldest first (absent on records written before the
   * field existed: none).
   */
  attempts?: AttemptRecord[];
  /**
   * Launch tries of the current attempt that met no capacity, a quota or throttling (the job then
   * waits queued). Reset when the job is requeued as a new attempt. Absent: none.
   */
  launch_attempts?: number;
  /** The earliest time the next launch try may happen; null or absent when not waiting for one. */
  launch_retry_at?: string | null;
  /** When launch tries stop and the job fails (set by the first failed try); null or absent before. */
  launch_deadline_at?: string | null;
  /** What the last failed launch try answered. */
  last_launch_error?: string | null;
  /**
   * Counts launch tries known to have started nothing; names the launcher's idempotency token
   * (ECS RunTask clientToken), so a retry after an ambiguous failure (a thrown 5xx may hide a
   * started task) gets the task that may exist instead of a second one. Absent: 0.
   */
  launch_generation?: number;
  /** Launcher handle (local: "pid:<n>"; AWS: the task ARN). */
  runner_ref: string | null;
  idempotency_key: string | null;
  /** Hash of the canonical create request, to tell a replay from a different body. */
  request_hash: string | null;
}

/** Fields that change together with a state write. */
export type JobChanges = Partial<
  Pick<
    JobRecord,
    | 'status'
    | 'stage'
    | 'progress'
    | 'started_at'
    | 'ended_at'
    | 'deadline_at'
    | 'error'
    | 'runner_ref'
    | 'attempt'
    | 'updated_at'
    | 'output_saved'
    | 'attempts'
    | 'launch_attempts'
    | 'launch_retry_at'
    | 'launch_deadline_at'
    | 'last_launch_error'
    | 'launch_generation'
    // Written back unchanged when a job re-enters the queue: the store keys the queue by it.
    | 'priority'
  >
>;

export function durationSeconds(job: JobRecord, now: Date): number | null {
  if (!job.started_at) return null;
  const end = job.ended_at ? Date.parse(job.ended_at) : now.getTime();
  return Math.round((end - Date.parse(job.started_at)) / 100) / 10;
}

/**
 * Artifact keys, fixed at creation so every component agrees where a job's notebooks live. Every
 * key starts with its kind and its tenant, so a key (and the URI made from it) names one tenant's
 * data: `inputs/<tenant>/<job>/`, `outputs/<tenant>/<job>/`, `uploads/<tenant>/<token>/`.
 */
export function inputKey(tenant: string, jobId: string, name: string): string {
  return checkArtifactKey(`inputs/${tenant}/${jobId}/${name}`);
}

export function outputKey(tenant: string, jobId: string, name: string): string {
  return checkArtifactKey(`outputs/${tenant}/${jobId}/${name}`);
}

/** Where the HTML rendering of a job's executed notebook is kept, beside the notebook. */
export function htmlOutputKey(tenant: string, jobId: string, notebookName: string): string {
  return outputKey(tenant, jobId, htmlName(notebookName));
}

/** The folder of a tenant's uploads; an upload is `<this><random token>/<name>`. */
export function uploadsPrefix(tenant: string): string {
  return checkArtifactKey(`uploads/${tenant}/`, { folder: true });
}

/** The folders holding everything of one job (deleted with it). */
export function jobKeyPrefixes(tenant: string, jobId: string): string[] {
  return [`inputs/${tenant}/${jobId}/`, `outputs/${tenant}/${jobId}/`].map((key) =>
    checkArtifactKey(key, { folder: true }),
  );
}

/**
 * A relative key whose segments are all plain names: no empty, ".", ".." or control-character
 * segment, no backslash, at most 1,024 characters. So a key can never name another prefix, folder
 * or tenant, on S3 or on disk.
 */
export function checkArtifactKey(key: string, { folder = false } = {}): string {
  const segments = (folder ? key.replace(/\/$/, '') : key).split('/');
  const bad =
    !key ||
    key.length > 1024 ||
    key.includes('\\') ||
    /\p{Cc}/u.test(key) ||
    segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) {
    throw new InvalidRequestError(
      `invalid artifact key ${JSON.stringify(key.slice(0, 200))}: keys are relative paths of plain names like inputs/<tenant>/<job>/name.ipynb`,
    );
  }
  return key;
}

export function htmlName(notebookName: string): string {
  return notebookName.replace(/\.ipynb$/, '.html');
}

/** A published state change (EventBridge "Notebook Job State Change"; local: not published). */
export interface JobStateChange {
  job_id: string;
  tenant: string;
  status: JobStatus;
  previous_status: JobStatus | null;
  notebook_name: string;
  kernel: string;
  tags: Record<string, string>;
  attempt: number;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  /** Run time, once ended. */
  duration_seconds: number | null;
  /** Time between creation and start, once started. */
  queue_wait_seconds: number | null;
  error: JobError | null;
  output_uri: string | null;
}

export function stateChange(job: JobRecord, previous: JobStatus | null): JobStateChange {
  const seconds = (from: string | null, to: string | null) =>
    from && to ? Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10 : null;
  return {
    job_id: job.job_id,
    tenant: job.tenant,
    status: job.status,
    previous_status: previous,
    notebook_name: job.notebook.name,
    kernel: job.kernel,
    tags: job.tags,
    attempt: job.attempt,
    created_at: job.created_at,
    started_at: job.started_at,
    ended_at: job.ended_at,
    duration_seconds: seconds(job.started_at, job.ended_at),
    queue_wait_seconds: seconds(job.created_at, job.started_at),
    error: job.error,
    output_uri: job.output_saved ? job.output_uri : null,
  };
}
