/**
 * Local mode wiring: one process serving REST v1 on 127.0.0.1, jobs in an embedded dynalite
 * persisted under the data folder, notebooks and logs in files, each job a child process running
 * the same runner as the container. No AWS account, no Docker.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { DEFAULT_SERVICE_CONFIG, JobService, type JobServiceConfig } from '../core/job-service.ts';
import { CursorCodec } from '../core/cursor.ts';
import { MonotonicJobIds } from '../core/ids.ts';
import { PayloadTooLargeError } from '../core/errors.ts';
import { createDocumentClient } from '../adapters/dynamodb/client.ts';
import { createJobTable } from '../adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../adapters/file-artifacts.ts';
import { FileLogReader } from '../adapters/file-logs.ts';
import { LocalProcessLauncher } from '../adapters/local-process-launcher.ts';
import { NbconvertRenderer } from '../adapters/nbconvert-renderer.ts';
import { handleApiRequest, type ApiContext } from '../http/routes.ts';
import { errorResponse } from '../http/errors.ts';
import type { ApiResponse } from '../http/types.ts';
import { findPython, staticKernelCatalog, type EngineName } from '../../container/runner/python.ts';
import { ENGINES_DIR } from '../../container/runner/runner.ts';
import { bundleRunner } from './runner-bundle.ts';
import { handleMcpRequest, mcpTooLarge, rpcError, type McpEndpoint } from '../mcp/http.ts';
import { LocalUploads } from './local-uploads.ts';
import { closeLevelIteratorsWithTheirStreams } from './level-iterator-close.ts';

export const LOCAL_TENANT = 'local';
const TABLE = 'notebook-jobs';
/** Inline notebooks are limited to 5 MB; the JSON around them gets a little more. */
const MAX_BODY_BYTES = 6 * 1024 * 1024;

export interface LocalServerOptions {
  host?: string;
  port?: number;
  dataDir: string;
  workspace?: string;
  python?: string;
  engine?: EngineName | 'auto';
  maxConcurrentJobs?: number;
  sweepIntervalMs?: number;
  progressIntervalMs?: number;
  stopGraceMs?: number;
  service?: Partial<JobServiceConfig>;
  /** When set, /mcp requires `Authorization: Bearer <mcpToken>`. */
  mcpToken?: string;
  /** Browser origins allowed on /mcp besides this server's own. */
  mcpAllowedOrigins?: string[];
  log?: (message: string) => void;
}

export interface LocalServer {
  url: string;
  port: number;
  service: JobService;
  store: DynamoDbJobStore;
  dataDir: string;
  /** Stops serving. `killRunners` also kills running jobs' runners (tests). */
  close(options?: { killRunners?: boolean }): Promise<void>;
}

