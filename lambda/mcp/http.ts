/**
 * The MCP endpoint over streamable HTTP, stateless: every POST gets a new server and transport,
 * and JSON responses. Web-standard Request in, Response out, so the local server and the Lambda
 * handler share this one code path. Transport hygiene happens here, before any JSON-RPC:
 * POST only (405 with Allow: POST), Origin allow-list (403), body size (413), bearer token (401),
 * JSON no deeper than MAX_JSON_DEPTH and not an empty batch (400), each message JSON-RPC 2.0 (400,
 * -32600), and each request's params in the shape its method takes (-32602, which the SDK would
 * answer as an internal error -32603 after its handler's own parse throws).
 * The SDK transport handles MCP-Protocol-Version (400 for versions it does not speak) and Accept.
 *
 * Answers are JSON, except one case: a lone execute_notebook tools/call with a progressToken, from
 * a client that accepts text/event-stream, on an endpoint that can stream (locally, and the Lambda
 * behind API Gateway's streaming integration; see docs/mcp.md). That one is an SSE stream of
 * progress notifications, then the result;
 * a notifications/cancelled for it (another POST, so another server) stops its wait.
 */
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  ClientRequestSchema,
  JSONRPCMessageSchema,
  DEFAULT_NEGOTIATED_PROTOCOL_VERSION,
  LATEST_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js';
import { InvalidRequestError } from '../core/errors.ts';
import { JsonTooDeepError, parseJsonText } from '../core/json.ts';
import { parseRequest } from '../core/schemas.ts';
import type { JobService } from '../core/job-service.ts';
import { createMcpServer, TASK_PROTOCOL_VERSIONS } from './server.ts';
import { handleModernRequest } from './modern.ts';
import { isLegacyRequest } from '@modelcontextprotocol/server';
import type { LogFn } from '../core/logging.ts';

export interface McpEndpoint {
  service: JobService;
  /**
   * Browser origins allowed to call (exact, e.g. "http://localhost:6274"). Requests without an
   * Origin header (desktop and CLI clients) are not affected.
   */
  allowedOrigins: readonly string[];
  maxBodyBytes: number;
  pollIntervalSeconds: number;
  taskTtlMs: number | null;
  maxResourceBytes: number;
  /**
   * Whether a tools/call with a progressToken may be answered as an SSE stream. False where the
   * response would be buffered anyway (a Lambda behind a buffered, non-streaming integration).
   */
  streamProgress: boolean;
  log: LogFn;
}

/** Who is calling: the tenant, or null when the request is not authenticated (answered 401). */
export type McpCaller = { tenant: string } | null;

