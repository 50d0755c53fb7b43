/**
 * A bounded property-based attack on every route of the local service (fast-check): mutated
 * methods, paths, queries, headers and bodies on the REST routes, mutated job and inspect requests
 * through REST and MCP, mutated JSON-RPC messages on /mcp, and upload slots fed hostile tokens and
 * bytes. Every answer:
 * - comes within the time limit, with a status below 500 (a 5xx for bad input is a bug);
 * - when it is an error, says what was wrong in the route's own shape (REST `{error: {code,
 *   message}}`, JSON-RPC `{error: {code, message}}` and never -32603, the internal error);
 * - leaks neither the server's token nor anything of the files outside the workspace (a secret
 *   notebook reached by absolute path, `..`, a symlink, a symlinked folder, percent-encoding);
 * - when it rejects the request, changes nothing: the job list and the files of the data folder
 *   and the workspace are as they were.
 * The server answers /v1/health after each property and logs no internal error.
 *
 * FUZZ_SCALE multiplies the number of runs (default 1: about 3,000 requests). A failure prints
 * fast-check's seed and the shrunk request; `FUZZ_SEED=<seed>` replays it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupRequestSchema } from '../../lambda/core/schemas.ts';
import {
  isEnded,
  processesMentioning,
  rawRequest,
  startTestService,
  type RawResponse,
  type TestService,
} from '../helpers/local-service.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';

const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
const fuzzOptions = (numRuns: number) => ({
  numRuns: runs(numRuns),
  ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}),
});
const TOKEN = `fuzz-token-${randomBytes(12).toString('hex')}`;
const SECRET = `SECRET${randomBytes(12).toString('hex')}`;
const MISSING_JOB = 'job-00000000000000000000';
const MCP_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2025-11-25',
};

let svc: TestService;
let scratch: string;
let workspace: string;
let seedJob: string;
let seedOutput: string;
const logs: string[] = [];
const accepted = { jobs: 0, uploads: 0 };
let sent = 0;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'notebook-jobs-fuzz-'));
  workspace = join(scratch, 'workspace');
  const outside = join(scratch, 'outside');
  mkdirSync(workspace);
  mkdirSync(outside);
  const secretNotebook = makeNotebook([
    codeCell(`key = "${SECRET}"`, ['parameters']),
    codeCell('print(key)'),
  ]);
  writeFileSync(join(outside, 'secret.ipynb'), JSON.stringify(secretNotebook));
  writeFileSync(join(outside, 'secret.txt'), SECRET);
  writeFileSync(
    join(workspace, 'ok.ipynb'),
    JSON.stringify(makeNotebook([codeCell('n = 1', ['parameters']), codeCell('print(n)')])),
  );
  symlinkSync(join(outside, 'secret.ipynb'), join(workspace, 'link.ipynb'));
  symlinkSync(outside, join(workspace, 'dir'));
  // A named pipe: opening it for reading would wait for a writer.
  execFileSync('mkfifo', [join(workspace, 'pipe.ipynb')]);

  svc = await startTestService({
    workspace,
    token: TOKEN,
    maxConcurrentJobs: 1,
    log: (message) => logs.push(message),
  });
  const seed = await svc.request('POST', '/v1/jobs', {
    notebook: { uri: fileUri('ok.ipynb') },
    parameters: { n: 7 },
    wait_seconds: 25,
  });
  expect(seed.status, JSON.stringify(seed.body)).toBe(201);
  seedJob = seed.body.job_id;
  await settled(seedJob);
  const output = await svc.request('GET', `/v1/jobs/${seedJob}/output`);
  expect(output.status).toBe(200);
  seedOutput = JSON.stringify(output.body);
}, 90_000);

afterAll(async () => {
  await svc?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const fileUri = (relative: string) => pathToFileURL(join(workspace, relative)).href;

/** URIs that must never reach the secret, or hang the server. */
const hostileUris = () => [
  pathToFileURL(join(scratch, 'outside', 'secret.ipynb')).href,
  `file://${workspace}/../outside/secret.ipynb`,
  `file://${workspace}/%2e%2e/outside/secret.ipynb`,
  fileUri('link.ipynb'),
  fileUri('dir/secret.ipynb'),
  fileUri('dir/secret.txt'),
  fileUri('pipe.ipynb'),
  fileUri(''),
  `file://${svc.dataDir}/secret`,
  `file://${svc.dataDir}/artifacts/outputs/local/${seedJob}/ok.ipynb`,
  'file:///proc/self/environ',
  'file:///dev/zero',
  'file:///etc/passwd',
  'file://evil.example/etc/passwd',
  's3://bucket/outputs/other/job/x.ipynb',
  'http://169.254.169.254/latest/meta-data/',
  'ok.ipynb',
  '../outside/secret.ipynb',
  `file://${workspace}/ok.ipynb%00.txt`,
];

