/**
 * The MCP endpoint over streamable HTTP, stateless: every POST gets a new server and transport,
 * and JSON responses. Web-standard Request in, Response out, so the local server and the Lambda
 * handler share this one code path. Transport hygiene happens here, before any JSON-RPC:
 * POST only (405 with Allow: POST), Origin allow-list (403), body size (413), bearer token (401),
 * JSON no deeper than MAX_JSON_DEPTH and not an empty batch (400), each message JSON-RPC 2.0 (400,
 * -32600), and each request's params in the shape its method takes (-32602, which the SDK would
 * answer as an internal error -32603 after its handler's own parse throws).
 * The SDK transport handles MCP-Protocol-Version (400 for versions it does not speak) and Accept.
 */
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { ClientRequestSchema, JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import { InvalidRequestError } from '../core/errors.ts';
import { JsonTooDeepError, parseJsonText } from '../core/json.ts';
import { parseRequest } from '../core/schemas.ts';
import type { JobService } from '../core/job-service.ts';
import { createMcpServer } from './server.ts';

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
  log: (message: string) => void;
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

  const server = createMcpServer(
    {
      service: endpoint.service,
      tenant: caller.tenant,
      pollIntervalSeconds: endpoint.pollIntervalSeconds,
      log: endpoint.log,
    },
    { taskTtlMs: endpoint.taskTtlMs, maxResourceBytes: endpoint.maxResourceBytes },
  );
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  try {
    await server.connect(transport);
    return await transport.handleRequest(request, { parsedBody });
  } finally {
    await transport.close();
    await server.close();
  }
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
