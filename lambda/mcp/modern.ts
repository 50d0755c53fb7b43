/**
 * Protocol 2026-07-28 on the MCP endpoint, served by SDK v2 (`@modelcontextprotocol/server`):
 * no initialize and no sessions; `server/discover`; the protocol version and the client's
 * capabilities in each request's `_meta`; the standard headers (`MCP-Protocol-Version`,
 * `Mcp-Method`, `Mcp-Name`) checked against the body; `resultType` on every result. The SDK's
 * createMcpHandler does all of that and answers the new error codes with the request's id; it is
 * created once per endpoint and builds a fresh server for every request (stateless, as on Lambda),
 * bound to the caller's tenant.
 *
 * The 2025 eras (2025-11-25, 2025-06-18: initialize, and 2025-11-25 tasks) stay on SDK v1
 * (http.ts): SDK v2 no longer serves 2025-11-25 tasks (see docs/mcp.md, "Protocol eras").
 *
 * Same tools, resources and answers as the 2025 eras; in addition execute_notebook becomes a task
 * of the tasks extension (tasks-extension.ts) when the request declares that extension.
 */
import {
  CLIENT_CAPABILITIES_META_KEY,
  createMcpHandler,
  MissingRequiredClientCapabilityError,
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type McpHttpHandler,
  type ServerContext,
} from '@modelcontextprotocol/server';
import { CfWorkerJsonSchemaValidator } from '@modelcontextprotocol/server/validators/cf-worker';
import * as z from 'zod';
import { AppError } from '../core/errors.ts';
import type { JobView } from '../core/job-service.ts';
import { parseRequest } from '../core/schemas.ts';
import { listJobResources, noResource, readResource, RESOURCE_TEMPLATES } from './resources.ts';
import { clip } from '../core/names.ts';
import { ExecuteNotebookInputSchema } from './schemas.ts';
import { INSTRUCTIONS, SERVER_INFO, TOOL_LIST_WITHOUT_TASKS } from './server.ts';
import { detailedTaskOf, extensionTaskOf, TASKS_EXTENSION } from './tasks-extension.ts';
import { callTool, guarded, TOOLS, type McpCallContext, type ToolCallStream } from './tools.ts';

export const MODERN_PROTOCOL_VERSION = '2026-07-28';

export interface ModernEndpoint {
  /** How long ended jobs are kept (the tasks' ttlMs), or null when they stay until cleaned up. */
  taskTtlMs: number | null;
  maxResourceBytes: number;
  /** Whether a tools/call with a progressToken may be answered as an SSE stream of progress. */
  streamProgress: boolean;
  maxBodyBytes: number;
}

const handlers = new WeakMap<object, McpHttpHandler>();

/**
 * Answers one 2026-07-28 request for `caller`'s tenant. `key` identifies the endpoint: one SDK
 * handler is kept per endpoint (it holds no per-client state).
 */
export function handleModernRequest(
  key: object,
  endpoint: ModernEndpoint,
  base: Omit<McpCallContext, 'tenant'>,
  request: Request,
  parsedBody: unknown,
  tenant: string,
): Promise<Response> {
  const refused = undeclaredTaskSubscription(parsedBody);
  if (refused) return Promise.resolve(refused);
  let handler = handlers.get(key);
  if (!handler) {
    handler = createMcpHandler(
      ({ authInfo }) => {
        const callerTenant = authInfo?.extra?.tenant;
        if (typeof callerTenant !== 'string') throw new Error('unreachable: a request without a caller');
        return createModernServer({ ...base, tenant: callerTenant }, endpoint);
      },
      {
        legacy: 'reject',
        // JSON unless a handler sends a notification first; without streamProgress (behind a
        // buffering gateway) none sends progress, so every answer is JSON.
        responseMode: 'auto',
        maxRequestBodySize: endpoint.maxBodyBytes,
        onerror: (error) => base.log('mcp (2026-07-28) failed', { error }),
      },
    );
    handlers.set(key, handler);
  }
  return handler.fetch(request, {
    parsedBody,
    // Passed through to the factory only: the caller was authenticated before this point.
    authInfo: { token: '', clientId: tenant, scopes: [], extra: { tenant } },
  });
}

/**
 * The tasks extension defines task status notifications (`notifications/tasks`) on a
 * `subscriptions/listen` stream that names `taskIds`, and says a server MUST answer -32021 to a
 * client asking for them without declaring the extension. The SDK's listen router owns
 * subscriptions/listen and knows only its list-changed and resource-updated kinds: it acknowledges
 * a `taskIds` filter without them (we agree to send no task notifications; clients poll tasks/get,
 * see docs/mcp.md), but it would not refuse an undeclared one. That refusal is made here.
 */
function undeclaredTaskSubscription(body: unknown): Response | null {
  if (typeof body !== 'object' || body === null) return null;
  const { id, method, params } = body as {
    id?: string | number;
    method?: unknown;
    params?: { notifications?: { taskIds?: unknown }; _meta?: Record<string, unknown> };
  };
  if (method !== 'subscriptions/listen' || params?.notifications?.taskIds === undefined) return null;
  const capabilities = params._meta?.[CLIENT_CAPABILITIES_META_KEY] as
    { extensions?: Record<string, unknown> } | undefined;
  if (capabilities?.extensions?.[TASKS_EXTENSION] !== undefined) return null;
  const error = new MissingRequiredClientCapabilityError({
    requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } },
  });
  return Response.json(
    { jsonrpc: '2.0', id: id ?? null, error: { code: error.code, message: error.message, data: error.data } },
    { status: 400 },
  );
}

const TaskIdParams = z.object({ taskId: z.string().min(1).max(200) });
const UpdateTaskParams = TaskIdParams.extend({
  inputResponses: z.record(z.string(), z.unknown()).optional(),
});

