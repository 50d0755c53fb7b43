/**
 * The mcp Lambda driven by REST proxy events for POST /mcp (base64 JSON-RPC bodies, as API Gateway
 * sends them), with the table in dynalite and the AWS services mocked: the same endpoint code as
 * the local server, reached through event -> Request -> transport -> Response -> the Lambda
 * response stream (the /mcp integration streams: responseTransferMode STREAM).
 */
import { Writable } from 'node:stream';
import { RunTaskCommand } from '@aws-sdk/client-ecs';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  BUCKET,
  dynaliteForThisFile,
  coldStart,
  handlerLogger,
  createBody,
  expectedRunTask,
  mockAws,
  proxyEvent,
  stackEnv,
  withTextBody,
} from './aws-harness.ts';
import { sizedBody } from '../helpers/sized-body.ts';
import { MAX_INLINE_NOTEBOOK_BYTES, MAX_REQUEST_BODY_BYTES } from '../../lambda/core/settings.ts';
import type { LambdaStreamingRuntime } from '../../lambda/handlers/mcp.ts';

type StreamingHandler = (event: APIGatewayProxyEvent, stream: Writable, context?: Context) => Promise<void>;

/**
 * The Lambda Node.js runtime's streaming globals, as documented for API Gateway's streaming
 * Lambda proxy format: the handler gets a response stream; HttpResponseStream.from writes the
 * metadata JSON (statusCode, headers, cookies) and a delimiter of 8 NUL bytes, then the payload
 * follows as written.
 */
const DELIMITER = Buffer.alloc(8);
const fakeRuntime: LambdaStreamingRuntime = {
  streamifyResponse: (handler) => handler,
  HttpResponseStream: {
    from(stream, prelude) {
      stream.write(JSON.stringify(prelude));
      stream.write(DELIMITER);
      return stream;
    },
  },
};
(globalThis as { awslambda?: LambdaStreamingRuntime }).awslambda = fakeRuntime;

interface Streamed extends APIGatewayProxyResult {
  /** The payload as it was written, chunk by chunk, with when (performance.now()). */
  writes: { at: number; text: string }[];
}

/**
 * Invokes the streaming handler as API Gateway does, and reads back what it wrote: the prelude's
 * status and headers, and the payload. `onWrite` sees each payload write (and may close the stream).
 */
async function invoke(
  handler: StreamingHandler,
  event: APIGatewayProxyEvent,
  onWrite?: (text: string, stream: Writable) => void,
): Promise<Streamed> {
  const raw: Buffer[] = [];
  const writes: Streamed['writes'] = [];
  let preludeDone = false;
  const stream: Writable = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(Buffer.from(chunk));
      if (preludeDone) {
        const text = Buffer.from(chunk).toString('utf8');
        writes.push({ at: performance.now(), text });
        onWrite?.(text, stream);
      } else if (Buffer.from(chunk).equals(DELIMITER)) preludeDone = true;
      done();
    },
  });
  stream.on('error', () => undefined);
  await handler(event, stream);
  const all = Buffer.concat(raw);
  const at = all.indexOf(DELIMITER);
  expect(at).toBeGreaterThan(0);
  const prelude = JSON.parse(all.subarray(0, at).toString('utf8')) as {
    statusCode: number;
    headers: Record<string, string>;
  };
  return {
    statusCode: prelude.statusCode,
    headers: prelude.headers,
    body: all.subarray(at + DELIMITER.length).toString('utf8'),
    isBase64Encoded: false,
    writes,
  };
}

const db = dynaliteForThisFile();
const aws = mockAws();
let streamingHandler: StreamingHandler;
const mcp = (event: APIGatewayProxyEvent) => invoke(streamingHandler, event);

beforeEach(async () => {
  aws.reset();
  const table = await db().newTable();
  ({ handler: streamingHandler } = await coldStart<{ handler: StreamingHandler }>(
    'lambda/handlers/mcp.ts',
    stackEnv(table, db().endpoint, { NOTEBOOK_JOBS_ALLOWED_ORIGINS: 'https://console.example.com' }),
  ));
});

let nextId = 1;

