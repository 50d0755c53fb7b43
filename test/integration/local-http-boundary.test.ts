/**
 * The local server's HTTP boundary, attacked the way a web page, a rebinding domain or a careless
 * client would: foreign Host and Origin headers, cross-site text/plain bodies, missing tokens, file
 * names that cannot go into a header raw, broken percent-encoding, deeply nested JSON, oversized
 * headers. Each answer is a clear 4xx, and the server is still up afterwards.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAccessConfig } from '../../bin/serve.ts';
import { checkJsonDepth, JsonTooDeepError, MAX_JSON_DEPTH, parseJsonText } from '../../lambda/core/json.ts';
import { contentDisposition } from '../../lambda/http/routes.ts';
import { runCli } from '../helpers/cli.ts';
import { rawRequest as raw, startTestService, type TestService } from '../helpers/local-service.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';

const TOKEN = 'local-secret-token-123';
const MCP_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2025-11-25',
};
const LIST_TOOLS = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });

let svc: TestService;
let guarded: TestService;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'notebook-jobs-boundary-'));
  [svc, guarded] = await Promise.all([
    startTestService(),
    startTestService({
      token: TOKEN,
      allowedHosts: ['nbj.internal'],
      allowedOrigins: ['http://localhost:6274'],
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([svc?.close(), guarded?.close()]);
  rmSync(scratch, { recursive: true, force: true });
});

const own = (server: TestService) => `127.0.0.1:${server.server.port}`;

/** A notebook that leaves a file behind when it runs. */
function markerRequest(marker: string) {
  return JSON.stringify({
    notebook: {
      name: 'csrf.ipynb',
      content: makeNotebook([codeCell(`open(${JSON.stringify(marker)}, "w").write("ran")`)]),
    },
    wait_seconds: 20,
  });
}

async function jobNames(server: TestService): Promise<string[]> {
  const list = await server.request('GET', '/v1/jobs?limit=100');
  expect(list.status).toBe(200);
  return list.body.jobs.map((job: { notebook: { name: string } }) => job.notebook.name);
}

