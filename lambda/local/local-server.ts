/**
 * Local mode wiring: one process serving REST v1 on 127.0.0.1, jobs in an embedded dynalite
 * persisted under the data folder, notebooks and logs in files, each job a child process running
 * the same runner as the container. No AWS account, no Docker.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { DEFAULT_SERVICE_CONFIG, JobService, type JobServiceConfig } from '../core/job-service.ts';
import { CursorCodec } from '../core/cursor.ts';
import { MonotonicJobIds } from '../core/ids.ts';
import { AppError } from '../core/errors.ts';
import { ConfigError } from '../core/config.ts';
import { createDocumentClient, UNIX_ENDPOINT_PREFIX } from '../adapters/dynamodb/client.ts';
import { createJobTable } from '../adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../adapters/file-artifacts.ts';
import { FileLogReader } from '../adapters/file-logs.ts';
import { LocalProcessLauncher } from '../adapters/local-process-launcher.ts';
import { NbconvertRenderer } from '../adapters/nbconvert-renderer.ts';
import { handleApiRequest, requestLogFields, type ApiContext } from '../http/routes.ts';
import { json } from '../http/errors.ts';
import { textLog, withFields, type LogFn } from '../core/logging.ts';
import type { ApiResponse } from '../http/types.ts';
import { findPython, staticKernelCatalog, type EngineName } from '../kernels/python.ts';
import { ENGINES_DIR } from '../kernels/engines.ts';
import { bundleRunner } from './runner-bundle.ts';
import { RUNNER_NODE_FLAGS } from '../bundle/esbuild-config.ts';
import {
  MAX_REQUEST_BODY_BYTES,
  readIntSetting,
  SECRET_ENV_PREFIX,
  SECRETS_DIR,
  SETTINGS,
} from '../core/settings.ts';
import { secretEnvPrefixProblem } from '../core/secrets.ts';
import { handleMcpRequest, type McpEndpoint } from '../mcp/http.ts';
import { LocalUploads } from './local-uploads.ts';
import { prepareKernelArea } from './kernel-area.ts';
import { closeLevelIteratorsWithTheirStreams } from './level-iterator-close.ts';
import { protectedResourceMetadata, type OAuthConfig } from '../auth/protected-resource.ts';
import { type CallerPolicy, callerPolicyFor, routeKind, checkCaller, hostForUrl } from './caller-policy.ts';
import {
  requestUrl,
  sendStream,
  restFailure,
  mcpFailure,
  fromWebResponse,
  internalError,
  send,
  answerClientError,
  readBody,
  closeServer,
} from './http-io.ts';

export { LOCAL_TENANT } from './caller-policy.ts';
const TABLE = 'notebook-jobs';

export interface LocalServerOptions {
  host?: string;
  port?: number;
  dataDir: string;
  workspace?: string;
  python?: string;
  engine?: EngineName | 'auto';
  maxConcurrentJobs?: number;
  /**
   * Kernels kept started ahead of demand for the default kernel (python3), each used by one job
   * (default 1; 0: none). The nbclient engine only: papermill starts its own kernels.
   */
  warmKernels?: number;
  sweepIntervalMs?: number;
  progressIntervalMs?: number;
  stopGraceMs?: number;
  service?: Partial<JobServiceConfig>;
  /**
   * When set, every route (REST and /mcp) requires `Authorization: Bearer <token>`, except
   * GET /v1/health and the upload PUT (whose signed URL is itself the permission).
   */
  token?: string;
  /**
   * An OAuth 2.1 authorization server whose JWT access tokens are accepted beside `token`
   * (lambda/auth): the tenant is the token's `tenantClaim`. `audience` defaults to this server's
   * own /mcp URL.
   */
  oauth?: Omit<OAuthConfig, 'audience'> & { audience?: string };
  /**
   * Host header values accepted besides this server's own loopback names (127.0.0.1, localhost,
   * [::1] and the address it listens on), each `name` (at the server's port) or `name:port`.
   */
  allowedHosts?: string[];
  /** Browser origins (e.g. "http://localhost:6274") allowed besides this server's own. */
  allowedOrigins?: string[];
  /**
   * Run engines and kernels as this user (the server must run as root): they then cannot read the
   * server's environment, memory or data folder. Unset: they run as the server's own user.
   */
  kernelUser?: string;
  /**
   * Jobs' `env:` secrets may name only this server's variables starting with this prefix (default
   * NOTEBOOK_SECRET_); `file:` secrets are files under `secretsDir` (unset: none). See
   * lambda/core/secrets.ts.
   */
  secretEnvPrefix?: string;
  secretsDir?: string;
  log?: (message: string) => void;
}

