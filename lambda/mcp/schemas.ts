/**
 * MCP tool schemas. Inputs reuse the REST request schemas (one zod schema per request); outputs
 * describe the structuredContent each tool returns, and are published as the tools' outputSchema.
 */
import { z } from 'zod';
import { ERROR_TYPES, JOB_STATUSES, STAGES } from '../core/job.ts';
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

// ---- outputs ----

const ProgressSchema = z.object({
  cells_total: z.number(),
  cells_executed: z.number(),
  percent: z.number(),
  current_cell: z.object({ index: z.number(), source_preview: z.string() }).nullable().optional(),
});

const JobErrorSchema = z.looseObject({
  type: z.enum(ERROR_TYPES),
  message: z.string(),
  cell_index: z.number().nullable().optional(),
  ename: z.string().nullable().optional(),
  evalue: z.string().nullable().optional(),
  traceback: z.array(z.string()).optional(),
});

/** The job representation (DESIGN 3), as REST returns it. */
export const JobViewSchema = z.looseObject({
  job_id: z.string(),
  status: z.enum(JOB_STATUSES),
  stage: z.enum(STAGES).nullable(),
  notebook: z.object({ name: z.string(), uri: z.string() }),
  parameters: z.record(z.string(), z.unknown()),
  kernel: z.string(),
  progress: ProgressSchema,
  created_at: z.string(),
  started_at: z.string().nullable(),
  ended_at: z.string().nullable(),
  duration_seconds: z.number().nullable(),
  queue_position: z.number().nullable(),
  output: z.object({ uri: z.string(), download_url: z.string().nullable(), available: z.boolean() }),
  error: JobErrorSchema.nullable(),
});

const NextCallSchema = z.object({
  tool: z.literal('manage_async_job'),
  arguments: z.record(z.string(), z.unknown()),
  poll_interval_seconds: z.number(),
  hint: z.string(),
});

const LogPageSchema = z.object({
  lines: z.array(
    z.object({ ts: z.string(), stream: z.string(), text: z.string(), truncated: z.boolean().optional() }),
  ),
  next_cursor: z.string(),
  at_end: z.boolean(),
});

const SummarySchema = z.looseObject({
  cells: z.array(z.looseObject({ index: z.number(), status: z.string() })),
  totals: z.record(z.string(), z.number()),
  named_results: z.record(z.string(), z.unknown()),
  error: z.looseObject({ cell_index: z.number() }).nullable(),
});

export const ExecuteNotebookOutputSchema = z.object({
  job: JobViewSchema,
  done: z.boolean().describe('True when the job has ended (completed, failed or cancelled).'),
  result: z
    .object({ output_available: z.boolean(), summary: SummarySchema.nullable() })
    .nullable()
    .describe('The result summary, once the job has ended.'),
  next: NextCallSchema.nullable().describe('What to call next while the job is still queued or running.'),
});

export const ManageAsyncJobOutputSchema = z.looseObject({
  action: z.enum(MANAGE_ACTIONS),
  job_id: z.string().optional(),
  status: z.enum(JOB_STATUSES).optional(),
  progress: ProgressSchema.optional(),
  logs: LogPageSchema.optional(),
  lines: LogPageSchema.shape.lines.optional(),
  next_cursor: z.string().nullable().optional(),
  summary: SummarySchema.nullable().optional(),
  jobs: z.array(JobViewSchema).optional(),
  deleted: z.array(z.string()).optional(),
  next: NextCallSchema.nullable().optional(),
});

export const InspectNotebookOutputSchema = z.object({
  name: z.string().nullable(),
  kernel: z.string(),
  language: z.string(),
  parameters: z.array(
    z.object({
      name: z.string(),
      type: z.string().nullable(),
      default: z.string(),
      comment: z.string(),
    }),
  ),
  cells: z.object({ total: z.number(), code: z.number(), markdown: z.number(), raw: z.number() }),
});
