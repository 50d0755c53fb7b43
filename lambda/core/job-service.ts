/**
 * JobService: the use cases. Knows the job model and its rules; talks to the world only through
 * the ports it is given. REST routes, MCP tools, Lambda handlers and the local server all call this.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  ConflictError,
  errorMessage,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  StateConflictError,
} from './errors.ts';
import {
  DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES,
  durationSeconds,
  emptyProgress,
  htmlName,
  htmlOutputKey,
  inputKey,
  outputKey,
  uploadsPrefix,
  isTerminal,
  sourcesOf,
  stateChange,
  TERMINAL_STATUSES,
  type JobError,
  type JobRecord,
  type JobStatus,
} from './job.ts';
import type {
  Artifacts,
  Clock,
  IdGenerator,
  JobStore,
  KernelCatalog,
  Launcher,
  LogPage,
  JobEventPublisher,
  LogReader,
  NotebookRenderer,
  UploadUrls,
} from './ports.ts';
import type { CursorCodec } from './cursor.ts';
import {
  CreateJobRequestSchema,
  JobIdSchema,
  parseRequest,
  type CreateJobRequest,
  type ListJobsRequest,
  type LogsRequest,
  UploadRequestSchema,
} from './schemas.ts';
import {
  executableCodeCells,
  notebookKernelName,
  notebookLanguage,
  parseNotebookText,
  type Notebook,
} from '../notebook/notebook.ts';
import {
  injectParameters,
  inspectParameters,
  languageForKernel,
  unknownParameters,
} from '../notebook/parameters.ts';
import { summarizeNotebook } from '../notebook/result-summary.ts';
import { nameFromUri } from './names.ts';
import { SETTINGS } from './settings.ts';

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
}

export const DEFAULT_SERVICE_CONFIG: JobServiceConfig = {
  maxConcurrentJobs: SETTINGS.maxConcurrentJobs.default,
  maxInlineNotebookBytes: 5 * 1024 * 1024,
  maxNotebookBytes: 100 * 1024 * 1024,
  uploadTtlSeconds: 900,
  idempotencyClaimGraceSeconds: 60,
  deadlineGraceSeconds: 30,
  launchGraceSeconds: 120,
  waitPollMs: 100,
  downloadUrlTtlSeconds: 900,
  maxResultNotebookBytes: DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES,
  dispatchWaitMs: 3000,
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
  /** Where state changes are published (default: nowhere). */
  events?: JobEventPublisher;
  /** Where failures that reach no caller are reported (default: stderr). */
  log?: (message: string) => void;
  config?: Partial<JobServiceConfig>;
}

import type {
  CleanupResult,
  DeleteResult,
  InspectResult,
  JobList,
  JobView,
  ResultView,
  UploadSlot,
} from './contract.ts';
export type { CleanupResult, InspectResult, JobView, ResultView } from './contract.ts';

type NotebookSource = CreateJobRequest['notebook'];

export class JobService {
  readonly config: JobServiceConfig;
  private dispatching: Promise<void> | null = null;
  private dispatchAgain = false;

  constructor(private readonly deps: JobServiceDeps) {
    this.config = { ...DEFAULT_SERVICE_CONFIG, ...deps.config };
  }

