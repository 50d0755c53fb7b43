/**
 * The MCP tools: execute_notebook, manage_async_job, inspect_notebook. Each handler only
 * translates: arguments (validated by the tool's zod schema) -> one JobService use case ->
 * structuredContent plus the same JSON as text. Failures become `isError` results.
 */
import type { z } from 'zod';
import type { CallToolResult, ResourceLink, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { AppError, InvalidRequestError } from '../core/errors.ts';
import { isTerminal } from '../core/job.ts';
import type { OutputFile } from '../core/contract.ts';
import type { JobService, JobView } from '../core/job-service.ts';
import { parseRequest } from '../core/schemas.ts';
import {
  ExecuteNotebookInputSchema,
  ExecuteNotebookOutputSchema,
  InspectNotebookInputSchema,
  InspectNotebookOutputSchema,
  JOB_ACTIONS,
  ManageAsyncJobInputSchema,
  ManageAsyncJobOutputSchema,
  type ManageAsyncJobInput,
} from './schemas.ts';
import { waitWithProgress, type ProgressReporter } from './progress.ts';
import type { LogFields, LogFn } from '../core/logging.ts';

export const IPYNB_MIME = 'application/x-ipynb+json';

/** What every MCP request works with: the service, and the caller it was authenticated as. */
export interface McpCallContext {
  service: JobService;
  tenant: string;
  /** Suggested seconds between status polls. */
  pollIntervalSeconds: number;
  /** Logs an unexpected failure (its details never reach the caller), or a stopped wait. */
  log: LogFn;
}

/** What a streamed tools/call adds (see progress.ts); absent when the answer is plain JSON. */
export interface ToolCallStream {
  report: ProgressReporter;
  /** Aborts when the client cancels the call or its stream closes. */
  signal: AbortSignal;
  /** Why the signal aborted, for the log. */
  stopReason: () => string;
}

export interface ToolDefinition {
  name: string;
  title: string;
  description: string;
  input: z.ZodType;
  output: z.ZodType;
  annotations: ToolAnnotations;
  /** Task support advertised in tools/list (MCP 2025-11-25 tasks). */
  taskSupport: 'forbidden' | 'optional';
  run(ctx: McpCallContext, args: unknown, stream?: ToolCallStream): Promise<CallToolResult>;
}

export const jobResourceUri = (jobId: string) => `notebook-jobs://jobs/${jobId}`;
export const outputResourceUri = (jobId: string) => `notebook-jobs://jobs/${jobId}/output`;
/** An output file's resource: each path segment percent-encoded (as in its REST download path). */
export const fileResourceUri = (jobId: string, path: string) =>
  `notebook-jobs://jobs/${jobId}/files/${path.split('/').map(encodeURIComponent).join('/')}`;

export const TOOLS: ToolDefinition[] = [
  {
    name: 'execute_notebook',
    title: 'Execute a Jupyter notebook',
    description:
      'Runs a Jupyter notebook as an asynchronous job with papermill-style parameters. Waits up to sync_timeout_seconds (default 20) for it to finish: a quick notebook comes back with its result summary; a long one comes back at once with its job_id and exactly what to call next (manage_async_job status, then result). Clients that support MCP tasks can send a task instead; the task id is the job id. The notebook is given inline (notebook.content), or by notebook.uri.',
    input: ExecuteNotebookInputSchema,
    output: ExecuteNotebookOutputSchema,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    taskSupport: 'optional',
    run: async (ctx, args, stream) => {
      const arrived = performance.now();
      const { sync_timeout_seconds, ...request } = parseRequest(
        ExecuteNotebookInputSchema,
        args,
        'arguments',
      );
      if (!stream || sync_timeout_seconds === 0) {
        const job = await ctx.service.create(ctx.tenant, { ...request, wait_seconds: sync_timeout_seconds });
        return executeResult(ctx, job);
      }
      // Streamed: this call waits itself, so that it can report progress and stop on a cancel.
      const job = await ctx.service.create(ctx.tenant, { ...request, wait_seconds: 0 });
      const until = arrived + sync_timeout_seconds * 1000;
      return executeResult(
        ctx,
        await waitWithProgress(ctx, job, until, stream.report, stream.signal, stream.stopReason),
      );
    },
  },
  {
    name: 'manage_async_job',
    title: 'Follow, read, cancel, list or clean up notebook jobs',
    description:
      'Works with jobs started by execute_notebook. action=status (job_id; include_logs, log_tail): status and per-cell progress. action=logs (job_id; cursor, limit or log_tail): a page of log lines, continue with next_cursor. action=result (job_id): result summary of an ended job (per-cell status, errors, last outputs, named results) and a link to the executed notebook. action=cancel (job_id): stops a queued or running job (idempotent). action=list (filter_status, cursor, limit): your jobs, newest first. action=cleanup (cleanup_older_than hours, default 24): deletes your ended jobs older than that. status, logs, result and list only read; cancel and cleanup change state.',
    input: ManageAsyncJobInputSchema,
    output: ManageAsyncJobOutputSchema,
    // One tool carries read-only and destructive actions: the hints describe the most it can do.
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    taskSupport: 'forbidden',
    run: (ctx, args) => manageAsyncJob(ctx, parseRequest(ManageAsyncJobInputSchema, args, 'arguments')),
  },
  {
    name: 'inspect_notebook',
    title: 'Inspect a notebook before running it',
    description:
      "Reads a notebook without running it: its kernel and language, the parameters declared in the cell tagged 'parameters' (name, type, default, comment), and its cell counts.",
    input: InspectNotebookInputSchema,
    output: InspectNotebookOutputSchema,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    taskSupport: 'forbidden',
    run: async (ctx, args) => {
      const inspected = await ctx.service.inspect(
        ctx.tenant,
        parseRequest(InspectNotebookInputSchema, args, 'arguments'),
      );
      return toolResult({
        ...inspected,
        parameters: inspected.parameters.map((p) => ({
          name: p.name,
          type: p.inferred_type,
          default: p.default,
          comment: p.help,
        })),
      });
    },
  },
];

async function manageAsyncJob(ctx: McpCallContext, args: ManageAsyncJobInput): Promise<CallToolResult> {
  const { service, tenant } = ctx;
  const { action } = args;
  if (JOB_ACTIONS.includes(action) && !args.job_id) {
    throw new InvalidRequestError(`job_id is required for action "${action}"`, { action });
  }
  const jobId = args.job_id as string;
  switch (action) {
    case 'status': {
      const job = await service.get(tenant, jobId);
      const tail = args.log_tail ?? 50;
      const logs = args.include_logs ? await service.logs(tenant, jobId, { limit: tail, tail }) : undefined;
      return toolResult(
        { action, ...job, ...(logs && { logs }), next: isTerminal(job.status) ? null : nextCall(ctx, job) },
        outputLinks(job),
      );
    }
    case 'logs': {
      if (args.cursor && args.log_tail) {
        throw new InvalidRequestError('use either cursor or log_tail for action "logs", not both');
      }
      const page = await service.logs(tenant, jobId, {
        cursor: args.cursor,
        limit: args.limit ?? 200,
        tail: args.log_tail,
      });
      return toolResult({ action, job_id: jobId, ...page });
    }
    case 'result': {
      const job = await service.get(tenant, jobId);
      const result = await service.result(tenant, jobId);
      return toolResult(
        {
          action,
          ...result,
          files: withResourceUris(jobId, result.files),
          output: job.output,
          next: isTerminal(job.status) ? null : nextCall(ctx, job),
        },
        [...outputLinks(job), ...fileLinks(jobId, result.files)],
      );
    }
    case 'cancel':
      return toolResult({ action, ...(await service.cancel(tenant, jobId)) });
    case 'list': {
      const page = await service.list(tenant, {
        status: args.filter_status,
        limit: Math.min(args.limit ?? 20, 100),
        cursor: args.cursor,
      });
      return toolResult({ action, ...page });
    }
    case 'cleanup':
      return toolResult({ action, ...(await service.cleanup(tenant, args.cleanup_older_than)) });
  }
}

/**
 * execute_notebook's answer for a job: its view, whether it has ended, the result summary once it
 * has, and what to call next while it has not. Also what tasks/result returns for its task.
 */
export async function executeResult(ctx: McpCallContext, job: JobView): Promise<CallToolResult> {
  const done = isTerminal(job.status);
  const result = done ? await ctx.service.result(ctx.tenant, job.job_id) : null;
  return toolResult(
    {
      job,
      done,
      result: result && {
        output_available: result.output_available,
        summary: result.summary,
        files: withResourceUris(job.job_id, result.files),
        files_note: result.files_note,
      },
      next: done ? null : nextCall(ctx, job),
    },
    [...outputLinks(job), ...(result ? fileLinks(job.job_id, result.files) : [])],
  );
}

/** Runs a tool; failures become `isError` results with a message that says what was wrong. */
export function callTool(
  tool: ToolDefinition,
  ctx: McpCallContext,
  args: unknown,
  stream?: ToolCallStream,
): Promise<CallToolResult> {
  const jobId = (args as { job_id?: unknown } | undefined)?.job_id;
  const fields = { tool: tool.name, ...(typeof jobId === 'string' ? { job_id: jobId.slice(0, 100) } : {}) };
  return guarded(ctx, () => tool.run(ctx, args ?? {}, stream), fields);
}

/** Runs `work`; a failure becomes an `isError` result (see toolError). */
export async function guarded(
  ctx: McpCallContext,
  work: () => Promise<CallToolResult>,
  fields: LogFields = {},
): Promise<CallToolResult> {
  try {
    return await work();
  } catch (error) {
    return toolError(ctx, error, fields);
  }
}

function toolError(ctx: McpCallContext, error: unknown, fields: LogFields): CallToolResult {
  let text: string;
  if (error instanceof AppError) {
    text = `${error.code}: ${error.message}`;
  } else {
    ctx.log('mcp tool failed', { tenant: ctx.tenant, ...fields, error });
    text = 'internal error: the request could not be completed; try again later';
  }
  return { content: [{ type: 'text', text }], isError: true };
}

export function toolResult(structured: Record<string, unknown>, links: ResourceLink[] = []): CallToolResult {
  return {
    content: [{ type: 'text', text: JSON.stringify(structured) }, ...links],
    structuredContent: structured,
  };
}

/** A link to the executed notebook, once there is one. */
export function outputLinks(job: JobView): ResourceLink[] {
  if (!job.output.available) return [];
  return [
    {
      type: 'resource_link',
      uri: outputResourceUri(job.job_id),
      name: job.notebook.name,
      mimeType: IPYNB_MIME,
      description: `Executed notebook of ${job.job_id} (${job.status})${
        job.output.download_url?.startsWith('http') ? `; direct download: ${job.output.download_url}` : ''
      }`,
    },
  ];
}

/** The output files as MCP results list them: each with the URI resources/read serves it at. */
function withResourceUris(jobId: string, files: OutputFile[]) {
  return files.map((file) => ({ ...file, resource_uri: fileResourceUri(jobId, file.path) }));
}

/** One resource_link per output file (resources/read returns its bytes, text or blob). */
export function fileLinks(jobId: string, files: OutputFile[]): ResourceLink[] {
  return files.map((file) => ({
    type: 'resource_link',
    uri: fileResourceUri(jobId, file.path),
    name: file.path,
    mimeType: file.media_type,
    size: file.size,
    description: `Output file of ${jobId}: ${file.path} (${file.size} bytes, sha256 ${file.sha256}); REST download: ${file.download}`,
  }));
}

function nextCall(ctx: McpCallContext, job: JobView) {
  const where =
    job.status === 'queued'
      ? `queued (position ${job.queue_position ?? '?'})`
      : `${job.status}${job.stage ? ` (${job.stage})` : ''}, ${job.progress.cells_executed}/${job.progress.cells_total} cells`;
  return {
    tool: 'manage_async_job' as const,
    arguments: { action: 'status', job_id: job.job_id },
    poll_interval_seconds: ctx.pollIntervalSeconds,
    hint: `The job is ${where}. Call manage_async_job with these arguments about every ${ctx.pollIntervalSeconds} s until status is completed, failed or cancelled, then call it with action "result" for the result summary.`,
  };
}