export async function handleMcpRequest(
  endpoint: McpEndpoint,
  request: Request,
  caller: McpCaller,
): Promise<Response> {
  if (request.method !== 'POST') {
    return rpcError(
      405,
      -32000,
      `${request.method} is not supported: this MCP endpoint is stateless, POST JSON-RPC messages to it`,
      {
        allow: 'POST',
      },
    );
  }
  const origin = request.headers.get('origin');
  if (origin !== null && !endpoint.allowedOrigins.includes(origin)) {
    return rpcError(403, -32000, `origin ${origin} is not allowed to call this MCP endpoint`);
  }
  if (!caller) {
    return rpcError(401, -32001, 'authentication required: send Authorization: Bearer <token>', {
      'www-authenticate': 'Bearer',
    });
  }
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > endpoint.maxBodyBytes) return mcpTooLarge(endpoint.maxBodyBytes);
  const body = Buffer.from(await request.arrayBuffer());
  if (body.length > endpoint.maxBodyBytes) return mcpTooLarge(endpoint.maxBodyBytes);
  let parsedBody: unknown;
  try {
    parsedBody = parseJsonText(body.toString('utf8'), 'the body');
  } catch (error) {
    if (error instanceof JsonTooDeepError) return rpcError(400, -32600, `invalid request: ${error.message}`);
    return rpcError(400, -32700, `parse error: ${(error as Error).message}`);
  }
  // JSON-RPC 2.0: an empty batch is itself an invalid request (the SDK would answer 202).
  if (Array.isArray(parsedBody) && parsedBody.length === 0) {
    return rpcError(400, -32600, 'invalid request: an empty JSON-RPC batch ([]); send at least one message');
  }

  // 2026-07-28 (a request carrying the per-request `_meta` envelope, or naming that version in its
  // header) goes to SDK v2; initialize-era traffic stays here, on SDK v1. A batch is never
  // 2026-07-28 (JSON-RPC batches left MCP in 2025-06-18): batches keep the checks below.
  if (
    !Array.isArray(parsedBody) &&
    !(await isLegacyRequest(request, parsedBody, { maxRequestBodySize: endpoint.maxBodyBytes }))
  ) {
    return handleModernRequest(
      endpoint,
      endpoint,
      { service: endpoint.service, pollIntervalSeconds: endpoint.pollIntervalSeconds, log: endpoint.log },
      request,
      parsedBody,
      caller.tenant,
    );
  }

  const messages: unknown[] = Array.isArray(parsedBody) ? parsedBody : [parsedBody];
  const problems = messages.map(messageProblem);
  const invalid = problems.findIndex((problem) => problem !== null);
  if (invalid >= 0) {
    const problem = problems[invalid] as MessageProblem;
    // A lone request gets its JSON-RPC error under its own id, as the client awaits; a batch, one 400.
    if (!Array.isArray(parsedBody) && problem.id !== null) {
      return Response.json(
        { jsonrpc: '2.0', id: problem.id, error: { code: problem.code, message: problem.message } },
        { status: 200 },
      );
    }
    const where = Array.isArray(parsedBody) ? `message ${invalid} of the batch: ` : '';
    return rpcError(400, problem.code === -32602 ? -32602 : -32600, `${where}${problem.message}`);
  }

  for (const message of messages) stopCancelledWait(endpoint, caller.tenant, message);
  const streamed = endpoint.streamProgress ? streamedCall(parsedBody, request.headers.get('accept')) : null;

  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: streamed === null,
  });
  const stop = new AbortController();
  // Runs once, also from stream callbacks nothing awaits: it never rejects.
  const finish = once(async () => {
    if (streamed) unregisterWait(endpoint, caller.tenant, streamed.id, stop);
    try {
      await transport.close();
      await server.close();
    } catch (error) {
      endpoint.log("mcp: closing a request's server failed", { tenant: caller.tenant, error });
    }
  });
  const server = createMcpServer(
    {
      service: endpoint.service,
      tenant: caller.tenant,
      pollIntervalSeconds: endpoint.pollIntervalSeconds,
      log: endpoint.log,
    },
    {
      taskTtlMs: endpoint.taskTtlMs,
      maxResourceBytes: endpoint.maxResourceBytes,
      tasks: tasksFor(messages, request.headers.get('mcp-protocol-version')),
      ...(streamed && {
        stream: { signal: stop.signal, stopReason: () => String(stop.signal.reason ?? 'the stream closed') },
      }),
    },
  );
  withoutDoubledErrorPrefix(transport);
  let streaming = false;
  try {
    await server.connect(transport);
    const response = await transport.handleRequest(request, { parsedBody });
    if (
      !streamed ||
      !response.body ||
      !response.headers.get('content-type')?.startsWith('text/event-stream')
    ) {
      return response;
    }
    streaming = true;
    registerWait(endpoint, caller.tenant, streamed.id, stop);
    // A cancel or a closed stream ends the wait and closes the stream without a response (the
    // client has stopped listening for one); the job goes on.
    stop.signal.addEventListener('abort', () => void finish(), { once: true });
    return untilStreamEnds(response, (reason) => {
      if (!stop.signal.aborted) stop.abort(reason);
      void finish();
    });
  } finally {
    if (!streaming) await finish();
  }
}

/** A streamed call: a lone execute_notebook tools/call with a progressToken, from a client that takes SSE. */
function streamedCall(body: unknown, accept: string | null): { id: string | number } | null {
  if (Array.isArray(body) || !accept?.includes('text/event-stream')) return null;
  const { id, method, params } = body as {
    id?: string | number;
    method?: string;
    params?: { name?: unknown; task?: unknown; _meta?: { progressToken?: unknown } };
  };
  if (method !== 'tools/call' || id === undefined || params?.name !== 'execute_notebook' || params.task)
    return null;
  return params._meta?.progressToken === undefined ? null : { id };
}

/**
 * Whether this request's protocol version has tasks (TASK_PROTOCOL_VERSIONS): an initialize is
 * answered with the version it asks for when supported, else the latest; any other request names
 * its version in MCP-Protocol-Version, and without that header the spec has the server assume
 * 2025-03-26, which has none. A 2025-06-18 client so never sees tasks: not in the capabilities,
 * not as `execution` in tools/list.
 */
function tasksFor(messages: unknown[], header: string | null): boolean {
  const init = messages.find((m) => (m as { method?: unknown }).method === 'initialize') as
    { params: { protocolVersion: string } } | undefined;
  const asked = init?.params.protocolVersion;
  const version =
    asked === undefined
      ? (header ?? DEFAULT_NEGOTIATED_PROTOCOL_VERSION)
      : SUPPORTED_PROTOCOL_VERSIONS.includes(asked)
        ? asked
        : LATEST_PROTOCOL_VERSION;
  return TASK_PROTOCOL_VERSIONS.includes(version);
}

/**
 * The SDK's McpError puts "MCP error <code>: " into its message, and sends that message as the
 * JSON-RPC error's; the client's McpError then adds the prefix again ("MCP error -32602: MCP error
 * -32602: unknown tool"). Errors leave here with the bare message.
 */
