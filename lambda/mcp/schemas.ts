/**
 * MCP tool schemas. Inputs reuse the REST request schemas (one zod schema per request); outputs
 * describe the structuredContent each tool returns, and are published as the tools' outputSchema.
 */
import * as z from 'zod';
import {
  CleanupResultSchema,
  InspectResultSchema,
  JobListSchema,
  JobViewSchema,
  LogPageSchema,
  OutputFileSchema,
  ParameterInfoSchema,
  ResultSummarySchema,
  ResultViewSchema,
} from '../core/contract.ts';
import { JOB_STATUSES } from '../core/job.ts';
import { CreateJobBaseSchema, InspectRequestSchema, JobIdSchema, MAX_WAIT_SECONDS } from '../core/schemas.ts';

export const DEFAULT_SYNC_TIMEOUT_SECONDS = 20;

export const ExecuteNotebookInputSchema = CreateJobBaseSchema.extend({
  sync_timeout_seconds: z
    .number()
    .min(0)
    .max(MAX_WAIT_SECONDS)
    .default(DEFAULT_SYNC_TIMEOUT_SECONDS)
    .describe(
      `Wait up to this many seconds for the job to finish (0: answer at once; at most ${MAX_WAIT_SECONDS}, below API gateway limits). A job still running then comes back with what to call next.`,
    ),
}).strict();

export const MANAGE_ACTIONS = ['status', 'logs', 'result', 'cancel', 'list', 'cleanup'] as const;
export type ManageAction = (typeof MANAGE_ACTIONS)[number];
/** Actions that act on one job and so need job_id. */
export const JOB_ACTIONS: readonly ManageAction[] = ['status', 'logs', 'result', 'cancel'];

export const ManageAsyncJobInputSchema = z
  .object({
    action: z
      .enum(MANAGE_ACTIONS)
      .describe(
        'status: progress of one job; logs: a page of its log; result: the result summary of an ended job; cancel: stop it; list: your jobs, newest first; cleanup: delete your ended jobs older than cleanup_older_than hours.',
      ),
    job_id: JobIdSchema.optional().describe('Required for status, logs, result and cancel.'),
    include_logs: z.boolean().default(false).describe('status: also return the last log_tail log lines.'),
    log_tail: z
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('status: how many lines include_logs returns (default 50); logs: only the last N lines.'),
    cursor: z
      .string()
      .max(4096)
      .optional()
      .describe('logs/list: the next_cursor of the previous page, to continue where it ended.'),
    limit: z.int().min(1).max(1000).optional().describe('logs (default 200) / list (default 20): page size.'),
    filter_status: z.enum(JOB_STATUSES).optional().describe('list: only jobs in this status.'),
    cleanup_older_than: z
      .number()
      .min(0)
      .max(24 * 365)
      .default(24)
      .describe('cleanup: delete ended jobs that ended more than this many hours ago (default 24).'),
  })
  .strict();
export type ManageAsyncJobInput = z.infer<typeof ManageAsyncJobInputSchema>;

export const InspectNotebookInputSchema = InspectRequestSchema;

// ---- outputs: built from the service's contract (lambda/core/contract.ts), strict ----

const NextCallSchema = z.strictObject({
  tool: z.literal('manage_async_job'),
  arguments: z.strictObject({ action: z.literal('status'), job_id: z.string() }),
  poll_interval_seconds: z.number(),
  hint: z.string(),
});

/** An output file as MCP results list it: also the URI its resource_link and resources/read use. */
const McpOutputFileSchema = OutputFileSchema.extend({
  resource_uri: z
    .string()
    .describe('notebook-jobs://jobs/{job_id}/files/{path}: read it with resources/read.'),
});

const next = NextCallSchema.nullable().describe(
  'What to call next while the job is still queued or running.',
);

export const ExecuteNotebookOutputSchema = z.strictObject({
  job: JobViewSchema,
  done: z.boolean().describe('True when the job has ended (completed, failed or cancelled).'),
  result: z
    .strictObject({
      output_available: z.boolean(),
      summary: ResultSummarySchema.nullable(),
      files: z
        .array(McpOutputFileSchema)
        .describe('Files the notebook created or changed in its working folder.'),
      files_note: ResultViewSchema.shape.files_note,
    })
    .nullable()
    .describe('The result summary, once the job has ended.'),
  next,
});

/** One shape per action, told apart by `action`. */
export const ManageAsyncJobOutputSchema = z.discriminatedUnion('action', [
  JobViewSchema.extend({ action: z.literal('status'), logs: LogPageSchema.optional(), next }),
  LogPageSchema.extend({ action: z.literal('logs'), job_id: z.string() }),
  ResultViewSchema.extend({
    action: z.literal('result'),
    files: z.array(McpOutputFileSchema).describe(ResultViewSchema.shape.files.description ?? ''),
    output: JobViewSchema.shape.output,
    next,
  }),
  JobViewSchema.extend({ action: z.literal('cancel') }),
  JobListSchema.extend({ action: z.literal('list') }),
  CleanupResultSchema.extend({ action: z.literal('cleanup') }),
]);

export const InspectNotebookOutputSchema = InspectResultSchema.extend({
  parameters: z.array(
    z.strictObject({
      name: z.string(),
      type: ParameterInfoSchema.shape.inferred_type,
      default: ParameterInfoSchema.shape.default,
      comment: ParameterInfoSchema.shape.help,
    }),
  ),
});