export interface LocalServer {
  url: string;
  port: number;
  service: JobService;
  store: DynamoDbJobStore;
  dataDir: string;
  /** Warm runners waiting for a job (`warmKernels`), and how many have their kernel ready. */
  warmKernels(): { idle: number; ready: number };
  /**
   * Stops serving and ends the warm runners. `killRunners` also kills running jobs' runners (tests).
   */
  close(options?: { killRunners?: boolean }): Promise<void>;
}

/** The kernel a warm pool keeps ready: the default one (container/engines: no kernelspec). */
const WARM_KERNEL = 'python3';

export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const log = options.log ?? ((message: string) => console.error(message));
  // The service's lines carry job_id, tenant and the error with its causes, appended as text.
  const serviceLog = textLog(log);
  const policyFor = callerPolicyFor(options);
  const dataDir = resolve(options.dataDir);
  const workspace = resolve(options.workspace ?? process.cwd());
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Jobs, notebooks, logs and the cursor secret are this user's alone (and never a kernel user's).
  chmodSync(dataDir, 0o700);

  const secretEnvPrefix = options.secretEnvPrefix ?? SECRET_ENV_PREFIX.default;
  const prefixProblem = secretEnvPrefixProblem(secretEnvPrefix);
  if (prefixProblem) throw new ConfigError(`secret env prefix: ${prefixProblem}`);
  const secretsDir = options.secretsDir === undefined ? undefined : resolve(options.secretsDir);
  if (secretsDir !== undefined && !statSync(secretsDir, { throwIfNoEntry: false })?.isDirectory())
    throw new ConfigError(`secrets folder ${secretsDir} is not a folder`);

  const python = await findPython({ configured: options.python, engine: options.engine });
  const kernelArea = options.kernelUser
    ? await prepareKernelArea({
        kernelUser: options.kernelUser,
        python: python.python,
        engine: python.engine,
      })
    : null;
  if (!kernelArea && process.getuid?.() === 0)
    log(
      'warning: running as root without --kernel-user: notebooks run as root and can read this ' +
        "server's environment, memory and data folder; start it with --kernel-user NAME",
    );
  closeLevelIteratorsWithTheirStreams(); // else every Query/Scan leaks its LevelDB iterator
  const db = dynalite({ path: join(dataDir, 'db'), createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  // dynalite checks no credentials, so it listens on a Unix socket in a folder only this user may
  // enter, not on a loopback port any local process (a kernel too) could connect to. A fresh short
  // path under the temporary folder: socket paths are limited to about 100 bytes.
  const storeDir = mkdtempSync(join(tmpdir(), 'notebook-jobs-store-'));
  const socketPath = join(storeDir, 'dynalite.sock');
  await new Promise<void>((done) => db.listen(socketPath, () => done()));
  const endpoint = `${UNIX_ENDPOINT_PREFIX}${socketPath}`;
  const client = createDocumentClient({ endpoint });
  await createJobTable(client, TABLE);
  const store = new DynamoDbJobStore({ client, tableName: TABLE });

  let service: JobService | null = null;
  /** Store work started outside a request (runner exits, sweeps); close() waits for it. */
  const inFlight = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown>) => {
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  };
  const launcher = new LocalProcessLauncher({
    command: [process.execPath, ...RUNNER_NODE_FLAGS, await bundleRunner(join(dataDir, 'runner'))],
    cwd: dataDir,
    stderrDir: join(dataDir, 'runners'),
    stopGraceMs: options.stopGraceMs ?? 10_000,
    env: {
      NOTEBOOK_JOBS_TABLE: TABLE,
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: endpoint,
      NOTEBOOK_JOBS_DATA: dataDir,
      NOTEBOOK_JOBS_WORKSPACE: workspace,
      NOTEBOOK_JOBS_ENGINES_DIR: kernelArea?.enginesDir ?? ENGINES_DIR,
      // Set either way, so that a value in this server's own environment cannot half-apply.
      NOTEBOOK_JOBS_KERNEL_USER: kernelArea ? (options.kernelUser as string) : '',
      NOTEBOOK_JOBS_WORK_ROOT: kernelArea?.workRoot ?? '',
      NOTEBOOK_JOBS_PYTHON: python.python,
      NOTEBOOK_JOBS_ENGINE: python.engine,
      [SECRET_ENV_PREFIX.variable]: secretEnvPrefix,
      [SECRETS_DIR.variable]: secretsDir ?? '',
      [SETTINGS.progressIntervalMs.variable]: String(
        options.progressIntervalMs ?? SETTINGS.progressIntervalMs.default,
      ),
      // The server already printed the SDK's Node 20 notice once; keep it out of every job's stderr.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    warm:
      python.engine === 'nbclient' && python.kernels.some((k) => k.name === WARM_KERNEL)
        ? { kernel: WARM_KERNEL, count: options.warmKernels ?? 1, log }
        : undefined,
    onExit: (jobId, description) => {
      if (!service) return;
      track(
        service
          .runnerStopped(jobId, description)
          .catch((error: unknown) =>
            serviceLog('reconciling an exited runner failed', { job_id: jobId, error }),
          ),
      );
    },
  });
  const cursors = new CursorCodec(readOrCreateSecret(dataDir));
  // Submissions never read the secrets folder, even inside the workspace.
  const artifacts = new FileArtifacts({
    root: join(dataDir, 'artifacts'),
    workspace,
    private: [dataDir, ...(secretsDir ? [secretsDir] : [])],
  });
  const clock = { now: () => new Date() };
  const maxNotebookBytes = options.service?.maxNotebookBytes ?? DEFAULT_SERVICE_CONFIG.maxNotebookBytes;
  const uploads = new LocalUploads({ cursors, artifacts, clock, maxBytes: maxNotebookBytes });
  service = new JobService({
    store,
    artifacts,
    launcher,
    logs: new FileLogReader(join(dataDir, 'logs')),
    kernels: staticKernelCatalog(python.kernels),
    clock,
    ids: new MonotonicJobIds(),
    cursors,
    uploads,
    renderer: new NbconvertRenderer(python.python),
    config: {
      maxConcurrentJobs: options.maxConcurrentJobs ?? SETTINGS.maxConcurrentJobs.default,
      maxInputFiles: readIntSetting(process.env, SETTINGS.maxInputFiles),
      maxInputFilesBytes: readIntSetting(process.env, SETTINGS.maxInputFilesBytes),
      secrets: { schemes: secretsDir ? ['env', 'file'] : ['env'], envPrefix: secretEnvPrefix },
      ...options.service,
    },
    log: serviceLog,
  });

  // Runners from a previous server process cannot reach this store: end their jobs honestly.
  const abandoned = await service.abandonRunning(
    'the local server restarted while this job was running; its runner could not report back',
  );
  if (abandoned.length)
    log(`marked ${abandoned.length} job(s) failed after restart: ${abandoned.join(', ')}`);
  await service.sweep();

  const ctx: ApiContext = {
    service,
    uploads,
    log: serviceLog,
    health: async () => ({
      mode: 'local',
      engine: python.engine,
      python: python.python,
      kernels: python.kernels.map((k) => k.name),
      max_concurrent_jobs: service.config.maxConcurrentJobs,
    }),
  };
  const mcp: McpEndpoint = {
    service,
    allowedOrigins: [], // set with the caller policy, once the port is known
    maxBodyBytes: MAX_REQUEST_BODY_BYTES,
    pollIntervalSeconds: 5,
    taskTtlMs: null, // local jobs are kept until deleted or cleaned up
    maxResourceBytes: MAX_REQUEST_BODY_BYTES,
    streamProgress: true,
    log: serviceLog,
  };
  const http = createServer({ requireHostHeader: false });
  http.on('clientError', answerClientError);
  await new Promise<void>((done, fail) => {
    http.once('error', fail);
    http.listen(options.port ?? SETTINGS.port.default, options.host ?? '127.0.0.1', () => done());
  });
  const port = (http.address() as AddressInfo).port;
  uploads.setBaseUrl(`http://${hostForUrl(options.host ?? '127.0.0.1')}:${port}`);
  const policy = policyFor(port);
  mcp.allowedOrigins = [...policy.origins];
  // Attached only now that the port, and so the policy, is known; no request is read before this.
  http.on('request', (req: IncomingMessage, res: ServerResponse) => {
    answer(req, res, policy, ctx, mcp, maxNotebookBytes, serviceLog).catch((error: unknown) => {
      serviceLog('answering a request failed', { method: req.method, path: req.url?.slice(0, 256), error });
      send(res, internalError(false), false, log);
    });
  });

  const sweeper = setInterval(() => {
    track(service.sweep().catch((error: unknown) => serviceLog('sweep failed', { error })));
  }, options.sweepIntervalMs ?? 5000);
  sweeper.unref();

  return {
    url: `http://${hostForUrl(options.host ?? '127.0.0.1')}:${port}`,
    port,
    service,
    store,
    dataDir,
    warmKernels: () => launcher.warmRunners(),
    async close(closeOptions = {}) {
      clearInterval(sweeper);
      await (closeOptions.killRunners ? launcher.killAll() : launcher.endPool());
      await closeServer(http);
      // Reconciliations and sweeps still talking to the store finish before it closes.
      await Promise.all(inFlight);
      await new Promise<void>((done) => db.close(() => done()));
      rmSync(storeDir, { recursive: true, force: true });
      kernelArea?.remove();
    },
  };
}

/**
 * One request, start to end. Every failure becomes an answer: typed errors their 4xx, anything
 * else a logged 500 without internals. The server never dies of a request.
 */
async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  policy: CallerPolicy,
  ctx: ApiContext,
  mcp: McpEndpoint,
  maxUploadBytes: number,
  log: LogFn,
): Promise<void> {
  const method = req.method ?? 'GET';
  let isMcp = false;
  let response: ApiResponse;
  // Every line about this request carries its method and path, then its tenant and job once known.
  let requestLog = withFields(log, { method: method.slice(0, 16), path: req.url?.slice(0, 256) });
  try {
    const url = requestUrl(req.url ?? '/');
    const route = routeKind(method, url.pathname, policy);
    isMcp = route.mcp;
    const { host, caller } = await checkCaller(policy, req, method, url.pathname, route);
    requestLog = withFields(log, requestLogFields({ method, path: url.pathname, tenant: caller.tenant }));
    if (route.metadata) {
      response =
        method === 'GET' || method === 'HEAD'
          ? json(200, protectedResourceMetadata(policy.bearer?.oauth?.config as OAuthConfig))
          : restFailure(
              new AppError('method_not_allowed', `${method} is not allowed here; use GET`),
              requestLog,
            );
    } else if (isMcp) {
      const web = await serveMcp(
        mcp,
        req,
        method,
        `http://${host}${url.pathname}${url.search}`,
        caller.tenant,
      );
      if (web.headers.get('content-type')?.startsWith('text/event-stream') && web.body) {
        return sendStream(res, web, log);
      }
      response = await fromWebResponse(web);
    } else {
      response = await serveRest(
        ctx,
        req,
        method,
        url,
        route.upload ? maxUploadBytes : MAX_REQUEST_BODY_BYTES,
        requestLog,
        caller.tenant,
      );
    }
  } catch (error) {
    response = isMcp ? await mcpFailure(mcp, error) : restFailure(error, requestLog);
  }
  send(res, response, isMcp, log);
}