  /** Validates, stores the input notebook, records a queued job, and dispatches. */
  async create(tenant: string, input: unknown, idempotencyKey?: string): Promise<JobView> {
    const arrived = performance.now();
    const request = parseRequest(CreateJobRequestSchema, input, 'job request');
    const key = idempotencyKey ?? request.idempotency_key;
    const { notebook, name } = await this.loadNotebook(tenant, request.notebook);
    const { kernel, language } = await this.resolveKernel(notebook, request.kernel);
    const runnable = this.parameterize(notebook, kernel, language, request);
    this.deps.launcher.checkResources?.({ cpu: request.cpu, memory: request.memory });

    const { wait_seconds: waitSeconds, ...stored } = request;
    const requestHash = hashRequest({ ...stored, idempotency_key: undefined });
    const jobId = this.deps.ids.jobId();
    if (key) {
      const existing = await this.claimKey(tenant, key, jobId, requestHash);
      if (existing) return this.waitForEnd(tenant, existing, waitSeconds, arrived);
    }

    const now = this.now();
    const inputUri = await this.deps.artifacts.put(inputKey(tenant, jobId, name), JSON.stringify(notebook));
    const job: JobRecord = {
      job_id: jobId,
      tenant,
      status: 'queued',
      stage: null,
      notebook: { name, uri: inputUri },
      parameters: request.parameters,
      kernel,
      language,
      progress: emptyProgress(executableCodeCells(runnable).length),
      created_at: now,
      started_at: null,
      updated_at: now,
      ended_at: null,
      timeout_seconds: request.timeout_seconds,
      cell_timeout_seconds: request.cell_timeout_seconds,
      deadline_at: null,
      priority: request.priority,
      tags: request.tags,
      attempt: 0,
      cpu: request.cpu,
      memory: request.memory,
      output_uri: this.deps.artifacts.uriFor(outputKey(tenant, jobId, name)),
      output_saved: false,
      error: null,
      runner_ref: null,
      idempotency_key: key ?? null,
      request_hash: requestHash,
    };
    try {
      await this.deps.store.create(job);
    } catch (error) {
      // Nothing may point at a job that does not exist: drop the claim and the stored input.
      if (key) await this.deps.store.releaseIdempotencyKey(tenant, key, jobId).catch(() => undefined);
      await this.deps.artifacts.deleteJob(tenant, jobId).catch(() => undefined);
      throw error;
    }
    await this.publish(job, null);
    await this.dispatchWithin(this.config.dispatchWaitMs);
    return this.waitForEnd(tenant, jobId, waitSeconds, arrived);
  }

  /**
   * Dispatches, waiting for it at most `ms`: a slow launch (RunTask retries, a busy store) goes on
   * in the background instead of eating the request's time (API Gateway allows 29 s), and a
   * failure leaves the job queued for the next dispatch (the sweep runs one) instead of failing the
   * request that stored it.
   */
  private async dispatchWithin(ms: number): Promise<void> {
    const dispatched = this.dispatch().catch((error: unknown) => {
      this.log(`dispatch failed (queued jobs wait for the next one): ${errorMessage(error)}`);
    });
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((done) => (timer = setTimeout(done, ms)));
    await Promise.race([dispatched, bound]);
    clearTimeout(timer);
  }

  async get(tenant: string, jobId: string): Promise<JobView> {
    const job = await this.getOwned(tenant, jobId);
    return this.view(job, await this.queuePosition(job));
  }

  async list(tenant: string, query: ListJobsRequest): Promise<JobList> {
    const scope = `list:${tenant}:${query.status ?? ''}:${query.tag ?? ''}`;
    const cursor = query.cursor ? this.deps.cursors.decode(scope, query.cursor) : undefined;
    const tag = query.tag ? splitTag(query.tag) : undefined;
    const page = await this.deps.store.list({
      tenant,
      status: query.status,
      tag,
      limit: query.limit,
      cursor,
    });
    const jobs = await Promise.all(page.items.map((job) => this.view(job, null)));
    return { jobs, next_cursor: page.next_cursor ? this.deps.cursors.encode(scope, page.next_cursor) : null };
  }

