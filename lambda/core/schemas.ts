/**
 * One zod schema per request: the single source for types, REST validation, the MCP input schemas
 * and the OpenAPI document.
 */
import * as z from 'zod';
import { InvalidRequestError } from './errors.ts';
import { JOB_STATUSES } from './job.ts';
import { JOB_ID_PATTERN } from './ids.ts';
import { NotebookNameSchema } from './names.ts';
import { DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS } from './settings.ts';
import { MAX_SECRETS } from './secrets.ts';

/** Below API Gateway's 29 s integration limit, leaving time to answer. */
export const MAX_WAIT_SECONDS = 25;

export const JobIdSchema = z
  .string()
  .regex(
    JOB_ID_PATTERN,
    'must be a job id such as job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX (job_ + 30 characters)',
  );

/** Every notebook name a request carries (REST, MCP, uploads): see checkNotebookName. */
export { NotebookNameSchema };

export const NotebookSourceSchema = z.union([
  z
    .object({
      content: z.record(z.string(), z.unknown()).describe('The notebook itself (nbformat 4 JSON).'),
      name: NotebookNameSchema.optional(),
    })
    .strict(),
  z
    .object({
      uri: z
        .string()
        .min(1)
        .max(2048)
        .describe('s3:// in an allowed bucket, or file:// under the workspace.'),
      name: NotebookNameSchema.optional(),
    })
    .strict(),
]);

export const FilesSourceSchema = z
  .union([
    z
      .strictObject({ from: z.literal('folder') })
      .describe("Every file of the notebook's folder (notebook.uri names it), recursively."),
    z
      .strictObject({
        paths: z
          .array(z.string().min(1).max(1024))
          .min(1)
          .max(1000)
          .describe("Paths or globs relative to the notebook's folder: data/*.csv, utils.py, data/**"),
      })
      .describe("Files of the notebook's folder (notebook.uri names it) chosen by path or glob."),
    z
      .strictObject({
        uri: z
          .string()
          .min(1)
          .max(2048)
          .describe(
            'An uploaded .zip or .tar.gz (POST /v1/uploads), unpacked into the working folder; or a folder (URI ending in "/"): on AWS an s3:// prefix allowed for the tenant, locally a file:// folder under the workspace.',
          ),
      })
      .describe('Files from an archive or a folder.'),
  ])
  .describe(
    "Input files, placed in the job's working folder (the notebook's folder) before the kernel starts, so relative paths work as in Jupyter.",
  );
export type FilesSource = z.infer<typeof FilesSourceSchema>;

const ParameterName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an identifier');
const TagKey = z.string().regex(/^[A-Za-z0-9_.:/=+@-]{1,128}$/, 'tag keys are 1-128 of A-Z a-z 0-9 _.:/=+@-');

export const CreateJobBaseSchema = z
  .object({
    notebook: NotebookSourceSchema,
    files: FilesSourceSchema.optional(),
    parameters: z.record(ParameterName, z.unknown().describe('Any JSON value.')).default({}),
    allow_unknown_parameters: z.boolean().default(false),
    kernel: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/)
      .optional()
      .describe("Kernel name; default: the notebook's kernelspec, else python3."),
    timeout_seconds: z.int().min(1).max(MAX_TIMEOUT_SECONDS).default(DEFAULT_TIMEOUT_SECONDS),
    cell_timeout_seconds: z.int().min(1).max(MAX_TIMEOUT_SECONDS).nullable().default(null),
    priority: z.int().min(-1000).max(1000).default(0).describe('Higher starts first.'),
    tags: z.record(TagKey, z.string().max(256)).default({}),
    cpu: z.int().positive().nullable().default(null).describe('AWS: Fargate CPU units.'),
    memory: z.int().positive().nullable().default(null).describe('AWS: Fargate memory in MiB.'),
    idempotency_key: z.string().min(1).max(128).optional(),
    secrets: z
      .record(
        // The name's rules (a variable name, not a reserved one) are checked with its reference at
        // submit, with a message that says which rule (lambda/core/secrets.ts).
        z.string().max(128),
        z.string().min(1).max(2048),
      )
      .default({})
      .describe(
        'Environment variables for the kernel, each a reference resolved by the runner just before the kernel starts: ' +
          'secretsmanager:<name or ARN> and ssm:<parameter path> on AWS (under notebook-jobs/<tenant>/), ' +
          'env:<VARIABLE> and file:<path> locally. Only references are stored; values are redacted from outputs and logs.',
      )
      .refine((secrets) => Object.keys(secrets).length <= MAX_SECRETS, `at most ${MAX_SECRETS} secrets`),
    redact_parameters: z
      .array(ParameterName)
      .max(100)
      .default([])
      .describe(
        'Parameters whose values are kept out of the stored notebook, HTML, logs and job view (shown as [redacted]); the kernel gets the real value.',
      ),
  })
  .strict();