function withoutDoubledErrorPrefix(transport: WebStandardStreamableHTTPServerTransport): void {
  const send = transport.send.bind(transport);
  transport.send = (message: JSONRPCMessage, options) => {
    if ('error' in message) {
      const prefix = `MCP error ${message.error.code}: `;
      if (message.error.message.startsWith(prefix)) {
        message = {
          ...message,
          error: { ...message.error, message: message.error.message.slice(prefix.length) },
        };
      }
    }
    return send(message, options);
  };
}

/** The same response, whose body calls `ended` once it has been read to its end or cancelled. */
function untilStreamEnds(response: Response, ended: (reason: string) => void): Response {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = await reader.read();
      if (!chunk.done) return controller.enqueue(chunk.value);
      controller.close();
      ended('the response was sent');
    },
    async cancel(reason) {
      ended('the client closed the stream');
      await reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

// ---- streamed waits that a notifications/cancelled can stop ----
//
// Stateless: the cancel comes in another POST, to another server and transport, so the waits are
// kept here per endpoint, by tenant and JSON-RPC request id. Request ids are only unique per client
// connection, and there is no session to tell two clients of one tenant apart: a cancel stops a
// wait only when exactly one of the tenant's streamed calls has that id (else each still ends at
// its sync_timeout_seconds). In AWS the cancel usually reaches another instance, which does not
// see the wait: there the wait ends at sync_timeout_seconds, or when the client closes the stream.

const waits = new WeakMap<McpEndpoint, Map<string, AbortController[]>>();
const waitKey = (tenant: string, id: string | number) => `${tenant}\n${JSON.stringify(id)}`;

function registerWait(
  endpoint: McpEndpoint,
  tenant: string,
  id: string | number,
  stop: AbortController,
): void {
  let byKey = waits.get(endpoint);
  if (!byKey) waits.set(endpoint, (byKey = new Map()));
  const key = waitKey(tenant, id);
  byKey.set(key, [...(byKey.get(key) ?? []), stop]);
}

function unregisterWait(
  endpoint: McpEndpoint,
  tenant: string,
  id: string | number,
  stop: AbortController,
): void {
  const byKey = waits.get(endpoint);
  const key = waitKey(tenant, id);
  const left = (byKey?.get(key) ?? []).filter((c) => c !== stop);
  if (left.length > 0) byKey?.set(key, left);
  else byKey?.delete(key);
}

function stopCancelledWait(endpoint: McpEndpoint, tenant: string, message: unknown): void {
  const { method, params } = message as {
    method?: string;
    params?: { requestId?: unknown; reason?: unknown };
  };
  const id = params?.requestId;
  if (method !== 'notifications/cancelled' || (typeof id !== 'string' && typeof id !== 'number')) return;
  const matching = waits.get(endpoint)?.get(waitKey(tenant, id)) ?? [];
  if (matching.length === 1) {
    matching[0]?.abort(
      `the client cancelled request ${JSON.stringify(id)}${typeof params?.reason === 'string' ? `: ${params.reason}` : ''}`,
    );
  } else if (matching.length > 1) {
    endpoint.log('mcp: a cancel matches several waits; none is stopped', {
      tenant,
      request_id: id,
      waits: matching.length,
    });
  }
}

function once(run: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= run());
}

interface MessageProblem {
  id: string | number | null;
  code: number;
  message: string;
}

/** The JSON-RPC request schema of each method a client may call, from the SDK's own union. */
const REQUEST_SCHEMAS = new Map<string, (typeof ClientRequestSchema.options)[number]>(
  ClientRequestSchema.options.map((schema) => [schema.shape.method.value, schema]),
);

/**
 * Why one message cannot be dispatched, or null. Unknown methods pass: the SDK answers them
 * -32601 (method not found).
 */
function messageProblem(message: unknown): MessageProblem | null {
  if (!JSONRPCMessageSchema.safeParse(message).success) {
    return {
      id: null,
      code: -32600,
      message:
        'invalid request: not a JSON-RPC 2.0 message (an object with "jsonrpc": "2.0", and a "method" with a string or number "id" for a request)',
    };
  }
  const { id = null, method } = message as { id?: string | number; method?: string };
  const schema = method === undefined ? undefined : REQUEST_SCHEMAS.get(method);
  if (!schema || id === null) return null;
  try {
    const { params } = parseRequest(schema, message, `${method} request`) as { params?: { uri?: unknown } };
    // The SDK's resource handlers parse the URI with `new URL`, which throws (-32603) on a non-URL.
    if (typeof params?.uri === 'string' && !URL.canParse(params.uri)) {
      return { id, code: -32602, message: `invalid ${method} request: params.uri is not a URI` };
    }
    return null;
  } catch (error) {
    if (!(error instanceof InvalidRequestError)) throw error;
    return { id, code: -32602, message: error.message };
  }
}

export function mcpTooLarge(maxBodyBytes: number): Response {
  return rpcError(
    413,
    -32000,
    `request body is larger than ${maxBodyBytes} bytes; send large notebooks by upload (POST /v1/uploads) and pass notebook.uri`,
  );
}

/** A JSON-RPC error answered before (or instead of) the MCP server. */
export function rpcError(
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}