export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const log = options.log ?? ((message: string) => console.error(message));
  const dataDir = resolve(options.dataDir);
  const workspace = resolve(options.workspace ?? process.cwd());
  mkdirSync(dataDir, { recursive: true });

  const python = await findPython({ configured: options.python, engine: options.engine });
  closeLevelIteratorsWithTheirStreams(); // else every Query/Scan leaks its LevelDB iterator
  const db = dynalite({ path: join(dataDir, 'db'), createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((done) => db.listen(0, '127.0.0.1', () => done()));
  const endpoint = `http://127.0.0.1:${(db.address() as AddressInfo).port}`;
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
      NOTEBOOK_JOBS_ENGINES_DIR: ENGINES_DIR,
      NOTEBOOK_JOBS_PYTHON: python.python,
      NOTEBOOK_JOBS_ENGINE: python.engine,
      NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS: String(options.progressIntervalMs ?? 2000),
      // The server already printed the SDK's Node 20 notice once; keep it out of every job's stderr.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    onExit: (jobId, description) => {
      if (!service) return;
      track(
        service
          .runnerExited(jobId, description)
          .catch((error: unknown) => log(`reconcile ${jobId}: ${String(error)}`)),
      );
    },
  });
  const cursors = new CursorCodec(readOrCreateSecret(dataDir));
  const artifacts = new FileArtifacts({ root: join(dataDir, 'artifacts'), workspace });
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
    config: { maxConcurrentJobs: options.maxConcurrentJobs ?? 5, ...options.service },
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
    allowedOrigins: [...(options.mcpAllowedOrigins ?? [])],
    maxBodyBytes: MAX_BODY_BYTES,
    pollIntervalSeconds: 5,
    taskTtlMs: null, // local jobs are kept until deleted or cleaned up
    maxResourceBytes: MAX_BODY_BYTES,
    log,
  };
  const token = options.mcpToken;
  const http = createServer((req, res) => {
    if (req.url === '/mcp' || req.url?.startsWith('/mcp?')) void serveMcp(mcp, token, req, res);
    else void serve(ctx, req, res, maxNotebookBytes);
  });
  await new Promise<void>((done, fail) => {
    http.once('error', fail);
    http.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => done());
  });
  const port = (http.address() as AddressInfo).port;
  uploads.setBaseUrl(`http://${options.host ?? '127.0.0.1'}:${port}`);
  mcp.allowedOrigins = [...mcp.allowedOrigins, `http://127.0.0.1:${port}`, `http://localhost:${port}`];

  const sweeper = setInterval(() => {
    track(service.sweep().catch((error: unknown) => log(`sweep failed: ${String(error)}`)));
  }, options.sweepIntervalMs ?? 5000);
  sweeper.unref();

  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    service,
    store,
    dataDir,
    async close(closeOptions = {}) {
      clearInterval(sweeper);
      if (closeOptions.killRunners) await launcher.killAll();
      await closeServer(http);
      // Reconciliations and sweeps still talking to the store finish before it closes.
      await Promise.all(inFlight);
      await new Promise<void>((done) => db.close(() => done()));
    },
  };
}

async function serve(
  ctx: ApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  maxUploadBytes: number,
): Promise<void> {
  let response: ApiResponse;
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const isUpload = req.method === 'PUT' && url.pathname.startsWith('/v1/uploads/');
    const body = await readBody(req, isUpload ? maxUploadBytes : MAX_BODY_BYTES);
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(req.headers))
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    response = await handleApiRequest(ctx, {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
      tenant: LOCAL_TENANT,
    });
  } catch (error) {
    response = errorResponse(error);
  }
  res.writeHead(response.status, response.headers);
  res.end(response.body);
}

/** /mcp: the same endpoint code as the Lambda handler, fed a web-standard Request. */
async function serveMcp(
  endpoint: McpEndpoint,
  token: string | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let response: Response;
  try {
    const body = req.method === 'POST' ? await readBody(req, endpoint.maxBodyBytes) : null;
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/mcp'}`, {
      method: req.method ?? 'GET',
      headers,
      body: body && req.method !== 'GET' && req.method !== 'HEAD' ? new Uint8Array(body) : null,
    });
    response = await handleMcpRequest(
      endpoint,
      request,
      bearerMatches(token, headers) ? { tenant: LOCAL_TENANT } : null,
    );
  } catch (error) {
    if (error instanceof PayloadTooLargeError) response = mcpTooLarge(endpoint.maxBodyBytes);
    else {
      endpoint.log(`mcp request failed: ${String(error)}`);
      response = rpcError(500, -32603, 'internal error; the server log has the details');
    }
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  res.writeHead(response.status, headers);
  res.end(Buffer.from(await response.arrayBuffer()));
}

/** No token configured: everyone local is the local tenant. Else the exact bearer token. */
function bearerMatches(token: string | undefined, headers: Headers): boolean {
  if (!token) return true;
  const presented = /^Bearer (.+)$/i.exec(headers.get('authorization') ?? '')?.[1] ?? '';
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
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
