/**
 * Local mode wiring: one process serving REST v1 on 127.0.0.1, jobs in an embedded dynalite
 * persisted under the data folder, notebooks and logs in files, each job a child process running
 * the same runner as the container. No AWS account, no Docker.
 */
import {
  createServer,
  STATUS_CODES,
  validateHeaderName,
  validateHeaderValue,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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
import {
  AppError,
  errorDetail,
  InvalidRequestError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from '../core/errors.ts';
import { ConfigError } from '../core/config.ts';
import { createDocumentClient, UNIX_ENDPOINT_PREFIX } from '../adapters/dynamodb/client.ts';
import { createJobTable } from '../adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../adapters/file-artifacts.ts';
import { FileLogReader } from '../adapters/file-logs.ts';
import { LocalProcessLauncher } from '../adapters/local-process-launcher.ts';
import { NbconvertRenderer } from '../adapters/nbconvert-renderer.ts';
import { handleApiRequest, PUBLIC_ROUTES, type ApiContext } from '../http/routes.ts';
import { errorResponse, httpStatus, json } from '../http/errors.ts';
import { textLog } from '../core/logging.ts';
import type { ApiResponse } from '../http/types.ts';
import { findPython, staticKernelCatalog, type EngineName } from '../kernels/python.ts';
import { ENGINES_DIR } from '../kernels/engines.ts';
import { bundleRunner } from './runner-bundle.ts';
import {
  MAX_REQUEST_BODY_BYTES,
  readIntSetting,
  SECRET_ENV_PREFIX,
  SECRETS_DIR,
  SETTINGS,
} from '../core/settings.ts';
import { secretEnvPrefixProblem } from '../core/secrets.ts';
import { handleMcpRequest, mcpTooLarge, rpcError, type McpEndpoint } from '../mcp/http.ts';
import { LocalUploads } from './local-uploads.ts';
import { prepareKernelArea } from './kernel-area.ts';
import { closeLevelIteratorsWithTheirStreams } from './level-iterator-close.ts';
import { authenticate, requireScopes, type BearerPolicy, type Caller } from '../auth/bearer.ts';
import { JwtVerifier } from '../auth/jwt-verifier.ts';
import {
  AuthError,
  checkOAuthConfig,
  metadataPaths,
  protectedResourceMetadata,
  type OAuthConfig,
} from '../auth/protected-resource.ts';
import { requiredScope } from '../http/apigw.ts';

export const LOCAL_TENANT = 'local';
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
    command: [process.execPath, '--enable-source-maps', await bundleRunner(join(dataDir, 'runner'))],
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
    log,
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
    answer(req, res, policy, ctx, mcp, maxNotebookBytes, log).catch((error: unknown) => {
      log(`answering ${req.method} failed: ${errorDetail(error)}`);
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
 * Who may call, decided from the request line and headers alone, before any body is read. The
 * server listens on loopback, but a browser on this machine can still be made to send requests to
 * it: a page on any site can POST "simple" cross-site requests (text/plain, forms), and a domain
 * that re-resolves to 127.0.0.1 (DNS rebinding) can even read the answers. The Host check stops
 * rebinding, the Origin check and the JSON-only bodies stop cross-site requests, the token (when
 * configured) stops other local users and programs.
 */
interface CallerPolicy {
  /** Accepted Host header values, as `name:port` in lower case. */
  hosts: ReadonlySet<string>;
  /** Accepted Origin header values, serialized (`http://localhost:8080`). */
  origins: ReadonlySet<string>;
  /** How a bearer token is checked; null when the server needs none (no token, no OAuth). */
  bearer: BearerPolicy | null;
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

/** Checks the configured hosts and origins at once (fail fast); the policy itself needs the port. */
function callerPolicyFor(options: LocalServerOptions): (port: number) => CallerPolicy {
  const names = [
    ...LOOPBACK_NAMES,
    hostForUrl(options.host ?? '127.0.0.1'),
    ...(options.allowedHosts ?? []).map((name) => name.trim()),
  ];
  for (const name of names) {
    if (!parseHost(name, 0))
      throw new ConfigError(`allowed host "${name}" is not a host name, IP address or name:port`);
  }
  const extraOrigins = (options.allowedOrigins ?? []).map((entry) => {
    const origin = originOf(entry.trim());
    if (!origin)
      throw new ConfigError(`allowed origin "${entry}" is not an origin like http://localhost:6274`);
    return origin;
  });
  const token = options.token || undefined;
  const oauthAt = (audience: string) =>
    options.oauth ? checkOAuthConfig({ ...options.oauth, audience }) : null;
  // Checked now, before the server listens; the default audience needs the port.
  oauthAt(options.oauth?.audience ?? 'http://127.0.0.1/mcp');
  return (port) => {
    const hosts = new Set(names.map((name) => parseHost(name, port) as string));
    const own = [...hosts].map((host) => new URL(`http://${host}`).origin);
    const config = oauthAt(
      options.oauth?.audience ?? `http://${hostForUrl(options.host ?? '127.0.0.1')}:${port}/mcp`,
    );
    const bearer: BearerPolicy | null =
      token || config
        ? {
            oauth: config ? { config, verifier: new JwtVerifier(config) } : null,
            // Everyone holding the server's own token is the local tenant, with both scopes.
            apiToken: token
              ? (presented) =>
                  sameSecret(presented, token) ? { tenant: LOCAL_TENANT, scopes: ['read', 'write'] } : null
              : null,
            missingHint: [
              token ? 'this server was started with a token (NOTEBOOK_JOBS_TOKEN)' : null,
              config ? `it accepts access tokens from ${config.issuer}` : null,
            ]
              .filter(Boolean)
              .join(', and ')
              .concat('; send the Authorization header as "Bearer <token>"'),
          }
        : null;
    return { hosts, origins: new Set([...own, ...extraOrigins]), bearer };
  };
}

/** What the checks need to know about a route. */
interface RouteKind {
  mcp: boolean;
  /** The protected-resource metadata (RFC 9728): public, it tells clients where to get a token. */
  metadata: boolean;
  /** A route the table marks public (health: no business data), so no token. */
  public: boolean;
  /**
   * A PUT to a signed upload URL needs no token: the URL itself is the permission (as a presigned
   * S3 URL is on AWS), and it only stores bytes under the key it names.
   */
  upload: boolean;
}

function routeKind(method: string, path: string, policy: CallerPolicy): RouteKind {
  const oauth = policy.bearer?.oauth?.config;
  return {
    mcp: path === '/mcp',
    metadata: oauth !== undefined && metadataPaths(oauth.audience).includes(path),
    public: PUBLIC_ROUTES.has(`${method} ${path}`),
    upload: method === 'PUT' && /^\/v1\/uploads\/[^/]+$/.test(path),
  };
}

/** JSON bodies only: text/plain, form and multipart bodies are what a browser sends cross-site unasked. */
const JSON_MEDIA_TYPES = ['application/json'];
/**
 * An upload is the notebook file. A PUT is never a "simple" cross-site request, so this list is
 * about clear errors, not forgery: text/plain is what fetch() and many tools send for a string
 * body, and no Content-Type at all (curl -T, Python requests) is accepted too.
 */
const UPLOAD_MEDIA_TYPES = [
  'application/json',
  'application/x-ipynb+json',
  'application/octet-stream',
  'text/plain',
];

/** Throws the refusal (an AppError naming the header and what is allowed), or returns the Host and caller. */
async function checkCaller(
  policy: CallerPolicy,
  req: IncomingMessage,
  method: string,
  path: string,
  route: RouteKind,
): Promise<{ host: string; caller: Caller }> {
  const hosts = [...policy.hosts];
  const host = req.headers.host;
  if (!host) {
    throw new InvalidRequestError(`the Host header is missing; send Host: ${hosts[0]}`, {
      header: 'host',
      allowed: hosts,
    });
  }
  const normalized = parseHost(host, 80);
  if (!normalized) {
    throw new InvalidRequestError(
      `the Host header "${clip(host)}" is malformed; this server answers to ${hosts.join(', ')}`,
      { header: 'host', received: clip(host), allowed: hosts },
    );
  }
  if (!policy.hosts.has(normalized)) {
    throw new AppError(
      'forbidden',
      `the Host header "${clip(host)}" is not this server's: it answers to ${hosts.join(', ')} only ` +
        '(add names with --allowed-hosts or NOTEBOOK_JOBS_ALLOWED_HOSTS)',
      { header: 'host', received: clip(host), allowed: hosts },
    );
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const normalizedOrigin = originOf(origin);
    if (!normalizedOrigin || !policy.origins.has(normalizedOrigin)) {
      const origins = [...policy.origins];
      throw new AppError(
        'forbidden',
        `Origin header refused: origin ${clip(origin)} is not allowed to call this server; allowed: ` +
          `${origins.join(', ')} (add origins with NOTEBOOK_JOBS_ALLOWED_ORIGINS; requests without an ` +
          'Origin header, as CLIs and scripts send them, are not affected)',
        { header: 'origin', received: clip(origin), allowed: origins },
      );
    }
  }
  let caller: Caller = { tenant: LOCAL_TENANT, scopes: ['read', 'write'] };
  if (policy.bearer && !route.public && !route.upload && !route.metadata) {
    caller = await authenticate(policy.bearer, req.headers.authorization);
    requireScopes(
      caller,
      route.mcp ? ['read', 'write'] : [requiredScope(method)],
      policy.bearer.oauth?.config ?? null,
    );
  }
  if (method !== 'GET' && method !== 'HEAD') checkContentType(req, method, path, route);
  return { host: normalized, caller };
}

/** Constant-time: hashing first makes both sides the same length whatever was presented. */
function sameSecret(presented: string, token: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

function checkContentType(req: IncomingMessage, method: string, path: string, route: RouteKind): void {
  const contentType = req.headers['content-type'];
  const hasBody =
    (req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined;
  if (contentType === undefined && (!hasBody || route.upload)) return;
  const allowed = route.upload ? UPLOAD_MEDIA_TYPES : JSON_MEDIA_TYPES;
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (allowed.includes(mediaType)) return;
  throw new UnsupportedMediaTypeError(
    contentType === undefined
      ? `the Content-Type header is missing on ${method} ${path}, which has a body; send Content-Type: ${allowed.join(' or ')}`
      : `the Content-Type header "${clip(contentType)}" is not accepted on ${method} ${path}; send ${allowed.join(' or ')}`,
    { header: 'content-type', received: contentType === undefined ? null : clip(contentType), allowed },
  );
}

const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?$/i;

/** `name:port` in lower case (port defaulted), or null when `value` is not a host[:port]. */
function parseHost(value: string, defaultPort: number): string | null {
  const match = HOST_HEADER.exec(value);
  if (!match) return null;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (port > 65535) return null;
  return `${(match[1] as string).toLowerCase()}:${port}`;
}

/** The serialized origin of `value`, or null for "null" and anything that is not a URL. */
function originOf(value: string): string | null {
  try {
    const origin = new URL(value).origin;
    return origin === 'null' ? null : origin;
  } catch {
    return null;
  }
}

/** An IPv6 address in brackets, as URLs and Host headers write it. */
function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** A header value as quoted back in an error: never more than 200 characters. */
function clip(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}...` : value;
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
  log: (message: string) => void,
): Promise<void> {
  const method = req.method ?? 'GET';
  let isMcp = false;
  let response: ApiResponse;
  try {
    const url = requestUrl(req.url ?? '/');
    const route = routeKind(method, url.pathname, policy);
    isMcp = route.mcp;
    const { host, caller } = await checkCaller(policy, req, method, url.pathname, route);
    if (route.metadata) {
      response =
        method === 'GET' || method === 'HEAD'
          ? json(200, protectedResourceMetadata(policy.bearer?.oauth?.config as OAuthConfig))
          : restFailure(new AppError('method_not_allowed', `${method} is not allowed here; use GET`), log);
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
        log,
        caller.tenant,
      );
    }
  } catch (error) {
    response = isMcp ? await mcpFailure(mcp, error) : restFailure(error, log);
  }
  send(res, response, isMcp, log);
}

/** The request target as a URL on a fixed base: only origin-form ("/path?query") is taken. */
function requestUrl(target: string): URL {
  if (!target.startsWith('/'))
    throw new InvalidRequestError(`the request target "${clip(target)}" must be a path starting with /`);
  try {
    return new URL(`http://localhost${target}`);
  } catch {
    throw new InvalidRequestError(`the request target "${clip(target)}" is not a valid path`);
  }
}

async function serveRest(
  ctx: ApiContext,
  req: IncomingMessage,
  method: string,
  url: URL,
  maxBodyBytes: number,
  log: (message: string) => void,
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
  if (response.status >= 500) log(`${method} ${url.pathname} answered ${response.status}`);
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

/**
 * An MCP answer that is an SSE stream (progress, then the result): written as it comes. A client
 * that goes away cancels the stream, which ends the call's wait (the job goes on).
 */
async function sendStream(res: ServerResponse, response: Response, log: (message: string) => void) {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  res.writeHead(response.status, headers);
  res.flushHeaders();
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), res);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
      log(`streaming an MCP response failed: ${errorDetail(error)}`);
    }
  }
}

function restFailure(error: unknown, log: (message: string) => void): ApiResponse {
  const response = errorResponse(error, log);
  if (error instanceof AuthError) response.headers['www-authenticate'] = error.challenge;
  return response;
}

async function mcpFailure(endpoint: McpEndpoint, error: unknown): Promise<ApiResponse> {
  if (error instanceof PayloadTooLargeError) return fromWebResponse(mcpTooLarge(endpoint.maxBodyBytes));
  if (error instanceof AppError) {
    const unauthorized = error.code === 'unauthorized';
    return fromWebResponse(
      rpcError(
        httpStatus(error.code),
        unauthorized ? -32001 : -32000,
        error.message,
        error instanceof AuthError ? { 'www-authenticate': error.challenge } : {},
      ),
    );
  }
  endpoint.log(`mcp request failed: ${errorDetail(error)}`);
  return internalError(true);
}

async function fromWebResponse(response: Response): Promise<ApiResponse> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  return { status: response.status, headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** The last-resort answer, in the protocol of the route: it says nothing about what went wrong. */
function internalError(mcp: boolean): ApiResponse {
  const message = 'internal error; the server log has the details';
  return mcp
    ? json(500, { jsonrpc: '2.0', error: { code: -32603, message }, id: null })
    : json(500, { error: { code: 'internal', message } });
}

/**
 * Writes the response. Headers are validated first, so a value that cannot be sent becomes a
 * logged 500 instead of an exception escaping into the process.
 */
function send(
  res: ServerResponse,
  response: ApiResponse,
  mcp: boolean,
  log: (message: string) => void,
): void {
  try {
    for (const [name, value] of Object.entries(response.headers)) {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    }
    res.writeHead(response.status, response.headers);
    res.end(response.body);
  } catch (error) {
    log(`writing a ${response.status} response failed: ${errorDetail(error)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    try {
      const fallback = internalError(mcp);
      res.writeHead(fallback.status, fallback.headers);
      res.end(fallback.body);
    } catch {
      res.destroy();
    }
  }
}

/** Malformed HTTP (request line, headers too large): a short JSON 4xx and a closed connection. */
function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify({
    error: { code: 'invalid_request', message: `malformed HTTP request (${error.code ?? 'unparsable'})` },
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        fail(
          new PayloadTooLargeError(
            `request body is over ${limit} bytes; send larger notebooks with POST /v1/uploads`,
          ),
        );
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => done(chunks.length ? Buffer.concat(chunks) : null));
    req.on('error', fail);
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((done) => {
    server.close(() => done());
    server.closeAllConnections();
  });
}

/** The cursor-signing secret: random, created once, kept with the data (so cursors survive restarts). */
function readOrCreateSecret(dataDir: string): string {
  const path = join(dataDir, 'secret');
  if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  return readFileSync(path, 'utf8').trim();
}
