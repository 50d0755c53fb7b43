/**
 * Queries: a job, a list, logs, the result summary, the executed notebook, and waiting for a job
 * to end; and the job view every answer is made of.
 */
import { InvalidRequestError, NotFoundError, PayloadTooLargeError } from './errors.ts';
import { durationSeconds, htmlName, htmlOutputKey, isTerminal, type JobRecord } from './job.ts';
import type { JobFiles, JobList, JobView, LogPage, OutputFile, ResultView } from './contract.ts';
import {
  checkFilePath,
  fileDownloadPath,
  parseFilesManifest,
  outputFileKey,
  outputFilesManifestKey,
} from './job-files.ts';
import { parseJsonText } from './json.ts';
import type { ListJobsRequest, LogsRequest } from './schemas.ts';
import { getOwned, sleep, type ServiceContext } from './service-context.ts';
import { parseNotebookText, type Notebook } from '../notebook/notebook.ts';
import { summarizeNotebook } from '../notebook/result-summary.ts';

/**
 * How an output file is read: as a short-lived URL where the storage has one (`allowUrl`), and at
 * most `maxBytes(file)` bytes inline (a larger file is refused before it is read).
 */
export interface FileReadOptions {
  allowUrl?: boolean;
  maxBytes?: (file: OutputFile) => number;
}

export class JobViews {
  constructor(private readonly ctx: ServiceContext) {}

  async get(tenant: string, jobId: string): Promise<JobView> {
    const job = await getOwned(this.ctx, tenant, jobId);
    return this.view(job, await this.queuePosition(job));
  }

  async list(tenant: string, query: ListJobsRequest): Promise<JobList> {
    const scope = `list:${tenant}:${query.status ?? ''}:${query.tag ?? ''}`;
    const cursor = query.cursor ? this.ctx.deps.cursors.decode(scope, query.cursor) : undefined;
    const tag = query.tag ? splitTag(query.tag) : undefined;
    const page = await this.ctx.deps.store.list({
      tenant,
      status: query.status,
      tag,
      limit: query.limit,
      cursor,
    });
    const jobs = await Promise.all(page.items.map((job) => this.view(job, null)));
    return {
      jobs,
      next_cursor: page.next_cursor ? this.ctx.deps.cursors.encode(scope, page.next_cursor) : null,
    };
  }

  async logs(tenant: string, jobId: string, query: LogsRequest): Promise<LogPage> {
    const job = await getOwned(this.ctx, tenant, jobId);
    const scope = `logs:${jobId}`;
    const cursor = query.cursor ? this.ctx.deps.cursors.decode(scope, query.cursor) : undefined;
    const page = await this.ctx.deps.logs.read(job, { cursor, limit: query.limit, tail: query.tail });
    return { ...page, next_cursor: this.ctx.deps.cursors.encode(scope, page.next_cursor) };
  }

  async result(tenant: string, jobId: string): Promise<ResultView> {
    const job = await getOwned(this.ctx, tenant, jobId);
    const output = await this.readOutput(job);
    const files = await this.outputFiles(job);
    return {
      job_id: jobId,
      status: job.status,
      error: job.error,
      output_available: output !== null,
      summary: output ? summarizeNotebook(output) : null,
      files: files.files,
      files_note: files.note,
    };
  }

  /** The files the job's notebook created or changed, saved when it ended (none before). */
  async files(tenant: string, jobId: string): Promise<JobFiles> {
    const job = await getOwned(this.ctx, tenant, jobId);
    return { job_id: jobId, status: job.status, ...(await this.outputFiles(job)) };
  }

  /**
   * One output file: only a path the job's manifest lists is served (a path is looked up, never
   * joined onto a folder), as a direct download URL when the store offers one, else its bytes.
   */
  async file(
    tenant: string,
    jobId: string,
    path: string,
    { allowUrl = true, maxBytes }: FileReadOptions = {},
  ): Promise<{ file: OutputFile; body: Buffer } | { file: OutputFile; url: string }> {
    checkFilePath(path);
    const job = await getOwned(this.ctx, tenant, jobId);
    const file = (await this.outputFiles(job)).files.find((f) => f.path === path);
    if (!file) {
      throw new NotFoundError(
        isTerminal(job.status)
          ? `job ${jobId} has no output file "${path}"; GET /v1/jobs/${jobId}/files lists them`
          : `job ${jobId} is ${job.status}; its output files are saved when it ends`,
        { job_id: jobId, path },
      );
    }
    const uri = this.ctx.deps.artifacts.uriFor(outputFileKey(tenant, jobId, path));
    const url = allowUrl ? await this.downloadUrl(uri) : undefined;
    if (url) return { file, url };
    const limit = maxBytes?.(file);
    if (limit !== undefined && file.size > limit) {
      throw new InvalidRequestError(
        `output file ${path} is ${file.size} bytes, more than the ${limit} served here; download it from ${file.download}`,
      );
    }
    return { file, body: await this.ctx.deps.artifacts.read(uri) };
  }