describe('cross-site requests and DNS rebinding', () => {
  it('runs nothing for a cross-site text/plain POST, with a foreign Host or only a foreign Origin', async () => {
    const marker = join(scratch, 'csrf-ran');
    const rebinding = await raw(
      svc,
      'POST',
      '/v1/jobs',
      {
        host: `evil.example:${svc.server.port}`,
        origin: 'http://evil.example',
        'content-type': 'text/plain',
      },
      markerRequest(marker),
    );
    expect(rebinding.status).toBe(403);
    const crossSite = await raw(
      svc,
      'POST',
      '/v1/jobs',
      { host: own(svc), origin: 'http://evil.example', 'content-type': 'text/plain;charset=UTF-8' },
      markerRequest(marker),
    );
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.error.details).toMatchObject({ header: 'origin', received: 'http://evil.example' });

    expect(await jobNames(svc)).not.toContain('csrf.ipynb');
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a foreign Host on REST with 403 naming the header and the allowed names', async () => {
    const response = await raw(svc, 'GET', '/v1/jobs', { host: `evil.example:${svc.server.port}` });
    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('forbidden');
    expect(response.body.error.message).toMatch(/Host header "evil\.example:\d+" is not this server's/);
    expect(response.body.error.details).toMatchObject({ header: 'host' });
    expect(response.body.error.details.allowed).toContain(own(svc));
    // Another port on a loopback name is another server.
    const otherPort = await raw(svc, 'GET', '/v1/health', { host: `127.0.0.1:${svc.server.port + 1}` });
    expect(otherPort.status).toBe(403);
  });

  it('refuses a foreign Host on /mcp with a JSON-RPC error naming the header', async () => {
    const response = await raw(
      svc,
      'POST',
      '/mcp',
      { ...MCP_HEADERS, host: `evil.example:${svc.server.port}` },
      LIST_TOOLS,
    );
    expect(response.status).toBe(403);
    expect(response.body.jsonrpc).toBe('2.0');
    expect(response.body.error.message).toMatch(/Host header/);
  });

  it.each(['127.0.0.1', 'localhost', 'LocalHost', '[::1]'])('accepts Host %s:<port>', async (name) => {
    const host = `${name}:${svc.server.port}`;
    expect((await raw(svc, 'GET', '/v1/health', { host })).status).toBe(200);
    expect((await raw(svc, 'GET', '/v1/jobs', { host })).status).toBe(200);
    expect((await raw(svc, 'POST', '/mcp', { ...MCP_HEADERS, host }, LIST_TOOLS)).status).toBe(200);
  });

  it('answers a malformed Host with 400, on REST and on /mcp', async () => {
    for (const host of ['exa mple:1', '[::1', 'a:b:c']) {
      const rest = await raw(svc, 'GET', '/v1/jobs', { host });
      expect(rest.status, host).toBe(400);
      expect(rest.body.error.details.header).toBe('host');
      const mcp = await raw(svc, 'POST', '/mcp', { ...MCP_HEADERS, host }, LIST_TOOLS);
      expect(mcp.status, host).toBe(400);
      expect(mcp.body.error.message).toMatch(/Host header/);
    }
  });

  it('refuses a foreign Origin on a REST POST with 403, and takes its own', async () => {
    const body = { notebook: { content: makeNotebook([codeCell('x = 1')]) } };
    const foreign = await svc.request('POST', '/v1/notebooks/inspect', body, {
      origin: 'http://evil.example',
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.message).toMatch(/Origin header refused/);
    expect(foreign.body.error.details.allowed).toContain(svc.server.url);
    const opaque = await svc.request('POST', '/v1/notebooks/inspect', body, { origin: 'null' });
    expect(opaque.status).toBe(403);
    const ownOrigin = await svc.request('POST', '/v1/notebooks/inspect', body, { origin: svc.server.url });
    expect(ownOrigin.status).toBe(200);
  });

  it('answers 415 for a JSON body not typed application/json, naming the header and the type', async () => {
    const body = JSON.stringify({ notebook: { content: makeNotebook([codeCell('x = 1')]) } });
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
    ]) {
      const response = await raw(svc, 'POST', '/v1/notebooks/inspect', { 'content-type': type }, body);
      expect(response.status, type).toBe(415);
      expect(response.body.error.code).toBe('unsupported_media_type');
      expect(response.body.error.message).toMatch(/Content-Type header .* send application\/json/);
    }
    const untyped = await raw(svc, 'POST', '/v1/notebooks/inspect', {}, body);
    expect(untyped.status).toBe(415);
    const mcp = await raw(svc, 'POST', '/mcp', { ...MCP_HEADERS, 'content-type': 'text/plain' }, LIST_TOOLS);
    expect(mcp.status).toBe(415);
    expect(mcp.body.error.message).toMatch(/Content-Type/);
    const typed = await raw(
      svc,
      'POST',
      '/v1/notebooks/inspect',
      { 'content-type': 'application/json; charset=utf-8' },
      body,
    );
    expect(typed.status).toBe(200);
  });
});

