/**
 * The MCP server factory: a new server per request (stateless streamable HTTP), bound to the
 * caller. Tools are served from the TOOLS table with handlers of our own, because a task-capable
 * tool registered through the SDK's registerToolTask makes clients that send no task wait for the
 * whole job; here such a client gets an answer within sync_timeout_seconds, and a client that
 * sends a task gets a task that is the job.
 */
import * as z from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type CreateTaskResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../core/errors.ts';
import { parseRequest } from '../core/schemas.ts';
import { JobTaskStore, taskOf } from './job-task-store.ts';
import {
  FILE_RESOURCE,
  FILE_RESOURCE_TEMPLATE,
  JOB_RESOURCE,
  listJobResources,
  OUTPUT_RESOURCE,
  readFileResource,
  readJobResource,
  readOutputResource,
} from './resources.ts';
import { ExecuteNotebookInputSchema } from './schemas.ts';
import {
  callTool,
  jobResourceUri,
  outputResourceUri,
  TOOLS,
  type McpCallContext,
  type ToolCallStream,
  type ToolDefinition,
} from './tools.ts';

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

export function createMcpServer(ctx: McpCallContext, options: McpServerOptions): McpServer {
  const mcp = new McpServer(SERVER_INFO, {
    capabilities: {
      tools: {},
      resources: {},
      ...(options.tasks && { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } }),
    },
    ...(options.tasks && { taskStore: new JobTaskStore(ctx, options.taskTtlMs) }),
    instructions: INSTRUCTIONS,
  });

  mcp.server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: options.tasks ? TOOL_LIST : TOOL_LIST_WITHOUT_TASKS,
  }));
  mcp.server.setRequestHandler(
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

  mcp.registerResource(
    JOB_RESOURCE.name,
    new ResourceTemplate(jobResourceUri('{job_id}'), {
      list: async () => ({ resources: await listJobResources(ctx) }),
    }),
    JOB_RESOURCE,
    (uri, { job_id }) => asProtocolError(ctx, () => readJobResource(ctx, uri.href, String(job_id))),
  );

  mcp.registerResource(
    OUTPUT_RESOURCE.name,
    new ResourceTemplate(outputResourceUri('{job_id}'), { list: undefined }),
    OUTPUT_RESOURCE,
    (uri, { job_id }) =>
      asProtocolError(ctx, () => readOutputResource(ctx, uri.href, String(job_id), options.maxResourceBytes)),
  );

  mcp.registerResource(
    FILE_RESOURCE.name,
    new ResourceTemplate(FILE_RESOURCE_TEMPLATE, { list: undefined }),
    FILE_RESOURCE,
    (uri) => asProtocolError(ctx, () => readFileResource(ctx, uri.href, options.maxResourceBytes)),
  );
  return mcp;
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