async function serveRest(
  ctx: ApiContext,
  req: IncomingMessage,
  method: string,
  url: URL,
  maxBodyBytes: number,
  log: LogFn,
  tenant: string,
): Promise<ApiResponse> {
  const body = await readBody(req, maxBodyBytes);
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers))
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  const response = await handleApiRequest(ctx, {
    method,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers,
    body,
    tenant,
  });
  if (response.status >= 500) log('request answered with a server error', { status: response.status });
  return response;
}

/** /mcp: the same endpoint code as the Lambda handler, fed a web-standard Request. */
async function serveMcp(
  endpoint: McpEndpoint,
  req: IncomingMessage,
  method: string,
  url: string,
  tenant: string,
): Promise<Response> {
  const body = method === 'POST' ? await readBody(req, endpoint.maxBodyBytes) : null;
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const request = new Request(url, {
    method,
    headers,
    body: body && method !== 'GET' && method !== 'HEAD' ? new Uint8Array(body) : null,
  });
  // The caller passed checkCaller: the local tenant, or an OAuth token's.
  return handleMcpRequest(endpoint, request, { tenant });
}

/** The cursor-signing secret: random, created once, kept with the data (so cursors survive restarts). */
function readOrCreateSecret(dataDir: string): string {
  const path = join(dataDir, 'secret');
  if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  return readFileSync(path, 'utf8').trim();
}