// ---- arbitraries ----------------------------------------------------------------------------

const TRICKS = [
  '',
  '.',
  '..',
  '%2e%2e',
  '..%2F..%2Foutside',
  '%2F',
  '%00',
  '%',
  '%zz',
  '%ff%fe',
  '%C0%AE%C0%AE',
  '~',
  '*',
  '$',
  "'",
  '"',
  '<script>',
  '${jndi:ldap://x}',
  '__proto__',
  'constructor',
  'job-',
  'job-%00',
  'a'.repeat(5000),
];
const hostileText = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...TRICKS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 1, arbitrary: fc.integer().map(String) },
);

/** Keeps the tricks as they are; encodes what node:http will not put on a request line. */
const inPath = (text: string) => text.replace(/[^\x21-\x7e]/gu, (ch) => encodeURIComponent(ch));
/** Header values: node:http refuses control characters, so those become '?'. */
const inHeader = (text: string) => text.replace(/[^\t\x20-\x7e]/gu, '?').slice(0, 4000);

/** A JSON value that a validator has to think about (built once the service is up: URIs name it). */
const hostileJson = (): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    { weight: 2, arbitrary: hostileText },
    {
      weight: 2,
      arbitrary: fc.constantFrom(null, true, false, -1, 0, 1.5, 1e308, -1e308, 2 ** 53 + 1, [], {}),
    },
    { weight: 2, arbitrary: fc.constantFrom(...hostileUris()) },
    { weight: 1, arbitrary: fc.integer({ min: 101, max: 400 }).map((depth) => nested(depth)) },
    { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 200_000 }).map((n) => 'x'.repeat(n)) },
  );

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
}

/** Every path into a JSON value: the keys and indices leading to each object, array and leaf. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const here = [prefix];
  if (Array.isArray(value)) return here.concat(value.flatMap((v, i) => pathsOf(v, [...prefix, i])));
  if (value && typeof value === 'object')
    return here.concat(Object.entries(value).flatMap(([k, v]) => pathsOf(v, [...prefix, k])));
  return here;
}

type Mutation = { kind: 'replace' | 'delete' | 'add'; at: number; key: string; value: unknown };

function applyMutation(base: unknown, { kind, at, key, value }: Mutation): unknown {
  const copy = structuredClone(base);
  const paths = pathsOf(copy);
  const path = paths[at % paths.length] as (string | number)[];
  if (path.length === 0) return kind === 'replace' ? value : copy;
  let parent: any = copy;
  for (const step of path.slice(0, -1)) parent = parent[step];
  const last = path[path.length - 1] as string | number;
  if (kind === 'replace') parent[last] = value;
  else if (kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (Array.isArray(parent[last])) {
    parent[last].push(value); // a named member on an array would not be JSON (and confuses flatMap)
  } else if (parent[last] && typeof parent[last] === 'object') {
    parent[last][key] = value;
  } else if (Array.isArray(parent)) {
    parent.push(value);
  } else parent[key] = value;
  return copy;
}

/** A request body made from a valid one by one or two mutations. */
function mutated(base: unknown): fc.Arbitrary<unknown> {
  const mutation = fc.record({
    kind: fc.constantFrom('replace', 'replace', 'delete', 'add') as fc.Arbitrary<Mutation['kind']>,
    at: fc.nat(),
    key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'wait_seconds', 'extra'), fc.string()),
    value: hostileJson(),
  });
  return fc.array(mutation, { minLength: 1, maxLength: 2 }).map((ms) => ms.reduce(applyMutation, base));
}

