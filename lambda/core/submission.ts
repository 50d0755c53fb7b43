/**
 * Submission: validates a create request (notebook, kernel, parameters, resources, idempotency
 * key) before anything is written, stores the notebook exactly as it will run (parameters
 * injected), records the queued job and starts a dispatch. Also inspection and upload slots, which
 * read notebooks the same way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ConflictError, InvalidRequestError, PayloadTooLargeError } from './errors.ts';
import { inputKey, outputKey, uploadsPrefix } from './job.ts';
import {
  checkRedactParameters,
  checkSecrets,
  REDACTED_PARAMETERS_FILE,
  redactedParameters,
} from './secrets.ts';
import { transitions } from './lifecycle.ts';
import { jobFields } from './logging.ts';
import { nameFromUri } from './names.ts';
import { inspectInputFiles, readInputFiles, storeInputFiles } from './input-files.ts';
import {
  CreateJobRequestSchema,
  parseRequest,
  type CreateJobRequest,
  type InspectRequest,
  UploadRequestSchema,
} from './schemas.ts';
import type { InspectResult, JobView, UploadSlot } from './contract.ts';
import type { Scheduler } from './scheduling.ts';
import type { ServiceContext } from './service-context.ts';
import type { JobViews } from './job-views.ts';
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

export type NotebookSource = CreateJobRequest['notebook'];

export class Submission {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly views: JobViews,
    private readonly scheduler: Scheduler,
  ) {}

  /**
   * Validates, stores the runnable notebook, records a queued job, and dispatches. The stored input
   * is the parameterized notebook validated here: the runner executes exactly that.
   */
  async create(tenant: string, input: unknown, idempotencyKey?: string): Promise<JobView> {
    const arrived = performance.now();
    const { deps, config, lifecycle } = this.ctx;
    const request = parseRequest(CreateJobRequestSchema, input, 'job request');
    const key = idempotencyKey ?? request.idempotency_key;
    const { notebook, name } = await this.loadNotebook(tenant, request.notebook);
    const { kernel, language } = await this.resolveKernel(notebook, request.kernel);
    checkSecrets(tenant, request.secrets, config.secrets);
    checkRedactParameters(request.redact_parameters, request.parameters);
    const redact = request.redact_parameters;
    // Rendered with the real values (so they are checked), stored with redacted ones: the runner
    // puts the real values back into the injected cell just before the kernel starts.
    parameterize(notebook, kernel, language, request);
    const parameters = redact.length ? redactedParameters(request.parameters, redact) : request.parameters;
    const runnable = parameterize(notebook, kernel, language, { ...request, parameters });
    deps.launcher.checkResources?.({ cpu: request.cpu, memory: request.memory });
    // Read and checked before anything is written: a refused archive leaves nothing behind.
    const inputFiles = request.files
      ? await readInputFiles(deps.artifacts, tenant, request.files, request.notebook, this.fileCaps())
      : null;

    const { wait_seconds: waitSeconds, ...stored } = request;
    const requestHash = hashRequest({ ...stored, idempotency_key: undefined });
    const jobId = deps.ids.jobId();
    if (key) {
      const existing = await this.claimKey(tenant, key, jobId, requestHash);
      if (existing) return this.views.waitForEnd(tenant, existing, waitSeconds, arrived);
    }

    const inputUri = await deps.artifacts.put(inputKey(tenant, jobId, name), JSON.stringify(runnable));
    const inputFilesStored = inputFiles
      ? await storeInputFiles(deps.artifacts, tenant, jobId, inputFiles).catch(async (error: unknown) => {
          if (key) await deps.store.releaseIdempotencyKey(tenant, key, jobId).catch(() => undefined);
          await deps.artifacts.deleteJob(tenant, jobId).catch(() => undefined);
          throw error;
        })
      : undefined;
    if (redact.length) {
      const values = Object.fromEntries(redact.map((p) => [p, request.parameters[p]]));
      await deps.artifacts.put(inputKey(tenant, jobId, REDACTED_PARAMETERS_FILE), JSON.stringify(values));
    }
    const job = transitions.submitted(
      {
        job_id: jobId,
        tenant,
        notebook: { name, uri: inputUri },
        parameters,
        ...(Object.keys(request.secrets).length ? { secrets: request.secrets } : {}),
        ...(redact.length ? { redact_parameters: [...new Set(redact)] } : {}),
        kernel,
        language,
        timeout_seconds: request.timeout_seconds,
        cell_timeout_seconds: request.cell_timeout_seconds,
        priority: request.priority,
        tags: request.tags,
        cpu: request.cpu,
        memory: request.memory,
        output_uri: deps.artifacts.uriFor(outputKey(tenant, jobId, name)),
        idempotency_key: key ?? null,
        request_hash: requestHash,
        ...(inputFilesStored ? { input_files: inputFilesStored } : {}),
      },
      executableCodeCells(runnable).length,
      deps.clock.now(),
    );
    try {
      await lifecycle.create(job);
    } catch (error) {
      // Nothing may point at a job that does not exist: drop the claim and the stored input.
      const cleanup = (what: string) => (cause: unknown) =>
        this.ctx.log(`after a failed create, ${what} failed`, { ...jobFields(job), error: cause });
      if (key) await deps.store.releaseIdempotencyKey(tenant, key, jobId).catch(cleanup('releasing the key'));
      await deps.artifacts.deleteJob(tenant, jobId).catch(cleanup('deleting the input'));
      throw error;
    }
    await this.scheduler.dispatchWithin(config.dispatchWaitMs);
    return this.views.waitForEnd(tenant, jobId, waitSeconds, arrived);
  }

  async inspect(tenant: string, input: InspectRequest): Promise<InspectResult> {
    const { notebook, name } = await this.loadNotebook(tenant, input.notebook);
    const { kernel, language } = await this.resolveKernel(notebook, undefined);
    const count = (type: string) => notebook.cells.filter((cell) => cell.cell_type === type).length;
    const lang = languageForKernel(kernel, language);
    const files = input.files
      ? await inspectInputFiles(this.ctx.deps.artifacts, tenant, input.files, input.notebook, this.fileCaps())
      : undefined;
    return {
      ...(files ? { files } : {}),
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

  /** The caps on a job's input files (an archive of them is capped like a notebook). */
  private fileCaps() {
    const { config } = this.ctx;
    return {
      maxFiles: config.maxInputFiles,
      maxBytes: config.maxInputFilesBytes,
      maxArchiveBytes: config.maxNotebookBytes,
    };
  }

  /** A short-lived URL to PUT a notebook to, and the URI to submit it by afterwards. */
  async createUpload(tenant: string, input: unknown): Promise<UploadSlot> {
    const { name } = parseRequest(UploadRequestSchema, input, 'upload request');
    const key = `${uploadsPrefix(tenant)}${randomBytes(16).toString('hex')}/${name}`;
    const expiresAt = new Date(this.ctx.deps.clock.now().getTime() + this.ctx.config.uploadTtlSeconds * 1000);
    return {
      upload_url: await this.ctx.deps.uploads.create(key, expiresAt),
      method: 'PUT',
      notebook_uri: this.ctx.deps.artifacts.uriFor(key),
      expires_at: expiresAt.toISOString(),
      max_bytes: this.ctx.config.maxNotebookBytes,
    };
  }

  /** Returns the existing job id for a replayed key, or null when this call owns the key. */
  private async claimKey(
    tenant: string,
    key: string,
    jobId: string,
    requestHash: string,
  ): Promise<string | null> {
    const store = this.ctx.deps.store;
    const claim = await store.claimIdempotencyKey(tenant, key, jobId, requestHash, this.ctx.deps.clock.now());
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
    const age = this.ctx.deps.clock.now().getTime() - Date.parse(claim.created_at);
    if (!(age > this.ctx.config.idempotencyClaimGraceSeconds * 1000)) {
      throw new ConflictError(
        `a request with idempotency key "${key}" is still being processed; retry in a few seconds`,
        {
          idempotency_key: key,
        },
      );
    }
    // The earlier create died between claiming the key and writing the job: take the key over.
    if (
      await store.replaceIdempotencyKey(
        tenant,
        key,
        claim.job_id,
        jobId,
        requestHash,
        this.ctx.deps.clock.now(),
      )
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
      limit = this.ctx.config.maxInlineNotebookBytes;
    } else {
      // A name taken from the URI passes the same check as a given one; else the default name.
      name = source.name ?? nameFromUri(source.uri) ?? 'notebook.ipynb';
      limit = this.ctx.config.maxNotebookBytes;
      text = (await this.ctx.deps.artifacts.readSubmitted(tenant, source.uri, limit)).toString('utf8');
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
    const kernels = await this.ctx.deps.kernels.list();
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
}

/** Checks the parameters against the notebook and returns the notebook as it will run. */
function parameterize(
  notebook: Notebook,
  kernel: string,
  language: string,
  request: Pick<CreateJobRequest, 'parameters' | 'allow_unknown_parameters'>,
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