/** A POST /mcp proxy event carrying one JSON-RPC request as a base64 body. */
function rpcEvent(
  method: string,
  params: unknown,
  options: { tenant?: string | null; scopes?: string; headers?: Record<string, string> } = {},
): APIGatewayProxyEvent {
  const event = proxyEvent({
    method: 'POST',
    path: '/mcp',
    body: { jsonrpc: '2.0', id: nextId++, method, params },
    tenant: options.tenant,
    scopes: options.scopes,
  });
  const headers: Record<string, string> = {
    Accept: 'application/json, text/event-stream',
    'Content-Type': 'application/json',
    'MCP-Protocol-Version': '2025-11-25',
    ...options.headers,
  };
  for (const [name, value] of Object.entries(headers)) {
    event.headers[name] = value;
    event.multiValueHeaders[name] = [value];
  }
  return event;
}

function result(response: APIGatewayProxyResult): any {
  expect(response.statusCode, response.body).toBe(200);
  expect(response.isBase64Encoded).toBe(false);
  const message = JSON.parse(response.body);
  expect(message.error).toBeUndefined();
  return message.result;
}

describe('POST /mcp through the Lambda', () => {
  it('initializes, lists the tools, and submits a job that launches exactly one Fargate task', async () => {
    const init = result(
      await mcp(
        rpcEvent('initialize', {
          protocolVersion: '2025-11-25',
          capabilities: {},
          clientInfo: { name: 'lambda-test', version: '1' },
        }),
      ),
    );
    expect(init.capabilities.tasks.requests.tools.call).toEqual({});
    const tools = result(await mcp(rpcEvent('tools/list', {})));
    expect(tools.tools.map((t: { name: string }) => t.name).sort()).toEqual([
      'execute_notebook',
      'inspect_notebook',
      'manage_async_job',
    ]);

    const { notebook, parameters } = createBody() as ReturnType<typeof createBody> & {
      parameters: Record<string, unknown>;
    };
    const call = result(
      await mcp(
        rpcEvent('tools/call', {
          name: 'execute_notebook',
          arguments: { notebook, parameters, sync_timeout_seconds: 0 },
        }),
      ),
    );
    expect(call.isError).toBeUndefined();
    const { job, done, next } = call.structuredContent;
    expect(done).toBe(false);
    expect(job).toMatchObject({ status: 'running', stage: 'provisioning' });
    expect(next.arguments).toEqual({ action: 'status', job_id: job.job_id });
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job.job_id, 'acme'),
    ]);

    // Another invocation (any instance) reads the same job as a task, bound to the same tenant.
    const task = result(await mcp(rpcEvent('tasks/get', { taskId: job.job_id })));
    expect(task).toMatchObject({ taskId: job.job_id, status: 'working' });
    const foreign = await mcp(rpcEvent('tasks/get', { taskId: job.job_id }, { tenant: 'globex' }));
    expect(JSON.parse(foreign.body).error.message).toMatch(/not found/i);
  });

  it('serves 2026-07-28: a task-capable execute_notebook is a task any invocation of the tenant answers, as JSON', async () => {
    const modern = (method: string, params: Record<string, unknown>, tenant?: string) => {
      const name = (params.name ?? params.taskId) as string | undefined;
      const meta = {
        'io.modelcontextprotocol/protocolVersion': '2026-07-28',
        'io.modelcontextprotocol/clientInfo': { name: 'lambda-test', version: '1' },
        'io.modelcontextprotocol/clientCapabilities': { extensions: { 'io.modelcontextprotocol/tasks': {} } },
      };
      return mcp(
        rpcEvent(
          method,
          { ...params, _meta: { ...meta, ...(params._meta as object) } },
          {
            tenant,
            headers: {
              'MCP-Protocol-Version': '2026-07-28',
              'Mcp-Method': method,
              ...(name !== undefined && { 'Mcp-Name': name }),
            },
          },
        ),
      );
    };
    const discovered = result(await modern('server/discover', {}));
    expect(discovered.capabilities.extensions).toEqual({ 'io.modelcontextprotocol/tasks': {} });

    const { notebook } = createBody();
    // A progressToken changes nothing here: behind API Gateway the answer stays JSON.
    const response = await modern('tools/call', {
      name: 'execute_notebook',
      arguments: { notebook },
      _meta: { progressToken: 'p1' },
    });
    expect(response.headers?.['content-type'] ?? response.multiValueHeaders?.['content-type']?.[0]).toMatch(
      /application\/json/,
    );
    const task = result(response);
    expect(task).toMatchObject({ resultType: 'task', status: 'working' });
    // The stack's retention (days) is the ttl after the job ends; it has not ended yet.
    expect(task.ttlMs).toBeGreaterThanOrEqual(30 * 24 * 3600 * 1000);
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(task.taskId, 'acme'),
    ]);

    const got = result(await modern('tasks/get', { taskId: task.taskId }));
    expect(got).toMatchObject({ taskId: task.taskId, status: 'working', resultType: 'complete' });
    expect(got.statusMessage).toMatch(/^running \(provisioning\)/);
    const foreign = JSON.parse((await modern('tasks/get', { taskId: task.taskId }, 'globex')).body);
    expect(foreign.error).toMatchObject({ code: -32602, message: `no task ${task.taskId}` });
  });

  it("inspect_notebook and execute_notebook refuse another tenant's notebook URI", async () => {
    const uri = `s3://${BUCKET}/outputs/globex/job_01KAB3C4D5E6F7G8H9JKMNPQRS/report.ipynb`;
    aws.objects.set(uri.slice(5), Buffer.from(JSON.stringify(createBody().notebook.content)));
    for (const name of ['inspect_notebook', 'execute_notebook']) {
      const call = result(await mcp(rpcEvent('tools/call', { name, arguments: { notebook: { uri } } })));
      expect(call.isError, name).toBe(true);
      expect(call.content[0].text).toMatch(/may not be submitted by this tenant/);
    }
    expect(aws.s3.calls()).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });

  it('creates a task for a task-augmented call, without waiting', async () => {
    const { notebook } = createBody();
    const created = result(
      await mcp(
        rpcEvent('tools/call', { name: 'execute_notebook', arguments: { notebook }, task: { ttl: 60_000 } }),
      ),
    );
    expect(created.task).toMatchObject({
      status: 'working',
      ttl: 30 * 24 * 3600 * 1000,
      pollInterval: 10_000,
    });
    expect(aws.ecs.commandCalls(RunTaskCommand)[0]?.args[0].input.startedBy).toBe(created.task.taskId);
  });

  it('streams a waiting call with a progressToken as SSE: progress is written before the result', async () => {
    const { notebook } = createBody();
    const started = performance.now();
    const response = await mcp(
      rpcEvent('tools/call', {
        name: 'execute_notebook',
        arguments: { notebook, sync_timeout_seconds: 1.5 },
        _meta: { progressToken: 'p1' },
      }),
    );
    expect(response.statusCode).toBe(200);
    expect(response.headers?.['content-type']).toMatch(/^text\/event-stream/);
    const events = response.body
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)));
    expect(events[0]).toMatchObject({ method: 'notifications/progress', params: { progressToken: 'p1' } });
    const last = events.at(-1);
    expect(last.result.structuredContent.job.status).toBe('running');
    // Streamed, not buffered: the first progress went out at once, the result about 1.5 s later.
    const progressAt = response.writes.find((w) => w.text.includes('notifications/progress'))?.at ?? Infinity;
    const resultAt = response.writes.find((w) => w.text.includes('"result"'))?.at ?? -Infinity;
    expect(progressAt - started).toBeLessThan(1000);
    expect(resultAt - progressAt).toBeGreaterThan(1000);
  });

  it('stops waiting when the client goes away mid-stream (the job goes on)', async () => {
    const { notebook } = createBody();
    const error = vi.spyOn(await handlerLogger(), 'error');
    const started = performance.now();
    const response = await invoke(
      streamingHandler,
      rpcEvent('tools/call', {
        name: 'execute_notebook',
        arguments: { notebook, sync_timeout_seconds: 20 },
        _meta: { progressToken: 'p2' },
      }),
      (text, stream) => {
        if (text.includes('notifications/progress')) setImmediate(() => stream.destroy());
      },
    );
    expect(performance.now() - started).toBeLessThan(5000);
    expect(response.body).not.toContain('"result"');
    expect(error).toHaveBeenCalledWith(
      'mcp: stopped waiting; the job goes on',
      expect.objectContaining({
        job_id: expect.stringMatching(/^job_\w+$/),
        reason: expect.stringMatching(/closed the stream/),
      }),
    );
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('answers JSON to a call without a progressToken', async () => {
    const { notebook } = createBody();
    const response = await mcp(
      rpcEvent('tools/call', { name: 'execute_notebook', arguments: { notebook, sync_timeout_seconds: 0 } }),
    );
    expect(response.headers?.['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(response.body).result.structuredContent.job.status).toBe('running');
  });

  it('advertises tasks only to a client that negotiates 2025-11-25', async () => {
    const init = (protocolVersion: string) =>
      mcp(
        rpcEvent('initialize', {
          protocolVersion,
          capabilities: {},
          clientInfo: { name: 't', version: '1' },
        }),
      );
    expect(result(await init('2025-06-18')).capabilities).not.toHaveProperty('tasks');
    expect(result(await init('2025-11-25')).capabilities).toHaveProperty('tasks');
  });

  it('answers bad arguments as an isError result and launches nothing', async () => {
    const call = result(
      await mcp(rpcEvent('tools/call', { name: 'manage_async_job', arguments: { action: 'cancel' } })),
    );
    expect(call.isError).toBe(true);
    expect(call.content[0].text).toMatch(/job_id is required for action "cancel"/);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });
});

describe('request size limits through the Lambda', () => {
  const call = (bodyBytes: number) =>
    withTextBody(
      rpcEvent('tools/call', {}),
      sizedBody(MAX_INLINE_NOTEBOOK_BYTES, bodyBytes, (content) => ({
        jsonrpc: '2.0',
        id: nextId++,
        method: 'tools/call',
        params: {
          name: 'execute_notebook',
          arguments: { notebook: { content, name: 'big.ipynb' }, sync_timeout_seconds: 0 },
        },
      })),
    );

  it('runs execute_notebook with a body of exactly the limit (a notebook of exactly the inline limit)', async () => {
    const answer = result(await mcp(call(MAX_REQUEST_BODY_BYTES)));
    expect(answer.isError, JSON.stringify(answer).slice(0, 300)).toBeFalsy();
    expect(answer.structuredContent.job.status).toBe('running');
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('answers one byte over with 413 and a JSON-RPC error pointing at POST /v1/uploads', async () => {
    const response = await mcp(call(MAX_REQUEST_BODY_BYTES + 1));
    expect(response.statusCode).toBe(413);
    const message = JSON.parse(response.body);
    expect(message.error.message).toBe(
      `request body is larger than ${MAX_REQUEST_BODY_BYTES} bytes; send large notebooks by upload (POST /v1/uploads) and pass notebook.uri`,
    );
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });
});

describe('transport hygiene in the Lambda', () => {
  it('answers GET with 405 and Allow: POST', async () => {
    const event = proxyEvent({ method: 'GET', path: '/mcp' });
    const response = await mcp(event);
    expect(response.statusCode).toBe(405);
    expect(response.headers?.allow).toBe('POST');
  });

  it('refuses a foreign Origin and accepts a configured one', async () => {
    const foreign = await mcp(rpcEvent('tools/list', {}, { headers: { Origin: 'https://evil.example' } }));
    expect(foreign.statusCode).toBe(403);
    const allowed = await mcp(
      rpcEvent('tools/list', {}, { headers: { Origin: 'https://console.example.com' } }),
    );
    expect(allowed.statusCode).toBe(200);
  });

  it('still reads the old NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS, warning to rename it', async () => {
    const table = await db().newTable();
    const env = stackEnv(table, db().endpoint, {
      NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS: 'https://old.example.com',
    }) as Record<string, string>;
    delete env.NOTEBOOK_JOBS_ALLOWED_ORIGINS;
    const { handler } = await coldStart<{ handler: StreamingHandler }>('lambda/handlers/mcp.ts', env);
    const warn = vi.spyOn(await handlerLogger(), 'warn').mockImplementation(() => undefined);
    const response = await invoke(
      handler,
      rpcEvent('tools/list', {}, { headers: { Origin: 'https://old.example.com' } }),
    );
    expect(response.statusCode).toBe(200);
    expect(warn).toHaveBeenCalledWith(
      'NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS is deprecated: rename it NOTEBOOK_JOBS_ALLOWED_ORIGINS',
    );
  });

  it('needs the authorizer and a token with both scopes', async () => {
    expect((await mcp(rpcEvent('tools/list', {}, { tenant: null }))).statusCode).toBe(401);
    const readOnly = await mcp(rpcEvent('tools/list', {}, { scopes: 'read' }));
    expect(readOnly.statusCode).toBe(403);
    expect(JSON.parse(readOnly.body).error.message).toMatch(/read and write scopes/);
  });
});
