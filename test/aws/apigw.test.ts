/**
 * Translation between API Gateway REST proxy events (fixtures in the documented shape) and the
 * routes' ApiRequest/ApiResponse and the web Request/Response the MCP transport uses.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import {
  authOf,
  fromWebResponse,
  requiredScope,
  routePath,
  toApiRequest,
  toProxyResult,
  toWebRequest,
} from '../../lambda/http/apigw.ts';
import { fixture } from './aws-harness.ts';

const post = () => fixture<APIGatewayProxyEvent>('apigw-post-jobs-base64.json');
const get = () => fixture<APIGatewayProxyEvent>('apigw-get-proxy.json');

describe('toApiRequest', () => {
  it('decodes the base64 body and lower-cases header names', () => {
    const event = post();

    const request = toApiRequest(event, 'acme');

    expect(request.method).toBe('POST');
    expect(request.path).toBe('/v1/jobs');
    expect(request.tenant).toBe('acme');
    expect(request.query).toEqual({});
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['idempotency-key']).toBe('nightly-2026-11-23');
    expect(request.headers['Content-Type']).toBeUndefined();
    const body = JSON.parse(request.body?.toString('utf8') ?? '');
    expect(body.notebook.name).toBe('hello.ipynb');
    expect(body.parameters).toEqual({ name: 'Ada' });
  });

  it('takes the last value of a repeated query parameter and joins repeated headers', () => {
    const event = get();
    event.multiValueHeaders.Accept = ['application/json', 'text/plain'];

    const request = toApiRequest(event, 'acme');

    expect(request.path).toBe('/v1/jobs/job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX/logs');
    expect(request.query).toEqual({ limit: '50' });
    expect(request.headers.accept).toBe('application/json, text/plain');
    expect(request.body).toBeNull();
  });

  it('reads a plain (not base64) body as UTF-8', () => {
    const event = post();
    event.body = '{"name":"ünïcode.ipynb"}';
    event.isBase64Encoded = false;
    expect(toApiRequest(event, 'acme').body?.toString('utf8')).toBe('{"name":"ünïcode.ipynb"}');
  });
});

describe('routePath', () => {
  const event = (path: string, resource: string, pathParameters: Record<string, string> | null) =>
    ({ path, resource, pathParameters }) as Pick<
      APIGatewayProxyEvent,
      'path' | 'resource' | 'pathParameters'
    >;

  it('is event.path on the execute-api URL (the stage is not in it)', () => {
    expect(routePath(event('/v1/jobs/job_X', '/v1/jobs/{job_id}', { job_id: 'job_X' }))).toBe(
      '/v1/jobs/job_X',
    );
  });

  it("maps the stack's /v1/{proxy+} resource back to the full route", () => {
    expect(routePath(event('/v1/jobs/job_X/logs', '/v1/{proxy+}', { proxy: 'jobs/job_X/logs' }))).toBe(
      '/v1/jobs/job_X/logs',
    );
    expect(routePath(event('/v1/jobs', '/v1/{proxy+}', { proxy: 'jobs' }))).toBe('/v1/jobs');
  });

  it('drops a custom domain base path, with explicit and greedy resources', () => {
    expect(routePath(event('/nbj/v1/jobs/job_X', '/v1/jobs/{job_id}', { job_id: 'job_X' }))).toBe(
      '/v1/jobs/job_X',
    );
    expect(routePath(event('/nbj/v1/jobs/job_X/logs', '/{proxy+}', { proxy: 'v1/jobs/job_X/logs' }))).toBe(
      '/v1/jobs/job_X/logs',
    );
    expect(routePath(event('/nbj/v1/health', '/v1/health', null))).toBe('/v1/health');
    expect(routePath(event('/nbj/v1/jobs/job_X', '/v1/{proxy+}', { proxy: 'jobs/job_X' }))).toBe(
      '/v1/jobs/job_X',
    );
  });

  it('keeps percent-encoding and a trailing slash as sent', () => {
    expect(routePath(event('/v1/jobs/a%2Fb', '/v1/jobs/{job_id}', { job_id: 'a%2Fb' }))).toBe(
      '/v1/jobs/a%2Fb',
    );
    expect(routePath(event('/v1/jobs/', '/v1/jobs', null))).toBe('/v1/jobs/');
  });

  it('falls back to event.path when the resource does not describe it', () => {
    expect(routePath(event('/v1/other', '/v1/jobs/{job_id}', null))).toBe('/v1/other');
  });
});

describe('toProxyResult', () => {
  it('returns text as text, and only real binary as base64', () => {
    const notebook = Buffer.from('{"cells":[],"metadata":{"title":"é"}}');
    expect(
      toProxyResult({ status: 200, headers: { 'content-type': 'application/json' }, body: '{"a":1}' }),
    ).toEqual({
      statusCode: 200,
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
      isBase64Encoded: false,
    });
    expect(
      toProxyResult({ status: 200, headers: { 'content-type': 'application/x-ipynb+json' }, body: notebook }),
    ).toMatchObject({ body: notebook.toString('utf8'), isBase64Encoded: false });
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0x00]);
    expect(
      toProxyResult({ status: 200, headers: { 'content-type': 'application/octet-stream' }, body: bytes }),
    ).toMatchObject({ body: bytes.toString('base64'), isBase64Encoded: true });
    // Declared as text but not UTF-8: still delivered intact.
    expect(
      toProxyResult({ status: 200, headers: { 'content-type': 'text/plain' }, body: bytes }),
    ).toMatchObject({
      body: bytes.toString('base64'),
      isBase64Encoded: true,
    });
  });

  it('keeps a redirect without a body', () => {
    expect(toProxyResult({ status: 302, headers: { location: 'https://example.com/x' }, body: '' })).toEqual({
      statusCode: 302,
      headers: { location: 'https://example.com/x' },
      body: '',
      isBase64Encoded: false,
    });
  });
});

describe('web Request and Response (MCP)', () => {
  it('builds the absolute URL the client used, with the stage, every header and the body', async () => {
    const request = toWebRequest(post());

    expect(request.url).toBe('https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/v1/jobs');
    expect(request.method).toBe('POST');
    expect(request.headers.get('idempotency-key')).toBe('nightly-2026-11-23');
    expect(request.headers.get('content-type')).toBe('application/json');
    expect(JSON.parse(await request.text()).parameters).toEqual({ name: 'Ada' });
  });

  it('keeps repeated query values and sends no body for GET', async () => {
    const request = toWebRequest(get());
    expect(request.url).toBe(
      'https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/v1/jobs/job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX/logs?limit=100&limit=50',
    );
    expect(request.body).toBeNull();
  });

  it('converts a Response: status, headers, text body, cookies', async () => {
    const headers = new Headers({ 'content-type': 'application/json', 'mcp-session-id': 'abc' });
    headers.append('set-cookie', 'a=1');
    headers.append('set-cookie', 'b=2');
    const result = await fromWebResponse(
      new Response('{"jsonrpc":"2.0","id":1,"result":{}}', { status: 200, headers }),
    );

    expect(result).toEqual({
      statusCode: 200,
      headers: { 'content-type': 'application/json', 'mcp-session-id': 'abc' },
      multiValueHeaders: { 'set-cookie': ['a=1', 'b=2'] },
      body: '{"jsonrpc":"2.0","id":1,"result":{}}',
      isBase64Encoded: false,
    });
    expect(await fromWebResponse(new Response(null, { status: 202 }))).toEqual({
      statusCode: 202,
      headers: {},
      body: '',
      isBase64Encoded: false,
    });
  });
});

describe('authOf and scopes', () => {
  it("reads the authorizer's tenant, scopes and token id", () => {
    expect(authOf(post())).toEqual({
      tenant: 'acme',
      scopes: ['read', 'write'],
      token_id: 'tok_3f9a1c0e7b2d4a68',
    });
  });

  it('is null without an authorizer or tenant, and ignores unknown scopes', () => {
    const none = post();
    none.requestContext.authorizer = null;
    expect(authOf(none)).toBeNull();
    const odd = post();
    odd.requestContext.authorizer = { principalId: 'acme', tenant: 'acme', scopes: 'admin,read' };
    expect(authOf(odd)).toEqual({ tenant: 'acme', scopes: ['read'], token_id: null });
  });

  it('needs read for GET and HEAD, write for everything else', () => {
    expect(['GET', 'HEAD', 'POST', 'DELETE', 'PUT'].map(requiredScope)).toEqual([
      'read',
      'read',
      'write',
      'write',
      'write',
    ]);
  });
});