const VALIDATOR = new CfWorkerJsonSchemaValidator();

/** The server for one 2026-07-28 request. */
export function createModernServer(ctx: McpCallContext, endpoint: ModernEndpoint): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: { tools: {}, resources: {}, extensions: { [TASKS_EXTENSION]: {} } },
    instructions: INSTRUCTIONS,
    // For elicitation answers only, which this server never asks for: the validator the Lambda
    // bundle keeps (sdk-shims.ts), so the SDK's Ajv stays out of it.
    jsonSchemaValidator: VALIDATOR,
  });

  // Tasks are server-directed on 2026-07-28: no `execution.taskSupport` in the tool list.
  server.setRequestHandler('tools/list', () => ({ tools: TOOL_LIST_WITHOUT_TASKS }) as never);

  server.setRequestHandler('tools/call', async (request, call) => {
    const tool = TOOLS.find((t) => t.name === request.params.name);
    if (!tool) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `unknown tool "${request.params.name}"; this server has: ${TOOLS.map((t) => t.name).join(', ')}`,
      );
    }
    if (tool.taskSupport !== 'forbidden' && declaresTasks(call)) {
      // The job is the task, and it is durable (stored) before this answer leaves. Arguments that
      // create no job get the tool's own isError answer, as without a task.
      let job: JobView;
      try {
        job = await createJob(ctx, request.params.arguments);
      } catch (error) {
        return (await guarded(ctx, () => Promise.reject(error))) as never;
      }
      return { resultType: 'task', ...extensionTaskOf(job, ctx, endpoint.taskTtlMs) } as never;
    }
    const token = call.mcpReq._meta?.progressToken;
    const stream: ToolCallStream | undefined =
      endpoint.streamProgress && token !== undefined
        ? {
            report: (progress, total, message) =>
              call.mcpReq.notify({
                method: 'notifications/progress',
                params: { progressToken: token, progress, ...(total !== undefined && { total }), message },
              }),
            signal: call.mcpReq.signal,
            stopReason: () => String(call.mcpReq.signal.reason ?? 'the request was cancelled'),
          }
        : undefined;
    return (await callTool(tool, ctx, request.params.arguments, stream)) as never;
  });

  server.setRequestHandler('resources/list', async () => ({ resources: await listJobResources(ctx) }));
  server.setRequestHandler('resources/templates/list', () => ({ resourceTemplates: RESOURCE_TEMPLATES }));
  server.setRequestHandler('resources/read', async ({ params: { uri } }) => {
    const read = readResource(ctx, uri, endpoint.maxResourceBytes);
    if (!read) throw new ProtocolError(ProtocolErrorCode.InvalidParams, noResource(uri), { uri: clip(uri) });
    return asProtocolError(ctx, () => read);
  });

  // The tasks methods are the extension's: a request that does not declare it gets -32021.
  server.setRequestHandler('tasks/get', { params: TaskIdParams }, async ({ taskId }, call) => {
    requireTasks(call);
    return detailedTaskOf(await findTask(ctx, taskId), ctx, endpoint.taskTtlMs);
  });
  // These tasks never ask the client for input: an update for a known task is acknowledged.
  server.setRequestHandler('tasks/update', { params: UpdateTaskParams }, async ({ taskId }, call) => {
    requireTasks(call);
    await findTask(ctx, taskId);
    return {};
  });
  // Cooperative, per the extension: acknowledged, and the job is cancelled unless it has ended.
  server.setRequestHandler('tasks/cancel', { params: TaskIdParams }, async ({ taskId }, call) => {
    requireTasks(call);
    const job = await findTask(ctx, taskId);
    if (job.status === 'queued' || job.status === 'running') {
      await asProtocolError(ctx, async () => {
        try {
          await ctx.service.cancel(ctx.tenant, taskId);
        } catch (error) {
          // It ended meanwhile: nothing is left to cancel.
          if (!(error instanceof AppError && error.code === 'conflict')) throw error;
        }
      });
    }
    return {};
  });
  return server;
}

/** Whether this request's client capabilities (in its `_meta`) include the tasks extension. */
function declaresTasks(call: ServerContext): boolean {
  const capabilities = call.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY as never] as
    { extensions?: Record<string, unknown> } | undefined;
  return capabilities?.extensions?.[TASKS_EXTENSION] !== undefined;
}

function requireTasks(call: ServerContext): void {
  if (!declaresTasks(call)) {
    throw new MissingRequiredClientCapabilityError({
      requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } },
    });
  }
}

async function createJob(ctx: McpCallContext, args: unknown): Promise<JobView> {
  const { sync_timeout_seconds: _ignored, ...request } = parseRequest(
    ExecuteNotebookInputSchema,
    args ?? {},
    'arguments',
  );
  return ctx.service.create(ctx.tenant, { ...request, wait_seconds: 0 });
}

/** The caller's job that is this task; a malformed id, or another tenant's job, is not found. */
async function findTask(ctx: McpCallContext, taskId: string): Promise<JobView> {
  try {
    return await ctx.service.get(ctx.tenant, taskId);
  } catch (error) {
    if (error instanceof AppError && (error.code === 'not_found' || error.code === 'invalid_request')) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `no task ${taskId}`);
    }
    return asProtocolError(ctx, () => Promise.reject(error));
  }
}

/** A typed error keeps its message; anything else is logged and answered without internals. */
async function asProtocolError<T>(ctx: McpCallContext, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    if (error instanceof AppError) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `${error.code}: ${error.message}`);
    }
    ctx.log('mcp request failed', { tenant: ctx.tenant, error });
    throw new ProtocolError(
      ProtocolErrorCode.InternalError,
      'internal error; the server log has the details',
    );
  }
}
