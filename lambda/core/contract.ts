/**
 * What the service answers, defined once as zod schemas: the job view, the job list, a log page,
 * the result view (with its summary), an inspection, a cleanup, a deletion, an upload slot and the
 * error body. The TypeScript types of the service are inferred from these; the OpenAPI document
 * publishes them as its response schemas and the MCP tools build their output schemas from them.
 * Objects are strict: a field the contract does not name is a test failure, not a silent addition.
 */
import * as z from 'zod';
import { ERROR_TYPES, JOB_STATUSES, STAGES } from './job.ts';

const timestamp = z.string().describe('ISO 8601 UTC time, e.g. 2026-01-02T03:04:05.678Z.');

export const CurrentCellSchema = z.strictObject({ index: z.int().min(0), source_preview: z.string() });

export const ProgressSchema = z.strictObject({
  cells_total: z.int().min(0),
  cells_executed: z.int().min(0),
  percent: z.number().min(0).max(100),
  current_cell: CurrentCellSchema.nullable(),
});

export const JobErrorSchema = z.strictObject({
  type: z.enum(ERROR_TYPES),
  message: z.string(),
  cell_index: z.int().nullable().optional(),
  ename: z.string().nullable().optional(),
  evalue: z.string().nullable().optional(),
  traceback: z.array(z.string()).optional(),
});

/** The job as callers see it (DESIGN 3): REST bodies, MCP structuredContent, the CLI. */
export const JobViewSchema = z.strictObject({
  job_id: z.string(),
  status: z.enum(JOB_STATUSES),
  stage: z.enum(STAGES).nullable(),
  notebook: z.strictObject({ name: z.string(), uri: z.string() }),
  parameters: z
    .record(z.string(), z.unknown())
    .describe('The parameters as given; a redacted one (redact_parameters) shows [redacted].'),
  secrets: z
    .record(z.string(), z.string())
    .optional()
    .describe("The job's secrets: variable name -> reference (never a value). Absent when none."),
  redact_parameters: z.array(z.string()).optional().describe('Parameters whose values are redacted.'),
  kernel: z.string(),
  progress: ProgressSchema,
  created_at: timestamp,
  started_at: timestamp.nullable(),
  updated_at: timestamp,
  ended_at: timestamp.nullable(),
  duration_seconds: z.number().nullable(),
  timeout_seconds: z.int(),
  cell_timeout_seconds: z.int().nullable(),
  deadline_at: timestamp.nullable(),
  queue_position: z.int().min(1).nullable(),
  priority: z.int(),
  tags: z.record(z.string(), z.string()),
  attempt: z.int().min(0),
  attempts: z
    .array(
      z.strictObject({
        attempt: z.int().min(1),
        started_at: timestamp.nullable(),
        ended_at: timestamp,
        reason: z.string(),
      }),
    )
    .describe(
      'Earlier runs of this job lost to infrastructure (e.g. a Fargate Spot interruption) and requeued, oldest first; the current run is the job itself.',
    ),
  launch: z
    .strictObject({
      attempts: z.int().min(1).describe('Launch tries of the current attempt that met no capacity.'),
      last_error: z.string().nullable(),
      retry_at: timestamp.nullable().describe('While queued: the next launch try is not before this.'),
      deadline_at: timestamp
        .nullable()
        .describe('While queued: a launch try failing after this fails the job (infrastructure).'),
    })
    .nullable()
    .describe(
      'Why a job waits: its launches met no capacity, a quota or throttling and are retried with backoff. Null when no launch try failed.',
    ),
  output: z.strictObject({
    uri: z.string(),
    download_url: z.string().nullable(),
    available: z.boolean(),
  }),
  error: JobErrorSchema.nullable(),
  links: z.strictObject({
    self: z.string(),
    logs: z.string(),
    result: z.string(),
    output: z.string(),
    files: z.string(),
    cancel: z.string(),
  }),
});