const authHeader = fc.oneof(
  { weight: 8, arbitrary: fc.constant(`Bearer ${TOKEN}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      undefined,
      'Bearer wrong',
      `bearer ${TOKEN}`,
      `Bearer ${TOKEN} `,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      'Basic dXNlcjpwYXNz',
      'Bearer',
      '',
    ),
  },
);

const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'application/json; charset=latin1',
      '',
    ),
  },
  { weight: 1, arbitrary: hostileText.map(inHeader) },
);

// ---- requests and checks --------------------------------------------------------------------

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

function send(request: FuzzRequest): Promise<RawResponse> {
  sent++;
  return rawRequest(svc, request.method, request.path, request.headers, request.body, 20_000);
}

const own = () => `127.0.0.1:${svc.server.port}`;
const authorized = (headers: Record<string, string>) =>
  // The scheme is case-insensitive (RFC 9110), and HTTP trims the value's surrounding whitespace.
  headers.authorization?.trim().replace(/^bearer +/i, 'Bearer ') === `Bearer ${TOKEN}` &&
  (headers.host || own()) === own() && // node:http sends its own Host for an empty one
  (headers.origin === undefined || headers.origin === `http://${own()}`);

/** What the service holds: the jobs, and the files of the data folder (but the store's own) and the workspace. */
async function snapshot(): Promise<string> {
  const jobs = await svc.request('GET', '/v1/jobs?limit=100');
  expect(jobs.status).toBe(200);
  return JSON.stringify({
    jobs: jobs.body.jobs,
    data: files(svc.dataDir, ['db']),
    workspace: files(workspace),
  });
}

function files(folder: string, skip: string[] = []): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    if (skip.includes(entry.name)) continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...files(path).map((f) => `${entry.name}/${f}`));
    else found.push(`${entry.name}:${entry.isFile() ? statSync(path).size : 'other'}`);
  }
  return found.sort();
}

/** Checks that hold for every answer, whatever was asked. */
function checkAnswer(request: FuzzRequest, response: RawResponse): void {
  const what = `${request.method} ${request.path.slice(0, 200)} -> ${response.status} ${response.text.slice(0, 300)}`;
  expect(response.status, what).toBeGreaterThanOrEqual(200);
  expect(response.status, what).toBeLessThan(500);
  expect(response.text.includes(SECRET), `secret leaked: ${what}`).toBe(false);
  expect(response.text.includes(TOKEN), `token echoed: ${what}`).toBe(false);
  if (response.status >= 400 && request.method !== 'HEAD') {
    expect(typeof response.body, what).toBe('object');
    expect(typeof response.body?.error?.message, what).toBe('string');
    expect(response.body.error.message.length, what).toBeGreaterThan(0);
    if (request.path.startsWith('/mcp')) expect(typeof response.body.error.code, what).toBe('number');
    else expect(typeof response.body.error.code, what).toBe('string');
  }
  if (response.status < 300 && !authorized(request.headers)) {
    // Without the token, or from a foreign Host or Origin, only health and the signed upload PUT answer.
    const path = new URL(request.path, 'http://server').pathname; // dot segments resolved, as the server does
    const open = request.method === 'GET' && path === '/v1/health';
    const upload = request.method === 'PUT' && path.startsWith('/v1/uploads/');
    expect(open || upload, `answered without authorization: ${what}`).toBe(true);
  }
}

/** Ends a job the fuzzer got accepted. */
async function retire(jobId: string): Promise<void> {
  accepted.jobs++;
  const cancel = await svc.request('POST', `/v1/jobs/${jobId}/cancel`);
  expect(cancel.status).toBe(200);
  await settled(jobId);
}