  /** Cancels a queued or running job; a terminal job answers 409 with its state. */
  async cancel(tenant: string, jobId: string): Promise<JobView> {
    let job = await this.getOwned(tenant, jobId);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (job.status === 'cancelled') return this.view(job, null);
      if (isTerminal(job.status)) {
        throw new ConflictError(
          `job ${jobId} already ended as ${job.status}; only queued or running jobs can be cancelled`,
          {
            job_id: jobId,
            status: job.status,
          },
        );
      }
      try {
        const now = this.now();
        const cancelled = await this.deps.store.update(jobId, [job.status], {
          status: 'cancelled',
          stage: null,
          ended_at: now,
          updated_at: now,
          error: null,
        });
        await this.publish(cancelled, job.status);
        if (job.status === 'running') await this.deps.launcher.stop(cancelled);
        else await this.deps.store.releaseSlot(jobId);
        return this.view(cancelled, null);
      } catch (error) {
        if (!(error instanceof StateConflictError)) throw error;
        job = error.current; // it moved (e.g. queued -> running): decide again on what it is now
      }
    }
    throw new ConflictError(`job ${jobId} kept changing state; try again`, { job_id: jobId });
  }

  /** Deletes a terminal job: record, notebooks and logs. */
  async delete(tenant: string, jobId: string): Promise<DeleteResult> {
    const job = await this.getOwned(tenant, jobId);
    if (!isTerminal(job.status)) {
      throw new ConflictError(
        `job ${jobId} is ${job.status}; cancel it first, only ended jobs can be deleted`,
        {
          job_id: jobId,
          status: job.status,
        },
      );
    }
    await this.removeJob(job);
    return { job_id: jobId, deleted: true };
  }

  async logs(tenant: string, jobId: string, query: LogsRequest): Promise<LogPage> {
    const job = await this.getOwned(tenant, jobId);
    const scope = `logs:${jobId}`;
    const cursor = query.cursor ? this.deps.cursors.decode(scope, query.cursor) : undefined;
    const page = await this.deps.logs.read(job, { cursor, limit: query.limit, tail: query.tail });
    return { ...page, next_cursor: this.deps.cursors.encode(scope, page.next_cursor) };
  }

  async result(tenant: string, jobId: string): Promise<ResultView> {
    const job = await this.getOwned(tenant, jobId);
    const output = await this.readOutput(job);
    return {
      job_id: jobId,
      status: job.status,
      error: job.error,
      output_available: output !== null,
      summary: output ? summarizeNotebook(output) : null,
    };
  }

  /**
   * The executed notebook (partial for failed and cancelled jobs), as .ipynb or rendered HTML.
   * HTML is rendered once the job has ended and kept beside the notebook. An .ipynb comes as a
   * direct download URL when the artifact store offers one, unless `allowUrl` is false.
   */
  async output(
    tenant: string,
    jobId: string,
    format: 'ipynb' | 'html' = 'ipynb',
    { allowUrl = true }: { allowUrl?: boolean } = {},
  ): Promise<{ name: string; body: Buffer } | { name: string; url: string }> {
    const job = await this.getOwned(tenant, jobId);
    if (!(await this.deps.artifacts.exists(job.output_uri))) {
      throw new NotFoundError(
        job.status === 'queued' || job.status === 'running'
          ? `job ${jobId} is ${job.status}; its executed notebook is written when it ends`
          : `job ${jobId} has no executed notebook (it ${job.status} before one was written)`,
        { job_id: jobId, status: job.status },
      );
    }
    if (format === 'ipynb') {
      const url = allowUrl ? await this.downloadUrl(job.output_uri) : undefined;
      if (url) return { name: job.notebook.name, url };
      return { name: job.notebook.name, body: await this.deps.artifacts.read(job.output_uri) };
    }
    const name = htmlName(job.notebook.name);
    const htmlKey = htmlOutputKey(tenant, jobId, job.notebook.name);
    const htmlUri = this.deps.artifacts.uriFor(htmlKey);
    if (await this.deps.artifacts.exists(htmlUri)) {
      const url = allowUrl ? await this.downloadUrl(htmlUri) : undefined;
      return url ? { name, url } : { name, body: await this.deps.artifacts.read(htmlUri) };
    }
    // Rendered on demand (local mode); the AWS runner renders it before the job ends.
    const body = await this.deps.renderer.html(await this.deps.artifacts.read(job.output_uri));
    if (isTerminal(job.status)) await this.deps.artifacts.put(htmlKey, body);
    return { name, body };
  }

  /** Deletes this tenant's ended jobs that ended more than `olderThanHours` ago. */
  async cleanup(tenant: string, olderThanHours: number): Promise<CleanupResult> {
    const cutoff = new Date(this.deps.clock.now().getTime() - olderThanHours * 3600_000).toISOString();
    const deleted: string[] = [];
    for (const status of TERMINAL_STATUSES) {
      let cursor: string | undefined;
      do {
        const page = await this.deps.store.list({
          tenant,
          status,
          limit: 100,
          cursor,
          created_before: cutoff,
        });
        for (const job of page.items) {
          if (job.ended_at && job.ended_at <= cutoff) {
            await this.removeJob(job);
            deleted.push(job.job_id);
          }
        }
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
    }
    return { deleted, count: deleted.length };
  }

  async inspect(tenant: string, input: { notebook: NotebookSource }): Promise<InspectResult> {
    const { notebook, name } = await this.loadNotebook(tenant, input.notebook);
    const { kernel, language } = await this.resolveKernel(notebook, undefined);
    const count = (type: string) => notebook.cells.filter((cell) => cell.cell_type === type).length;
    const lang = languageForKernel(kernel, language);
    return {
      name,
      kernel,
      language,
      parameters: lang ? inspectParameters(notebook, lang) : [],
      cells: {
        total: notebook.cells.length,
        code: count('code'),
        markdown: count('markdown'),
        raw: count('raw'),
      },
    };
  }

  /** A short-lived URL to PUT a notebook to, and the URI to submit it by afterwards. */
  async createUpload(tenant: string, input: unknown): Promise<UploadSlot> {
    const { name } = parseRequest(UploadRequestSchema, input, 'upload request');
    const key = `${uploadsPrefix(tenant)}${randomBytes(16).toString('hex')}/${name}`;
    const expiresAt = new Date(this.deps.clock.now().getTime() + this.config.uploadTtlSeconds * 1000);
    return {
      upload_url: await this.deps.uploads.create(key, expiresAt),
      method: 'PUT',
      notebook_uri: this.deps.artifacts.uriFor(key),
      expires_at: expiresAt.toISOString(),
      max_bytes: this.config.maxNotebookBytes,
    };
  }

  /**
   * Starts queued jobs while slots are free: highest priority first, FIFO within a priority.
   * Concurrent calls in this process coalesce; across processes the conditional writes decide.
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

  private async dispatchOnce(): Promise<void> {
    for (;;) {
      const [next] = await this.deps.store.listQueued(1);
      if (!next) return;
      if (!(await this.deps.store.acquireSlot(next.job_id, this.config.maxConcurrentJobs))) return;
      const now = this.deps.clock.now();
      let job: JobRecord;
      try {
        job = await this.deps.store.update(next.job_id, ['queued'], {
          status: 'running',
          stage: 'provisioning',
          started_at: now.toISOString(),
          updated_at: now.toISOString(),
          deadline_at: new Date(now.getTime() + next.timeout_seconds * 1000).toISOString(),
          attempt: next.attempt + 1,
        });
      } catch (error) {
        if (!(error instanceof StateConflictError)) throw error;
        // Another dispatcher started it (the slot is then its, same holder id) or it was cancelled.
        if (error.current.status !== 'running') await this.deps.store.releaseSlot(next.job_id);
        continue;
      }
      await this.publish(job, 'queued');
      await this.launch(job);
    }
  }

  private async launch(job: JobRecord): Promise<void> {
    try {
      const { runner_ref } = await this.deps.launcher.launch(job);
      await this.deps.store.update(job.job_id, ['running'], { runner_ref }).catch((error: unknown) => {
        if (!(error instanceof StateConflictError)) throw error; // it already ended: fine
      });
    } catch (error) {
      await this.finish(job, 'failed', {
        type: 'infrastructure',
        message: `the job could not be started: ${errorMessage(error)}`,
      });
    }
  }

  /**
   * Called when a job's runner is known to be gone (local child exit, ECS task STOPPED). A job
   * still `running` then failed; the slot is released and the next job dispatched. With
   * `runnerRef`, a runner that is not the job's current one (an earlier attempt's task) changes
   * nothing: returns false.
   */
  async runnerExited(jobId: string, reason: string, runnerRef?: string): Promise<boolean> {
    const job = await this.deps.store.get(jobId);
    // runner_ref is null only between launch and recording it; then this runner is the job's.
    if (runnerRef && job?.runner_ref && job.runner_ref !== runnerRef) return false;
    if (job?.status === 'running') {
      await this.finish(job, 'failed', {
        type: 'infrastructure',
        message: `the job's runner stopped before reporting a result: ${reason}`,
      });
    }
    await this.deps.store.releaseSlot(jobId);
    await this.dispatch();
    return true;
  }

  /**
   * Ends every running job as failed with `message` after stopping whatever is left of its runner
   * (local mode at start-up: a previous server's runners can no longer report to this store).
   */
  async abandonRunning(message: string): Promise<string[]> {
    const ended: string[] = [];
    for (const job of await this.deps.store.listRunning()) {
      if (job.runner_ref && (await this.deps.launcher.isAlive(job.runner_ref)))
        await this.deps.launcher.stop(job);
      if (await this.finish(job, 'failed', { type: 'infrastructure', message })) ended.push(job.job_id);
      await this.deps.store.releaseSlot(job.job_id);
    }
    return ended;
  }

  /**
   * Periodic repair: stops jobs past their deadline, fails jobs whose runner is gone, frees leaked
   * slots, and dispatches. Safe to run from several places at once.
   */
  async sweep(): Promise<{ timed_out: string[]; lost: string[]; released: string[] }> {
    const now = this.deps.clock.now().getTime();
    const timedOut: string[] = [];
    const lost: string[] = [];
    for (const job of await this.deps.store.listRunning()) {
      const deadline = job.deadline_at ? Date.parse(job.deadline_at) : Infinity;
      if (now > deadline + this.config.deadlineGraceSeconds * 1000) {
        const ended = await this.finish(job, 'failed', {
          type: 'timeout',
          message: `the job ran past its timeout of ${job.timeout_seconds} s and was stopped`,
        });
        if (ended) await this.deps.launcher.stop(job);
        timedOut.push(job.job_id);
        continue;
      }
      const alive = job.runner_ref ? await this.deps.launcher.isAlive(job.runner_ref) : null;
      const launchOverdue =
        !job.runner_ref &&
        job.started_at &&
        now - Date.parse(job.started_at) > this.config.launchGraceSeconds * 1000;
      if (alive === false || launchOverdue) {
        await this.finish(job, 'failed', {
          type: 'infrastructure',
          message: launchOverdue
            ? 'the job was never picked up by a runner'
            : "the job's runner is gone (the process or task ended without reporting a result)",
        });
        lost.push(job.job_id);
      }
    }
    const released: string[] = [];
    for (const holder of await this.deps.store.slotHolders()) {
      const job = await this.deps.store.get(holder);
      if (job && !isTerminal(job.status)) continue;
      const alive = job?.runner_ref ? await this.deps.launcher.isAlive(job.runner_ref) : false;
      if (alive) continue; // a cancelled runner still saving its notebook keeps its slot
      await this.deps.store.releaseSlot(holder);
      released.push(holder);
    }
    await this.dispatch();
    return { timed_out: timedOut, lost, released };
  }

  /**
   * Waits for a job to end, up to `seconds` from `since` (the request's arrival, by the monotonic
   * `performance.now()`: a time budget, not an age, so it is not the Clock's); returns the job as
   * it then stands.
   */
  async waitForEnd(
    tenant: string,
    jobId: string,
    seconds: number,
    since = performance.now(),
  ): Promise<JobView> {
    const until = since + seconds * 1000;
    let job = await this.getOwned(tenant, jobId);
    while (!isTerminal(job.status) && performance.now() < until) {
      await sleep(Math.min(this.config.waitPollMs, Math.max(0, until - performance.now())));
      job = await this.getOwned(tenant, jobId);
    }
    return this.view(job, await this.queuePosition(job));
  }

  // ---- internals ----

  private log(message: string): void {
    (this.deps.log ?? console.error)(message);
  }

  /** Returns the existing job id for a replayed key, or null when this call owns the key. */
  private async claimKey(
    tenant: string,
    key: string,
    jobId: string,
    requestHash: string,
  ): Promise<string | null> {
    const store = this.deps.store;
    const claim = await store.claimIdempotencyKey(tenant, key, jobId, requestHash, this.deps.clock.now());
    if (claim.created) return null;
    if (await store.get(claim.job_id)) {
      if (claim.request_hash !== requestHash) {
        throw new ConflictError(
          `idempotency key "${key}" was already used with a different request; use a new key for a new job`,
          { idempotency_key: key, job_id: claim.job_id },
        );
      }
      return claim.job_id;
    }
    const age = this.deps.clock.now().getTime() - Date.parse(claim.created_at);
    if (!(age > this.config.idempotencyClaimGraceSeconds * 1000)) {
      throw new ConflictError(
        `a request with idempotency key "${key}" is still being processed; retry in a few seconds`,
        {
          idempotency_key: key,
        },
      );
    }
    // The earlier create died between claiming the key and writing the job: take the key over.
    if (
      await store.replaceIdempotencyKey(tenant, key, claim.job_id, jobId, requestHash, this.deps.clock.now())
    )
      return null;
    return this.claimKey(tenant, key, jobId, requestHash);
  }

  private async loadNotebook(
    tenant: string,
    source: NotebookSource,
  ): Promise<{ notebook: Notebook; name: string }> {
    let text: string;
    let name: string;
    let limit: number;
    if ('content' in source) {
      text = JSON.stringify(source.content);
      name = source.name ?? 'notebook.ipynb';
      limit = this.config.maxInlineNotebookBytes;
    } else {
      // A name taken from the URI passes the same check as a given one; else the default name.
      name = source.name ?? nameFromUri(source.uri) ?? 'notebook.ipynb';
      limit = this.config.maxNotebookBytes;
      text = (await this.deps.artifacts.readSubmitted(tenant, source.uri, limit)).toString('utf8');
    }
    const size = Buffer.byteLength(text);
    if (size > limit) {
      const hint =
        'content' in source
          ? ' (send larger notebooks with POST /v1/uploads and submit the notebook_uri)'
          : '';
      throw new PayloadTooLargeError(`notebook is ${size} bytes; the limit is ${limit} bytes${hint}`, {
        size,
        limit,
      });
    }
    return { notebook: parseNotebookText(text), name };
  }

  private async resolveKernel(notebook: Notebook, requested: string | undefined) {
    const kernels = await this.deps.kernels.list();
    const kernel = requested ?? notebookKernelName(notebook) ?? 'python3';
    const spec = kernels.find((k) => k.name === kernel);
    if (!spec) {
      throw new InvalidRequestError(
        `unknown kernel "${kernel}"; this deployment has: ${kernels.map((k) => k.name).join(', ') || 'none'}`,
        { kernel, known: kernels.map((k) => k.name) },
      );
    }
    return { kernel, language: spec.language || notebookLanguage(notebook) || 'python' };
  }

  /** Checks the parameters against the notebook and returns the notebook as it will run. */
  private parameterize(
    notebook: Notebook,
    kernel: string,
    language: string,
    request: CreateJobRequest,
  ): Notebook {
    const names = Object.keys(request.parameters);
    if (names.length === 0) return notebook;
    const lang = languageForKernel(kernel, language);
    if (!lang) {
      throw new InvalidRequestError(`parameters cannot be rendered for kernel language "${language}"`, {
        language,
      });
    }
    if (!request.allow_unknown_parameters) {
      const known = inspectParameters(notebook, lang);
      const unknown = unknownParameters(known, request.parameters);
      if (unknown.length > 0) {
        const knownNames = known.map((p) => p.name);
        throw new InvalidRequestError(
          `unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; the notebook's parameters cell declares: ${
            knownNames.join(', ') || 'nothing (no cell tagged "parameters")'
          } (set allow_unknown_parameters to pass them anyway)`,
          { unknown, known: knownNames },
        );
      }
    }
    // Rendering here also rejects values that cannot be rendered, before anything is stored.
    return injectParameters(notebook, request.parameters, lang, kernel);
  }

  private async getOwned(tenant: string, jobId: string): Promise<JobRecord> {
    parseRequest(JobIdSchema, jobId, 'job_id');
    const job = await this.deps.store.get(jobId);
    // Another tenant's job is indistinguishable from a missing one.
    if (!job || job.tenant !== tenant) throw new NotFoundError(`job ${jobId} not found`, { job_id: jobId });
    return job;
  }

  private async readOutput(job: JobRecord): Promise<Notebook | null> {
    if (!(await this.deps.artifacts.exists(job.output_uri))) return null;
    const limit = this.config.maxResultNotebookBytes;
    try {
      return parseNotebookText(await this.deps.artifacts.read(job.output_uri, limit));
    } catch (error) {
      if (!(error instanceof PayloadTooLargeError)) throw error;
      const size = error.details?.size;
      throw new PayloadTooLargeError(
        `the executed notebook of job ${job.job_id} is ${size} bytes, more than the ${limit} bytes a result summary reads; download it with GET /v1/jobs/${job.job_id}/output`,
        { job_id: job.job_id, size, limit },
      );
    }
  }

  private async removeJob(job: JobRecord): Promise<void> {
    await this.deps.artifacts.deleteJob(job.tenant, job.job_id);
    await this.deps.logs.delete(job);
    if (job.idempotency_key)
      await this.deps.store.releaseIdempotencyKey(job.tenant, job.idempotency_key, job.job_id);
    await this.deps.store.delete(job.job_id);
  }

  /** Moves a job to a terminal state if it has not ended yet; returns whether this call ended it. */
  private async finish(job: JobRecord, status: JobStatus, error: JobError | null): Promise<boolean> {
    const now = this.now();
    try {
      const ended = await this.deps.store.update(job.job_id, sourcesOf(status), {
        status,
        stage: null,
        ended_at: now,
        updated_at: now,
        error,
      });
      await this.publish(ended, job.status);
      return true;
    } catch (err) {
      if (err instanceof StateConflictError) return false;
      throw err;
    }
  }

  private async queuePosition(job: JobRecord): Promise<number | null> {
    return job.status === 'queued' ? (await this.deps.store.countQueuedAhead(job)) + 1 : null;
  }

  private async view(job: JobRecord, queuePosition: number | null): Promise<JobView> {
    const self = `/v1/jobs/${job.job_id}`;
    const available =
      isTerminal(job.status) && (job.output_saved ?? (await this.deps.artifacts.exists(job.output_uri)));
    const downloadUrl = available ? ((await this.downloadUrl(job.output_uri)) ?? `${self}/output`) : null;
    return {
      job_id: job.job_id,
      status: job.status,
      stage: job.status === 'running' ? job.stage : null,
      notebook: job.notebook,
      parameters: job.parameters,
      kernel: job.kernel,
      progress: job.progress,
      created_at: job.created_at,
      started_at: job.started_at,
      updated_at: job.updated_at,
      ended_at: job.ended_at,
      duration_seconds: durationSeconds(job, this.deps.clock.now()),
      timeout_seconds: job.timeout_seconds,
      cell_timeout_seconds: job.cell_timeout_seconds,
      deadline_at: job.deadline_at,
      queue_position: queuePosition,
      priority: job.priority,
      tags: job.tags,
      attempt: job.attempt,
      output: { uri: job.output_uri, download_url: downloadUrl, available },
      error: job.error,
      links: {
        self,
        logs: `${self}/logs`,
        result: `${self}/result`,
        output: `${self}/output`,
        cancel: `${self}/cancel`,
      },
    };
  }

  private now(): string {
    return this.deps.clock.now().toISOString();
  }

  /** A direct, short-lived download URL when the artifact store offers one. */
  private async downloadUrl(uri: string): Promise<string | undefined> {
    return this.deps.artifacts.downloadUrl?.(uri, this.config.downloadUrlTtlSeconds);
  }

  private async publish(job: JobRecord, previous: JobStatus | null): Promise<void> {
    await this.deps.events?.publish(stateChange(job, previous));
  }
}

function splitTag(tag: string): { key: string; value: string } {
  const at = tag.indexOf('=');
  return { key: tag.slice(0, at), value: tag.slice(at + 1) };
}

/** A stable hash of a request: keys sorted, so field order does not matter. */
function hashRequest(value: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([, x]) => x !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([k, x]) => [k, canonical(x)]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canonical(value)))
    .digest('hex');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