export const JobListSchema = z.strictObject({
  jobs: z.array(JobViewSchema),
  next_cursor: z.string().nullable().describe('Pass as cursor for the next page; null on the last.'),
});

export const LogLineSchema = z.strictObject({
  ts: timestamp,
  stream: z.enum(['stdout', 'stderr', 'output', 'runner']),
  text: z.string(),
  truncated: z
    .boolean()
    .optional()
    .describe('The line was longer than a log line may be: text is its beginning.'),
});

export const LogPageSchema = z.strictObject({
  lines: z.array(LogLineSchema),
  next_cursor: z.string().describe('Resume here for the lines after this page (never skips or repeats).'),
  at_end: z.boolean().describe('The page ended at the current end of the log.'),
});

/** GET /v1/jobs/{id}: the job, and with include_logs=true the last lines of its log. */
export const JobWithLogsSchema = JobViewSchema.extend({ logs: LogPageSchema.optional() });

export const CellErrorSchema = z.strictObject({
  ename: z.string(),
  evalue: z.string(),
  traceback: z.array(z.string()).describe('Traceback lines with ANSI colour codes removed.'),
});

export const CellResultSchema = z.strictObject({
  index: z.int().min(0).describe("Index in the notebook's cells (markdown cells included)."),
  execution_count: z.int().nullable(),
  status: z.enum(['ok', 'error', 'skipped', 'not_run']),
  duration_seconds: z.number().nullable(),
  source_preview: z.string(),
  output_text: z.string().describe('The text of the outputs, joined; when over the limit, its end.'),
  output_chars: z.int().min(0).describe('Length of the full output text before truncation.'),
  truncated: z.boolean(),
  error: CellErrorSchema.optional(),
});

export const ResultSummarySchema = z.strictObject({
  cells: z.array(CellResultSchema),
  totals: z.strictObject({
    code_cells: z.int().min(0),
    ok: z.int().min(0),
    error: z.int().min(0),
    skipped: z.int().min(0),
    not_run: z.int().min(0),
  }),
  named_results: z.record(z.string(), z.unknown()),
  error: z
    .strictObject({ cell_index: z.int().min(0), ...CellErrorSchema.shape })
    .nullable()
    .describe('The first failing cell (papermill stops there), or null.'),
  stopped: z
    .strictObject({
      cell_index: z.int().min(0),
      ename: z.literal('SystemExit'),
      evalue: z.string(),
      message: z.string(),
    })
    .nullable()
    .describe(
      'Where a notebook without errors stopped itself with a clean SystemExit (sys.exit(), sys.exit(0)): the job completed and the code cells after this one did not run. Else null.',
    ),
});

/** A file a notebook created or changed in its working folder, saved when it ended. */
export const OutputFileSchema = z.strictObject({
  path: z.string().describe("Relative to the job's working folder (the notebook's folder), '/'-separated."),
  size: z.int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  media_type: z.string().describe('Guessed from the file name; application/octet-stream when unknown.'),
  download: z.string().describe('GET this path (REST) for the bytes, or a redirect to a short-lived URL.'),
});

/** GET /v1/jobs/{id}/files: the output files of an ended job. */
export const JobFilesSchema = z.strictObject({
  job_id: z.string(),
  status: z.enum(JOB_STATUSES),
  files: z.array(OutputFileSchema),
  note: z
    .string()
    .nullable()
    .describe('Why some files were not saved (the count or size cap, links, unreadable files), or null.'),
});

export const ResultViewSchema = z.strictObject({
  job_id: z.string(),
  status: z.enum(JOB_STATUSES),
  error: JobErrorSchema.nullable(),
  output_available: z.boolean(),
  summary: ResultSummarySchema.nullable(),
  files: z
    .array(OutputFileSchema)
    .describe('Files the notebook created or changed in its working folder (empty until it ends).'),
  files_note: z.string().nullable().describe('Why some output files were not saved, or null.'),
});