describe('a server started with a token', () => {
  const bearer = { authorization: `Bearer ${TOKEN}` };

  it('requires it on REST (401 with WWW-Authenticate) but not on /v1/health', async () => {
    const missing = await raw(guarded, 'GET', '/v1/jobs', {});
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    expect(missing.body.error.message).toMatch(/Authorization/);
    const wrong = await raw(guarded, 'GET', '/v1/jobs', { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect((await raw(guarded, 'GET', '/v1/jobs', bearer)).status).toBe(200);
    expect((await raw(guarded, 'GET', '/openapi.json', {})).status).toBe(401);
    expect((await raw(guarded, 'GET', '/v1/health', {})).status).toBe(200);
    // Liveness keeps the Host check.
    expect((await raw(guarded, 'GET', '/v1/health', { host: 'evil.example' })).status).toBe(403);
  });

  it('requires it on /mcp', async () => {
    const missing = await raw(guarded, 'POST', '/mcp', MCP_HEADERS, LIST_TOOLS);
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe(-32001);
    expect((await raw(guarded, 'POST', '/mcp', { ...MCP_HEADERS, ...bearer }, LIST_TOOLS)).status).toBe(200);
  });

  it('lets the signed upload URL through without it', async () => {
    const upload = await raw(
      guarded,
      'POST',
      '/v1/uploads',
      { ...bearer, 'content-type': 'application/json' },
      '{"name":"up.ipynb"}',
    );
    expect(upload.status).toBe(201);
    const put = await fetch(upload.body.upload_url, {
      method: 'PUT',
      headers: { 'content-type': 'application/x-ipynb+json' },
      body: JSON.stringify(makeNotebook([codeCell('x = 1')])),
    });
    expect(put.status).toBe(200);
    const form = await fetch(upload.body.upload_url, {
      method: 'PUT',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: '{}',
    });
    expect(form.status).toBe(415);
  });

  it('takes the hosts and origins the operator added', async () => {
    const host = `nbj.internal:${guarded.server.port}`;
    expect((await raw(guarded, 'GET', '/v1/jobs', { ...bearer, host })).status).toBe(200);
    const origin = await raw(guarded, 'GET', '/v1/jobs', { ...bearer, origin: 'http://localhost:6274' });
    expect(origin.status).toBe(200);
    expect(
      (await raw(guarded, 'GET', '/v1/jobs', { ...bearer, origin: 'http://localhost:6275' })).status,
    ).toBe(403);
  });

  it('is sent by the CLI from NOTEBOOK_JOBS_TOKEN', async () => {
    const url = guarded.server.url;
    const withToken = await runCli(['list'], { NOTEBOOK_JOBS_URL: url, NOTEBOOK_JOBS_TOKEN: TOKEN });
    expect(withToken.stderr).toBe('');
    expect(withToken.code).toBe(0);
    const without = await runCli(['list'], { NOTEBOOK_JOBS_URL: url, NOTEBOOK_JOBS_TOKEN: '' });
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/401: authentication required/);
  });
});

describe('requests that used to crash the server or answer 500', () => {
  it.each([
    ['报告.ipynb', "filename*=UTF-8''%E6%8A%A5%E5%91%8A.ipynb"],
    ['😀.ipynb', "filename*=UTF-8''%F0%9F%98%80.ipynb"],
  ])('downloads the output of %s with an RFC 6266 Content-Disposition', async (name, encoded) => {
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { name, content: makeNotebook([codeCell('print(1)')]) },
      wait_seconds: 20,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const job = await svc.waitFor(created.body.job_id, (j) => j.status === 'completed');
    const output = await svc.request('GET', `/v1/jobs/${job.job_id}/output`);
    expect(output.status).toBe(200);
    const disposition = output.headers.get('content-disposition') as string;
    expect(disposition).toMatch(/^attachment; filename="_+\.ipynb"; /);
    expect(disposition.endsWith(encoded)).toBe(true);
    expect((await svc.request('GET', '/v1/health')).status).toBe(200);
  });

  it('answers 400 for a malformed percent-encoding in a path segment', async () => {
    for (const path of ['/v1/jobs/%FF', '/v1/jobs/%E0%A4%A/logs', '/v1/jobs/%/cancel']) {
      const method = path.endsWith('cancel') ? 'POST' : 'GET';
      const response = await svc.request(method, path);
      expect(response.status, path).toBe(400);
      expect(response.body.error.message).toMatch(/percent-encoding/);
    }
  });

  it('answers 400 quickly for JSON nested 5,000 levels deep, on REST and on /mcp', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const body = `{"notebook":{"name":"deep.ipynb","content":{"nbformat":4,"nbformat_minor":5,"metadata":{"x":${deep}},"cells":[]}}}`;
    const started = Date.now();
    const rest = await svc.request('POST', '/v1/jobs', body);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(rest.status).toBe(400);
    expect(rest.body.error.message).toMatch(new RegExp(`more than ${MAX_JSON_DEPTH} levels deep`));
    const rpc = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"inspect_notebook","arguments":{"x":${deep}}}}`;
    const mcp = await raw(svc, 'POST', '/mcp', MCP_HEADERS, rpc);
    expect(mcp.status).toBe(400);
    expect(mcp.body.error.code).toBe(-32600);
    expect((await svc.request('GET', '/v1/health')).status).toBe(200);
  });

  it('caps the Idempotency-Key header as the body field is capped (1 to 128 characters)', async () => {
    const body = { notebook: { content: makeNotebook([codeCell('x = 1')]) } };
    const long = await svc.request('POST', '/v1/jobs', body, { 'idempotency-key': 'k'.repeat(129) });
    expect(long.status).toBe(400);
    expect(long.body.error.message).toMatch(/Idempotency-Key header/);
    expect(long.body.error.details).toMatchObject({ header: 'idempotency-key', max_length: 128 });
    const fits = await svc.request('POST', '/v1/jobs', body, { 'idempotency-key': 'k'.repeat(128) });
    expect(fits.status).toBe(201);
  });

  it('answers an empty JSON-RPC batch with 400 and -32600', async () => {
    const response = await raw(svc, 'POST', '/mcp', MCP_HEADERS, '[]');
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32600 }, id: null });
  });

  it('answers MCP requests whose params are the wrong shape with -32602, not an internal error', async () => {
    // The SDK parses params inside its handler and answers a failure as -32603; these were that.
    for (const [params, problem] of [
      [{ name: 5 }, /params\.name/],
      [{ name: 'inspect_notebook', arguments: [1] }, /params\.arguments/],
      [undefined, /params/],
    ] as const) {
      const message = { jsonrpc: '2.0', id: 7, method: 'tools/call', ...(params ? { params } : {}) };
      const response = await raw(svc, 'POST', '/mcp', MCP_HEADERS, JSON.stringify(message));
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32602 } });
      expect(response.body.error.message).toMatch(problem);
    }
    for (const method of ['resources/read', 'tasks/get']) {
      const params = method === 'tasks/get' ? { taskId: 7 } : { uri: '' };
      const body = JSON.stringify({ jsonrpc: '2.0', id: 'a', method, params });
      const response = await raw(svc, 'POST', '/mcp', MCP_HEADERS, body);
      expect(response.body, method).toMatchObject({ id: 'a', error: { code: -32602 } });
    }
    const notRpc = await raw(
      svc,
      'POST',
      '/mcp',
      MCP_HEADERS,
      JSON.stringify({ jsonrpc: '2.0', id: {}, method: 'ping' }),
    );
    expect(notRpc.status).toBe(400);
    expect(notRpc.body).toMatchObject({ error: { code: -32600 }, id: null });
    const batch = JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'ping' }, 5]);
    const badBatch = await raw(svc, 'POST', '/mcp', MCP_HEADERS, batch);
    expect(badBatch.status).toBe(400);
    expect(badBatch.body.error.message).toMatch(/message 1 of the batch/);
  });

  it('refuses a "__proto__" member, which JavaScript would drop without a word, and a "constructor" tag is kept', async () => {
    const notebook = JSON.stringify(makeNotebook([codeCell('x = 1', ['parameters'])]));
    for (const [extra, at] of <const>[
      ['"tags":{"__proto__":"a"}', 'tags'],
      ['"parameters":{"__proto__":1},"allow_unknown_parameters":true', 'parameters'],
      ['"parameters":{"x":{"a":{"__proto__":{}}}}', 'parameters.x.a'],
    ]) {
      const response = await svc.request('POST', '/v1/jobs', `{"notebook":{"content":${notebook}},${extra}}`);
      expect(response.status, extra).toBe(400);
      expect(response.body.error.message).toMatch(
        new RegExp(`"__proto__" \\(at ${at.replace('.', '\\.')}\\)`),
      );
    }
    const kept = await svc.request(
      'POST',
      '/v1/jobs',
      `{"notebook":{"content":${notebook}},"tags":{"constructor":"x"}}`,
    );
    expect(kept.status, JSON.stringify(kept.body)).toBe(201);
    expect(kept.body.tags).toEqual({ constructor: 'x' });
  });

  it('answers malformed HTTP with a 4xx and keeps serving', async () => {
    const absolute = await raw(svc, 'GET', 'http://evil.example/v1/jobs', { host: own(svc) });
    expect(absolute.status).toBe(400);
    const garbage = await new Promise<string>((resolve, reject) => {
      let text = '';
      const socket = connect(svc.server.port, '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      socket.on('end', () => resolve(text)).on('error', reject);
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(garbage).toMatch(/"code":"invalid_request"/);
    expect((await svc.request('GET', '/v1/health')).status).toBe(200);
  });
});

describe('the pieces', () => {
  it('writes any file name into Content-Disposition safely', () => {
    expect(contentDisposition('attachment', 'a "b"\\c.ipynb')).toBe(
      `attachment; filename="a _b__c.ipynb"; filename*=UTF-8''a%20%22b%22%5Cc.ipynb`,
    );
    expect(contentDisposition('attachment', "x\r\ny'(1)*.ipynb")).toBe(
      `attachment; filename="x__y'(1)*.ipynb"; filename*=UTF-8''x%0D%0Ay%27%281%29%2A.ipynb`,
    );
    expect(contentDisposition('inline', '\ud800.html')).toBe(
      `inline; filename="_.html"; filename*=UTF-8''%EF%BF%BD.html`,
    );
  });

  it('measures JSON depth outside strings only', () => {
    const nested = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(() => checkJsonDepth(nested(MAX_JSON_DEPTH), 'body')).not.toThrow();
    expect(() => checkJsonDepth(nested(MAX_JSON_DEPTH + 1), 'body')).toThrow(JsonTooDeepError);
    const brackets = JSON.stringify({ s: `${'['.repeat(500)}\\"{{{` });
    expect(parseJsonText(brackets, 'body')).toEqual(JSON.parse(brackets));
    expect(() => parseJsonText('{"a":', 'body')).toThrow(/body is not valid JSON/);
    // "__proto__" spelt with escapes is the same key.
    expect(() => parseJsonText('{"a":[{"\\u005f_pr\\u006fto__":1}]}', 'body')).toThrow(
      /"__proto__" \(at a\.0\)/,
    );
    expect(parseJsonText('{"a":"\\u00e9 __proto"}', 'body')).toEqual({ a: 'é __proto' });
  });

  it('reads the token, hosts and origins, old names with a warning', () => {
    const warnings: string[] = [];
    const config = readAccessConfig(
      {
        NOTEBOOK_JOBS_MCP_TOKEN: 'old',
        NOTEBOOK_JOBS_ALLOWED_ORIGINS: 'http://a.example, http://b.example',
        NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS: 'http://c.example',
        NOTEBOOK_JOBS_ALLOWED_HOSTS: 'ignored.example',
      },
      'box.lan,box.lan:9000',
      (message) => warnings.push(message),
    );
    expect(config).toEqual({
      token: 'old',
      allowedHosts: ['box.lan', 'box.lan:9000'],
      allowedOrigins: ['http://a.example', 'http://b.example', 'http://c.example'],
    });
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).toMatch(/NOTEBOOK_JOBS_MCP_TOKEN is deprecated.*NOTEBOOK_JOBS_TOKEN/);
    expect(warnings.join('\n')).toMatch(/NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS is deprecated/);
    const both = readAccessConfig(
      { NOTEBOOK_JOBS_TOKEN: 'new', NOTEBOOK_JOBS_MCP_TOKEN: 'old' },
      undefined,
      () => {},
    );
    expect(both.token).toBe('new');
  });
});