export const CreateJobRequestSchema = CreateJobBaseSchema.extend({
  wait_seconds: z
    .number()
    .min(0)
    .max(MAX_WAIT_SECONDS)
    .default(0)
    .describe('Wait up to this many seconds for the job to finish before answering.'),
}).strict();
export type CreateJobRequest = z.infer<typeof CreateJobRequestSchema>;

export const ListJobsQuerySchema = z
  .object({
    status: z.enum(JOB_STATUSES).optional(),
    tag: z
      .string()
      .regex(/^[^=]+=.*$/, 'must be key=value')
      .optional(),
    limit: z.coerce.number().int().min(1).max(100).default(20),
    cursor: z.string().max(4096).optional(),
  })
  .strict();
export type ListJobsRequest = z.infer<typeof ListJobsQuerySchema>;

export const GetJobQuerySchema = z
  .object({
    include_logs: z.stringbool().default(false),
    log_tail: z.coerce.number().int().min(1).max(1000).default(50),
  })
  .strict();

export const LogsQuerySchema = z
  .object({
    cursor: z.string().max(4096).optional(),
    limit: z.coerce.number().int().min(1).max(5000).default(500),
    tail: z.coerce.number().int().min(1).max(5000).optional(),
  })
  .strict()
  .refine((q) => !(q.cursor && q.tail), { message: 'use either cursor or tail, not both' });
export type LogsRequest = z.infer<typeof LogsQuerySchema>;

export const CleanupRequestSchema = z
  .object({
    older_than_hours: z
      .number()
      .min(0)
      .max(24 * 365),
  })
  .strict();

/** An archive of input files may be uploaded too: its name is a notebook name's rules, with its suffix. */
const ArchiveNameSchema = z
  .string()
  .regex(/\.(zip|tar\.gz|tgz)$/, 'ends in .zip, .tar.gz or .tgz')
  .pipe(
    z.string().transform((name, ctx) => {
      const stem = name.replace(/\.(zip|tar\.gz|tgz)$/, '');
      const checked = NotebookNameSchema.safeParse(`${stem}.ipynb`);
      if (!checked.success) {
        for (const issue of checked.error.issues)
          ctx.addIssue({ code: 'custom', message: issue.message.replace(/\.ipynb/g, '.zip/.tar.gz') });
        return z.NEVER;
      }
      return `${checked.data.slice(0, -'.ipynb'.length)}${name.slice(stem.length)}`;
    }),
  );

export const UploadRequestSchema = z
  .object({
    name: z
      .union([NotebookNameSchema, ArchiveNameSchema])
      .describe('A notebook (name.ipynb), or an archive of input files (name.zip, name.tar.gz).'),
  })
  .strict();

export const InspectRequestSchema = z
  .object({
    notebook: NotebookSourceSchema,
    files: FilesSourceSchema.optional().describe(
      'Also list the input files a job with this files field would bring (names, sizes, total, caps, refusals), as submit would select them; nothing is stored.',
    ),
  })
  .strict();
export type InspectRequest = z.infer<typeof InspectRequestSchema>;

export const OutputQuerySchema = z.object({ format: z.enum(['ipynb', 'html']).default('ipynb') }).strict();

/** Parses input against a schema; failures become one InvalidRequestError naming each problem. */
export function parseRequest<S extends z.ZodType>(schema: S, input: unknown, what = 'request'): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.join('.') : what;
    return `${path}: ${issue.message}`;
  });
  throw new InvalidRequestError(`invalid ${what}: ${problems.join('; ')}`, { problems });
}