/** Waits until a job has ended and nothing of it runs or writes any more (its work folder is gone). */
async function settled(jobId: string): Promise<void> {
  await svc.waitFor(jobId, isEnded);
  const end = Date.now() + 20_000;
  while (processesMentioning(jobId).length > 0 || existsSync(join(svc.dataDir, 'work', jobId))) {
    if (Date.now() > end) throw new Error(`runner of ${jobId} did not exit`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Sends one request and checks it. A request that may change state is bracketed by snapshots: if
 * it was rejected, nothing changed; if a job was accepted, it is cancelled before the next run.
 */
async function attack(
  request: FuzzRequest,
  rejected: (response: RawResponse) => boolean,
): Promise<RawResponse> {
  const mutating = !['GET', 'HEAD', 'OPTIONS'].includes(request.method);
  const before = mutating ? await snapshot() : '';
  const response = await send(request);
  checkAnswer(request, response);
  const jobId = createdJob(request, response);
  if (jobId) await retire(jobId);
  else if (mutating && rejected(response))
    expect(await snapshot(), `state changed by ${request.path}`).toBe(before);
  return response;
}

function createdJob(request: FuzzRequest, response: RawResponse): string | null {
  if (request.path === '/v1/jobs' && response.status === 201) return response.body.job_id;
  const structured = response.body?.result?.structuredContent;
  if (request.path === '/mcp' && structured?.job?.job_id && !structured.done) return structured.job.job_id;
  if (request.path === '/mcp' && structured?.job?.job_id) accepted.jobs++;
  return null;
}

const restRejected = (response: RawResponse) => response.status >= 400;
const rpcRejected = (response: RawResponse) =>
  response.status >= 400 || response.body?.error !== undefined || response.body?.result?.isError === true;

async function expectHealthy(): Promise<void> {
  const health = await svc.request('GET', '/v1/health');
  expect(health.status).toBe(200);
  const seed = await svc.request('GET', `/v1/jobs/${seedJob}`);
  expect(seed.body.status).toBe('completed');
  const output = await svc.request('GET', `/v1/jobs/${seedJob}/output`);
  expect(JSON.stringify(output.body)).toBe(seedOutput);
  expect(logs.filter((line) => /internal error/i.test(line))).toEqual([]);
}

const json = (value: unknown) => {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    return 'null';
  }
};

// ---- properties ------------------------------------------------------------------------------

const PATHS = [
  '/v1/jobs',
  '/v1/jobs/{id}',
  '/v1/jobs/{id}/logs',
  '/v1/jobs/{id}/result',
  '/v1/jobs/{id}/output',
  '/v1/jobs/{id}/cancel',
  '/v1/jobs/cleanup',
  '/v1/uploads',
  '/v1/uploads/{id}',
  '/v1/notebooks/inspect',
  '/v1/health',
  '/openapi.json',
  '/mcp',
  '/',
  '/v1',
  '/v1/jobs/{id}/{id}',
  '/{id}',
  '//v1/jobs',
  '/v1/jobs/',
  '/V1/JOBS',
  '/v1/./jobs',
  '/v1/jobs/../health',
  '/v1/%6aobs',
];
const QUERY_KEYS = [
  'status',
  'limit',
  'cursor',
  'include_logs',
  'log_tail',
  'tail',
  'format',
  'older_than_hours',
];

describe('fuzzing the local service', () => {
  it('answers any method, path, query, header set and body on any route with a clear 4xx or success', async () => {
    const segment = fc.oneof(
      { weight: 2, arbitrary: fc.constant(seedJob) },
      { weight: 1, arbitrary: fc.constant(MISSING_JOB) },
      { weight: 4, arbitrary: hostileText.map(inPath) },
    );
    const query = fc.oneof(
      fc.constant(''),
      fc
        .dictionary(
          fc.oneof(fc.constantFrom(...QUERY_KEYS), hostileText.map(inPath)),
          hostileText.map(inPath),
          {
            maxKeys: 4,
          },
        )
        .map(
          (q) =>
            `?${Object.entries(q)
              .map(([k, v]) => `${k}=${v}`)
              .join('&')}`,
        ),
      fc.constantFrom(
        '?',
        '?&&==',
        '?limit=1&limit=2',
        '?include_logs=true&log_tail=1000',
        '?format=html',
        '?%',
      ),
    );
    const request = fc
      .record({
        method: fc.constantFrom('GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
        template: fc.constantFrom(...PATHS),
        segments: fc.array(segment, { minLength: 2, maxLength: 2 }),
        query,
        authorization: authHeader,
        contentType,
        host: fc.oneof(
          { weight: 9, arbitrary: fc.constant(undefined) },
          {
            weight: 1,
            arbitrary: fc.constantFrom('evil.example', 'localhost:1', '127.0.0.1', '', 'a'.repeat(300)),
          },
        ),
        origin: fc.oneof(
          { weight: 9, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.constantFrom('http://evil.example', 'null', '', 'file://') },
        ),
        idempotencyKey: fc.option(hostileText.map(inHeader), { freq: 5 }),
        body: fc.oneof(
          fc.constant(undefined),
          fc.jsonValue({ maxDepth: 3 }).map(json),
          mutated({ notebook: { uri: 'file:///x' }, older_than_hours: 1, name: 'a.ipynb' }).map(json),
          hostileText,
          fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
          fc.integer({ min: 101, max: 5000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
        ),
      })
      .map(({ template, segments, query, ...r }): FuzzRequest => {
        let i = 0;
        const path = template.replace(/\{id\}/g, () => segments[i++ % segments.length] as string) + query;
        const headers: Record<string, string> = {};
        if (r.authorization !== undefined) headers.authorization = r.authorization;
        if (r.contentType !== undefined) headers['content-type'] = r.contentType;
        if (r.host !== undefined) headers.host = r.host;
        if (r.origin !== undefined) headers.origin = r.origin;
        if (r.idempotencyKey !== null) headers['idempotency-key'] = r.idempotencyKey;
        if (path.startsWith('/mcp')) Object.assign(headers, { accept: MCP_HEADERS.accept }, headers);
        return {
          method: r.method,
          path,
          headers,
          body: r.method === 'GET' || r.method === 'HEAD' ? undefined : r.body,
        };
      });

    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        // The two requests that legitimately destroy the seed job are left out.
        fc.pre(!(r.method === 'DELETE' && r.path.split('?')[0] === `/v1/jobs/${seedJob}`));
        fc.pre(!(r.path.startsWith('/v1/jobs/cleanup') && isValidCleanup(r.body)));
        await attack(r, restRejected);
      }),
      fuzzOptions(1500),
    );
    await expectHealthy();
  }, 300_000);

  it('rejects mutated job, inspect and upload requests over REST and MCP tools without reaching outside the workspace', async () => {
    const bases = [
      { notebook: { uri: fileUri('ok.ipynb') }, parameters: { n: 2 }, tags: { team: 'a' } },
      {
        notebook: { content: makeNotebook([codeCell('n = 1', ['parameters'])]), name: 'inline.ipynb' },
        parameters: { n: 3 },
        timeout_seconds: 60,
        cell_timeout_seconds: 30,
        priority: 1,
      },
    ];
    const route = fc.constantFrom('rest-create', 'rest-inspect', 'mcp-execute', 'mcp-inspect', 'rest-upload');
    await fc.assert(
      fc.asyncProperty(route, fc.constantFrom(...bases).chain(mutated), async (kind, args) => {
        const body = kind === 'rest-upload' ? { name: (args as any)?.notebook?.name ?? args } : args;
        const restPath = {
          'rest-create': '/v1/jobs',
          'rest-inspect': '/v1/notebooks/inspect',
          'rest-upload': '/v1/uploads',
        };
        if (kind.startsWith('rest')) {
          const path = restPath[kind as keyof typeof restPath];
          const inspect = kind === 'rest-inspect' ? { notebook: (body as any)?.notebook ?? body } : body;
          const response = await attack(
            {
              method: 'POST',
              path,
              headers: { ...headersFor(), 'content-type': 'application/json' },
              body: json(inspect),
            },
            restRejected,
          );
          if (kind === 'rest-upload' && response.status === 201) accepted.uploads++;
          return;
        }
        const tool = kind === 'mcp-execute' ? 'execute_notebook' : 'inspect_notebook';
        const toolArgs =
          kind === 'mcp-execute'
            ? { ...(args as object), sync_timeout_seconds: 0 }
            : { notebook: (args as any)?.notebook ?? args };
        await attack(rpc('tools/call', { name: tool, arguments: toolArgs }), rpcRejected);
      }),
      fuzzOptions(300),
    );
    await expectHealthy();
  }, 300_000);

  it('answers mutated JSON-RPC messages on /mcp with JSON-RPC errors, never an internal error', async () => {
    const messages = [
      rpcMessage('initialize', {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'fuzz', version: '1' },
      }),
      rpcMessage('ping', {}),
      rpcMessage('tools/list', {}),
      rpcMessage('resources/templates/list', {}),
      rpcMessage('resources/read', { uri: `notebook-jobs://jobs/${seedJob}` }),
      rpcMessage('resources/read', { uri: `notebook-jobs://jobs/${seedJob}/output` }),
      rpcMessage('tasks/get', { taskId: seedJob }),
      rpcMessage('tasks/result', { taskId: seedJob }),
      rpcMessage('tasks/list', {}),
      rpcMessage('tasks/cancel', { taskId: MISSING_JOB }),
      rpcMessage('tools/call', {
        name: 'manage_async_job',
        arguments: { action: 'status', job_id: seedJob, include_logs: true },
      }),
      rpcMessage('tools/call', {
        name: 'manage_async_job',
        arguments: { action: 'logs', job_id: seedJob, limit: 5 },
      }),
      rpcMessage('tools/call', {
        name: 'manage_async_job',
        arguments: { action: 'result', job_id: seedJob },
      }),
      rpcMessage('tools/call', { name: 'manage_async_job', arguments: { action: 'list', limit: 3 } }),
      rpcMessage('tools/call', {
        name: 'inspect_notebook',
        arguments: { notebook: { uri: fileUri('ok.ipynb') } },
      }),
      rpcMessage('notifications/initialized', undefined),
    ];
    const message = fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...messages).chain(mutated) },
      { weight: 1, arbitrary: fc.array(fc.constantFrom(...messages).chain(mutated), { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    );
    await fc.assert(
      fc.asyncProperty(message, async (m) => {
        // Cleanup would legitimately delete the seed job; it has tests of its own.
        fc.pre(!json(m).includes('cleanup'));
        const response = await attack({ ...rpc('', undefined), body: json(m) }, rpcRejected);
        for (const answer of Array.isArray(response.body) ? response.body : [response.body]) {
          if (answer && typeof answer === 'object' && 'error' in answer) {
            expect(answer.error.code, json(answer)).not.toBe(-32603);
          }
        }
      }),
      fuzzOptions(400),
    );
    await expectHealthy();
  }, 300_000);

  it('takes bytes only at the upload URL it signed, and a submitted upload is read as a notebook or refused', async () => {
    const notebook = json(makeNotebook([codeCell('x = 1', ['parameters'])]));
    const bodies = fc.oneof(
      fc.constant(notebook),
      mutated(JSON.parse(notebook)).map(json),
      fc.uint8Array({ maxLength: 256 }).map((bytes) => Buffer.from(bytes)),
      fc.constantFrom('', 'null', '[]', '{}', '\uFEFF{}', notebook.slice(0, 20)),
    );
    const forge = fc.oneof(
      fc.constant((token: string) => token.slice(0, -1)),
      fc.constant((token: string) => `${token}a`),
      fc.constant((token: string) => token.toUpperCase()),
      fc.constant((token: string) => `${token}/..`),
      fc.constant((token: string) => `..%2F${token}`),
      fc.constant((token: string) => `${token}%0a`),
      hostileText.map((text) => () => inPath(text)),
    );
    await fc.assert(
      fc.asyncProperty(bodies, forge, async (body, forged) => {
        const slot = await svc.request('POST', '/v1/uploads', { name: 'up.ipynb' });
        expect(slot.status).toBe(201);
        const path = new URL(slot.body.upload_url).pathname;
        const token = path.slice('/v1/uploads/'.length);
        const headers = { 'content-type': 'application/x-ipynb+json' };
        const forgedPath = `/v1/uploads/${forged(token)}`;
        if (forgedPath !== path) {
          const response = await attack(
            { method: 'PUT', path: forgedPath, headers, body: notebook },
            restRejected,
          );
          expect(response.status, response.text).toBeGreaterThanOrEqual(400);
        }
        // Like a presigned S3 PUT, the URL takes any bytes until it expires; reading them is the submit's job.
        const put = await attack({ method: 'PUT', path, headers, body }, restRejected);
        if (body.length === 0) {
          expect(put.status, put.text).toBe(400);
          return;
        }
        expect(put.status, put.text).toBe(200);
        expect(put.body.notebook_uri).toBe(slot.body.notebook_uri);
        expect(put.body.notebook_uri).toContain('/uploads/local/');
        accepted.uploads++;
        const inspect = await attack(
          {
            method: 'POST',
            path: '/v1/notebooks/inspect',
            headers: { ...headersFor(), 'content-type': 'application/json' },
            body: json({ notebook: { uri: put.body.notebook_uri } }),
          },
          restRejected,
        );
        if (body === notebook) expect(inspect.status, inspect.text).toBe(200);
      }),
      fuzzOptions(80),
    );
    await expectHealthy();
  }, 300_000);

  it('got some mutated requests accepted, so the accept path was exercised too', () => {
    // Rejections alone would also pass the properties above; this says the fuzzer reached past validation.
    expect(accepted.jobs).toBeGreaterThan(0);
    expect(accepted.uploads).toBeGreaterThan(0);
    console.log(`fuzz: ${sent} requests, ${accepted.jobs} jobs and ${accepted.uploads} uploads accepted`);
  });
});

function headersFor(): Record<string, string> {
  return { authorization: `Bearer ${TOKEN}` };
}

function rpcMessage(method: string, params: unknown): Record<string, unknown> {
  return {
    jsonrpc: '2.0',
    ...(method.startsWith('notifications/') ? {} : { id: 1 }),
    method,
    ...(params === undefined ? {} : { params }),
  };
}

function rpc(method: string, params: unknown): FuzzRequest {
  return {
    method: 'POST',
    path: '/mcp',
    headers: { ...MCP_HEADERS, ...headersFor() },
    body: json(rpcMessage(method, params)),
  };
}

function isValidCleanup(body: string | Buffer | undefined): boolean {
  try {
    return CleanupRequestSchema.safeParse(JSON.parse(String(body))).success;
  } catch {
    return false;
  }
}