export const ParameterInfoSchema = z.strictObject({
  name: z.string(),
  inferred_type: z
    .string()
    .nullable()
    .describe('The declared type, else the type of the literal default, else null.'),
  default: z.string().describe("The default's source text."),
  help: z.string().describe("The declaration's trailing comment, or ''."),
});

export const CellCountsSchema = z.strictObject({
  total: z.int().min(0),
  code: z.int().min(0),
  markdown: z.int().min(0),
  raw: z.int().min(0),
});

export const InspectFilesSchema = z
  .strictObject({
    source: z.string().describe("Where the files were looked for: the notebook's folder, or files.uri."),
    files: z
      .array(z.strictObject({ path: z.string(), size: z.int().min(0) }))
      .describe("The files a job would bring, by their path in its working folder (the notebook's folder)."),
    count: z.int().min(0),
    total_bytes: z.int().min(0),
    max_files: z.int().min(0).describe('The most files a job may bring (NOTEBOOK_JOBS_MAX_INPUT_FILES).'),
    max_bytes: z
      .int()
      .min(0)
      .describe('The most bytes of files a job may bring (NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES).'),
    refused: z
      .array(z.strictObject({ path: z.string(), reason: z.string() }))
      .describe(
        'Files (or patterns, or an archive) a job submitted with these files would refuse: links leading outside what may be read, reserved names, past a cap, patterns matching nothing.',
      ),
    accepted: z
      .boolean()
      .describe('Whether a job submitted with these files would take them (nothing refused).'),
  })
  .describe('The input files a job would bring (inspect with files); nothing is stored.');

export const InspectResultSchema = z.strictObject({
  name: z.string().nullable(),
  kernel: z.string(),
  language: z.string(),
  parameters: z.array(ParameterInfoSchema),
  cells: CellCountsSchema,
  files: InspectFilesSchema.optional(),
});

export const CleanupResultSchema = z.strictObject({ deleted: z.array(z.string()), count: z.int().min(0) });

export const DeleteResultSchema = z.strictObject({ job_id: z.string(), deleted: z.literal(true) });

export const UploadSlotSchema = z.strictObject({
  upload_url: z.string(),
  method: z.literal('PUT'),
  notebook_uri: z.string().describe('Submit this as notebook.uri once the PUT has succeeded.'),
  expires_at: timestamp,
  max_bytes: z.int().min(1),
});

export const UploadReceiptSchema = z.strictObject({ notebook_uri: z.string(), size: z.int().min(1) });

export const ERROR_CODES = [
  'invalid_request',
  'not_found',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'method_not_allowed',
  'unauthorized',
  'forbidden',
  'internal',
] as const;

export const ErrorBodySchema = z.strictObject({
  error: z.strictObject({
    code: z.enum(ERROR_CODES),
    message: z.string().min(1).describe('What was wrong and what is allowed.'),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

export type JobView = z.infer<typeof JobViewSchema>;
export type JobList = z.infer<typeof JobListSchema>;
export type LogLine = z.infer<typeof LogLineSchema>;
export type LogPage = z.infer<typeof LogPageSchema>;
export type CellError = z.infer<typeof CellErrorSchema>;
export type CellResult = z.infer<typeof CellResultSchema>;
export type CellStatus = CellResult['status'];
export type ResultSummary = z.infer<typeof ResultSummarySchema>;
export type ResultView = z.infer<typeof ResultViewSchema>;
export type OutputFile = z.infer<typeof OutputFileSchema>;
export type JobFiles = z.infer<typeof JobFilesSchema>;
export type ParameterInfo = z.infer<typeof ParameterInfoSchema>;
export type InspectResult = z.infer<typeof InspectResultSchema>;
export type InspectFiles = z.infer<typeof InspectFilesSchema>;
export type CleanupResult = z.infer<typeof CleanupResultSchema>;
export type DeleteResult = z.infer<typeof DeleteResultSchema>;
export type UploadSlot = z.infer<typeof UploadSlotSchema>;
export type UploadReceipt = z.infer<typeof UploadReceiptSchema>;
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
