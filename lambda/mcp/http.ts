/**
 * The MCP endpoint over streamable HTTP, stateless: every POST gets a new server and transport,
 * and JSON responses. Web-standard Request in, Response out, so the local server and the Lambda
 * handler share this one code path. Transport hygiene happens here, before any JSON-RPC:
 * POST only (405 with Allow: POST), Origin allow-list (403), body size (413), bearer token (401),
 * JSON no deeper than MAX_JSON_DEPTH and not an empty batch (400).
 * The SDK transport handles MCP-Protocol-Version (400 for versions it does not speak) and Accept.
 */
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { JsonTooDeepError, parseJsonText } from '../core/json.ts';
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