  private async outputFiles(job: JobRecord): Promise<Pick<JobFiles, 'files' | 'note'>> {
    const none = { files: [], note: null };
    if (!isTerminal(job.status)) return none;
    const uri = this.ctx.deps.artifacts.uriFor(outputFilesManifestKey(job.tenant, job.job_id));
    if (!(await this.ctx.deps.artifacts.exists(uri))) return none;
    const manifest = parseFilesManifest(
      parseJsonText((await this.ctx.deps.artifacts.read(uri)).toString('utf8'), 'files manifest'),
    );
    return {
      files: manifest.files.map((f) => ({ ...f, download: fileDownloadPath(job.job_id, f.path) })),
      note: manifest.note,
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
    const job = await getOwned(this.ctx, tenant, jobId);
    if (!(await this.ctx.deps.artifacts.exists(job.output_uri))) {
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
      return { name: job.notebook.name, body: await this.ctx.deps.artifacts.read(job.output_uri) };
    }
    const name = htmlName(job.notebook.name);
    const htmlKey = htmlOutputKey(tenant, jobId, job.notebook.name);
    const htmlUri = this.ctx.deps.artifacts.uriFor(htmlKey);
    if (await this.ctx.deps.artifacts.exists(htmlUri)) {
      const url = allowUrl ? await this.downloadUrl(htmlUri) : undefined;
      return url ? { name, url } : { name, body: await this.ctx.deps.artifacts.read(htmlUri) };
    }
    // Rendered on demand (local mode); the AWS runner renders it before the job ends.
    const body = await this.ctx.deps.renderer.html(await this.ctx.deps.artifacts.read(job.output_uri));
    if (isTerminal(job.status)) await this.ctx.deps.artifacts.put(htmlKey, body);
    return { name, body };
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
    let job = await getOwned(this.ctx, tenant, jobId);
    while (!isTerminal(job.status) && performance.now() < until) {
      await sleep(Math.min(this.ctx.config.waitPollMs, Math.max(0, until - performance.now())));
      job = await getOwned(this.ctx, tenant, jobId);
    }
    return this.view(job, await this.queuePosition(job));
  }

  private async readOutput(job: JobRecord): Promise<Notebook | null> {
    if (!(await this.ctx.deps.artifacts.exists(job.output_uri))) return null;
    const limit = this.ctx.config.maxResultNotebookBytes;
    try {
      return parseNotebookText(await this.ctx.deps.artifacts.read(job.output_uri, limit));
    } catch (error) {
      if (!(error instanceof PayloadTooLargeError)) throw error;
      const size = error.details?.size;
      throw new PayloadTooLargeError(
        `the executed notebook of job ${job.job_id} is ${size} bytes, more than the ${limit} bytes a result summary reads; download it with GET /v1/jobs/${job.job_id}/output`,
        { job_id: job.job_id, size, limit },
      );
    }
  }

  async queuePosition(job: JobRecord): Promise<number | null> {
    return job.status === 'queued' ? (await this.ctx.deps.store.countQueuedAhead(job)) + 1 : null;
  }

  async view(job: JobRecord, queuePosition: number | null): Promise<JobView> {
    const self = `/v1/jobs/${job.job_id}`;
    const available =
      isTerminal(job.status) && (job.output_saved ?? (await this.ctx.deps.artifacts.exists(job.output_uri)));
    const downloadUrl = available ? ((await this.downloadUrl(job.output_uri)) ?? `${self}/output`) : null;
    return {
      job_id: job.job_id,
      status: job.status,
      stage: job.status === 'running' ? job.stage : null,
      notebook: job.notebook,
      parameters: job.parameters,
      ...(job.secrets ? { secrets: job.secrets } : {}),
      ...(job.redact_parameters ? { redact_parameters: job.redact_parameters } : {}),
      kernel: job.kernel,
      progress: job.progress,
      created_at: job.created_at,
      started_at: job.started_at,
      updated_at: job.updated_at,
      ended_at: job.ended_at,
      duration_seconds: durationSeconds(job, this.ctx.deps.clock.now()),
      timeout_seconds: job.timeout_seconds,
      cell_timeout_seconds: job.cell_timeout_seconds,
      deadline_at: job.deadline_at,
      queue_position: queuePosition,
      priority: job.priority,
      tags: job.tags,
      attempt: job.attempt,
      attempts: job.attempts ?? [],
      launch: launchView(job),
      output: { uri: job.output_uri, download_url: downloadUrl, available },
      error: job.error,
      links: {
        self,
        logs: `${self}/logs`,
        result: `${self}/result`,
        output: `${self}/output`,
        files: `${self}/files`,
        cancel: `${self}/cancel`,
      },
    };
  }

  /** A direct, short-lived download URL when the artifact store offers one. */
  private async downloadUrl(uri: string): Promise<string | undefined> {
    return this.ctx.deps.artifacts.downloadUrl?.(uri, this.ctx.config.downloadUrlTtlSeconds);
  }
}

function launchView(job: JobRecord): JobView['launch'] {
  if (!job.launch_attempts) return null;
  const waiting = job.status === 'queued';
  return {
    attempts: job.launch_attempts,
    last_error: job.last_launch_error ?? null,
    retry_at: waiting ? (job.launch_retry_at ?? null) : null,
    deadline_at: waiting ? (job.launch_deadline_at ?? null) : null,
  };
}

function splitTag(tag: string): { key: string; value: string } {
  const at = tag.indexOf('=');
  return { key: tag.slice(0, at), value: tag.slice(at + 1) };
}
