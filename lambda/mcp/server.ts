/**
 * The MCP server factory: a new server per request (stateless streamable HTTP), bound to the
 * caller. Tools are served from the TOOLS table with handlers of our own, because a task-capable
 * tool registered through the SDK's registerToolTask makes clients that send no task wait for the
 * whole job; here such a client gets an answer within sync_timeout_seconds, and a client that
 * sends a task gets a task that is the job.
 */
import * as z from 'zod';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolResult,
  type CreateTaskResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../core/errors.ts';
import { parseRequest } from '../core/schemas.ts';
import { JobTaskStore, taskOf } from './job-task-store.ts';
import { listJobResources, noResource, readResource, RESOURCE_TEMPLATES } from './resources.ts';
import { clip } from '../core/names.ts';
import { ExecuteNotebookInputSchema } from './schemas.ts';
import { callTool, TOOLS, type McpCallContext, type ToolCallStream, type ToolDefinition } from './tools.ts';

export const SERVER_INFO = { name: 'notebook-jobs', version: '0.1.0' };

export interface McpServerOptions {
  /** How long ended jobs are kept (task ttl), or null when they stay until cleaned up. */
  taskTtlMs: number | null;
  /** The largest executed notebook served inline as a resource; larger ones by download URL. */
  maxResourceBytes: number;
  /**
   * Whether to advertise and serve MCP tasks (capability, `execution.taskSupport` in tools/list,
   * task-augmented calls): only for protocol versions that define them (TASK_PROTOCOL_VERSIONS),
   * decided from the initialize request or the MCP-Protocol-Version header.
   */
  tasks: boolean;
  /**
   * Set when this request's answer is an SSE stream (http.ts): a tools/call with a progressToken
   * then reports progress while it waits, and stops waiting when `signal` aborts.
   */
  stream?: { signal: AbortSignal; stopReason: () => string };
}

/** Protocol versions that define tasks (2025-11-25 brought them, as experimental). */
export const TASK_PROTOCOL_VERSIONS: readonly string[] = ['2025-11-25'];

export const INSTRUCTIONS =
  'Runs Jupyter notebooks as asynchronous jobs. Call inspect_notebook to see a notebook\'s parameters, execute_notebook to run it (it waits up to sync_timeout_seconds, then returns the job id and what to call next), and manage_async_job to follow progress (action "status"), read logs, fetch the result summary (action "result"), cancel, list or clean up.';

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): Tool['inputSchema'] {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  // MCP wants an object schema at the top; a union of object shapes (manage_async_job's output,
  // one per action) is one, said so.
  return { type: 'object', ...rest } as Tool['inputSchema'];
}

/** tools/list entries, computed once: the schemas never change at run time. */
export const TOOL_LIST: Tool[] = TOOLS.map((tool) => ({
  name: tool.name,
  title: tool.title,
  description: tool.description,
  inputSchema: jsonSchemaOf(tool.input, 'input'),
  outputSchema: jsonSchemaOf(tool.output, 'output'),
  annotations: { title: tool.title, ...tool.annotations },
  execution: { taskSupport: tool.taskSupport },
}));

/** tools/list for versions without tasks (2025-06-18 and older): no `execution.taskSupport`. */
export const TOOL_LIST_WITHOUT_TASKS: Tool[] = TOOL_LIST.map(({ execution: _ignored, ...tool }) => tool);

/**
 * The server for one request of the 2025 eras. The SDK's low-level Server, not its McpServer: the
 * tools and resources are served from our own tables, as on 2026-07-28 (modern.ts), and McpServer's
 * registration layer would add zod 3 and a JSON Schema converter to the Lambda bundle for nothing.
 */
export function createMcpServer(ctx: McpCallContext, options: McpServerOptions): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: {
      tools: {},
      resources: {},
      ...(options.tasks && { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } }),
    },
    ...(options.tasks && { taskStore: new JobTaskStore(ctx, options.taskTtlMs) }),
    instructions: INSTRUCTIONS,
  });

  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: options.tasks ? TOOL_LIST : TOOL_LIST_WITHOUT_TASKS,
  }));
  server.setRequestHandler(
    CallToolRequestSchema,
    async (request, extra): Promise<CallToolResult | CreateTaskResult> => {
      const tool = TOOLS.find((t) => t.name === request.params.name);
      if (!tool) {
        throw new McpError(
          ErrorCode.InvalidParams,
          `unknown tool "${request.params.name}"; this server has: ${TOOLS.map((t) => t.name).join(', ')}`,
        );
      }
      // Without tasks in this version, a `task` field is not ours to honour: the call runs as usual.
      if (options.tasks && request.params.task)
        return startTask(tool, ctx, request.params.arguments, options.taskTtlMs);
      const token = request.params._meta?.progressToken;
      const stream: ToolCallStream | undefined =
        options.stream && token !== undefined
          ? {
              report: (progress, total, message) =>
                extra.sendNotification({
                  method: 'notifications/progress',
                  params: { progressToken: token, progress, ...(total !== undefined && { total }), message },
                }),
              signal: AbortSignal.any([extra.signal, options.stream.signal]),
              stopReason: options.stream.stopReason,
            }
          : undefined;
      return callTool(tool, ctx, request.params.arguments, stream);
    },
  );

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: await asProtocolError(ctx, () => listJobResources(ctx)),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: RESOURCE_TEMPLATES,
  }));
  server.setRequestHandler(ReadResourceRequestSchema, async ({ params: { uri } }) => {
    const read = readResource(ctx, uri, options.maxResourceBytes);
    if (!read) throw new McpError(ErrorCode.InvalidParams, noResource(uri), { uri: clip(uri) });
    return asProtocolError(ctx, () => read);
  });
  return server;
}

/** A task-augmented execute_notebook: the job is created and returned as the task, at once. */
async function startTask(
  tool: ToolDefinition,
  ctx: McpCallContext,
  args: unknown,
  ttlMs: number | null,
): Promise<CreateTaskResult> {
  if (tool.taskSupport === 'forbidden') {
    throw new McpError(
      ErrorCode.InvalidParams,
      `tool ${tool.name} does not run as a task; call it without "task"`,
    );
  }
  const job = await asProtocolError(ctx, async () => {
    const { sync_timeout_seconds: _ignored, ...request } = parseRequest(
      ExecuteNotebookInputSchema,
      args ?? {},
      'arguments',
    );
    return ctx.service.create(ctx.tenant, { ...request, wait_seconds: 0 });
  });
  return { task: taskOf(job, ctx, ttlMs) };
}

/**
 * Protocol-level failures (task creation has no isError result; resources/read neither): a typed
 * error keeps its message, anything else is logged and answered without internals.
 */
async function asProtocolError<T>(ctx: McpCallContext, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof McpError) throw error;
    if (error instanceof AppError)
      throw new McpError(ErrorCode.InvalidParams, `${error.code}: ${error.message}`);
    ctx.log('mcp request failed', { tenant: ctx.tenant, error });
    throw new McpError(ErrorCode.InternalError, 'internal error; the server log has the details');
  }
}
