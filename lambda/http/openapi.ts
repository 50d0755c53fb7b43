/**
 * OpenAPI 3.1 for REST v1, generated from the same zod schemas the routes validate requests with
 * and the service's response contract (lambda/core/contract.ts).
 */
import { z } from 'zod';
import {
  CleanupRequestSchema,
  CreateJobRequestSchema,
  GetJobQuerySchema,
  InspectRequestSchema,
  JobIdSchema,
  ListJobsQuerySchema,
  LogsQuerySchema,
  OutputQuerySchema,
  UploadRequestSchema,
} from '../core/schemas.ts';
import {
  CleanupResultSchema,
  DeleteResultSchema,
  ErrorBodySchema,
  InspectResultSchema,
  JobListSchema,
  JobViewSchema,
  JobWithLogsSchema,
  LogPageSchema,
  ResultViewSchema,
  UploadReceiptSchema,
  UploadSlotSchema,
} from '../core/contract.ts';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output' = 'input'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
  }) as JsonSchema;
  return rest;
}

function queryParameters(schema: z.ZodType): JsonSchema[] {
  const json = schemaOf(schema) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: 'query',
    required: json.required?.includes(name) ?? false,
    schema: s,
  }));
}

/** The response bodies, published once under components.schemas and referred to by name. */
const RESPONSES = {
  Job: JobViewSchema,
  JobWithLogs: JobWithLogsSchema,
  JobList: JobListSchema,
  LogPage: LogPageSchema,
  Result: ResultViewSchema,
  Inspection: InspectResultSchema,
  Cleanup: CleanupResultSchema,
  Deleted: DeleteResultSchema,
  UploadSlot: UploadSlotSchema,
  UploadReceipt: UploadReceiptSchema,
  Error: ErrorBodySchema,
} as const;

const ok = (description: string, name: keyof typeof RESPONSES) => ({
  description,
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } },
});
const errorBody = ok('Error: what was wrong and what is allowed', 'Error');
const jobBody = ok('The job (DESIGN 3: the job representation)', 'Job');
const jobId = { name: 'job_id', in: 'path', required: true, schema: schemaOf(JobIdSchema) };
const body = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: schemaOf(schema) } },
});
let cached: JsonSchema | null = null;

export function buildOpenApi(): JsonSchema {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'notebook-jobs',
      version: '1',
      description: 'Run Jupyter notebooks as asynchronous jobs.',
    },
    paths: {
      '/v1/jobs': {
        post: {
          summary: 'Create a job',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              schema: { type: 'string', maxLength: 128 },
            },
          ],
          requestBody: body(CreateJobRequestSchema),
          responses: { '201': jobBody, '400': errorBody, '409': errorBody, '413': errorBody },
        },
        get: {
          summary: 'List jobs, newest first',
          parameters: queryParameters(ListJobsQuerySchema),
          responses: { '200': ok('A page of jobs', 'JobList'), '400': errorBody },
        },
      },
      '/v1/jobs/cleanup': {
        post: {
          summary: 'Delete ended jobs older than N hours',
          requestBody: body(CleanupRequestSchema),
          responses: { '200': ok('The deleted job ids', 'Cleanup'), '400': errorBody },
        },
      },
      '/v1/jobs/{job_id}': {
        get: {
          summary: 'Job status and progress',
          parameters: [jobId, ...queryParameters(GetJobQuerySchema)],
          responses: {
            '200': ok('The job, and its last log lines with include_logs=true', 'JobWithLogs'),
            '400': errorBody,
            '404': errorBody,
          },
        },
        delete: {
          summary: 'Delete an ended job',
          parameters: [jobId],
          responses: { '200': ok('Deleted', 'Deleted'), '404': errorBody, '409': errorBody },
        },
      },
      '/v1/jobs/{job_id}/logs': {
        get: {
          summary: 'A page of log lines',
          parameters: [jobId, ...queryParameters(LogsQuerySchema)],
          responses: { '200': ok('A page of log lines', 'LogPage'), '400': errorBody, '404': errorBody },
        },
      },
      '/v1/jobs/{job_id}/result': {
        get: {
          summary: 'Result summary',
          parameters: [jobId],
          responses: { '200': ok('The result summary', 'Result'), '404': errorBody },
        },
      },
      '/v1/jobs/{job_id}/output': {
        get: {
          summary: 'The executed notebook',
          parameters: [jobId, ...queryParameters(OutputQuerySchema)],
          responses: {
            '200': {
              description: 'The notebook',
              content: { 'application/x-ipynb+json': {}, 'text/html': {} },
            },
            '404': errorBody,
          },
        },
      },
      '/v1/jobs/{job_id}/cancel': {
        post: {
          summary: 'Cancel a job',
          parameters: [jobId],
          responses: { '200': jobBody, '404': errorBody, '409': errorBody },
        },
      },
      '/v1/uploads': {
        post: {
          summary: 'Get a short-lived URL to PUT a notebook to, and the notebook_uri to submit afterwards',
          requestBody: body(UploadRequestSchema),
          responses: {
            '201': ok('Where to PUT the notebook, and the notebook_uri to submit', 'UploadSlot'),
            '400': errorBody,
          },
        },
      },
      '/v1/notebooks/inspect': {
        post: {
          summary: 'Inspect a notebook',
          requestBody: body(InspectRequestSchema),
          responses: {
            '200': ok("The notebook's kernel, parameters and cell counts", 'Inspection'),
            '400': errorBody,
          },
        },
      },
      '/v1/uploads/{token}': {
        put: {
          summary:
            'Local mode: receive the notebook at the upload_url (on AWS the upload_url is a presigned S3 URL instead)',
          parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: {
            required: true,
            content: {
              'application/x-ipynb+json': {},
              'application/json': {},
              'application/octet-stream': {},
            },
          },
          responses: {
            '200': ok('Stored', 'UploadReceipt'),
            '400': errorBody,
            '404': errorBody,
            '413': errorBody,
          },
        },
      },
      '/v1/health': {
        get: {
          summary: 'Health',
          responses: {
            '200': {
              description: 'The service is up; the facts vary by mode (engine, kernels, version)',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['status'],
                    properties: { status: { const: 'ok' } },
                  },
                },
              },
            },
          },
        },
      },
    },
    components: {
      schemas: Object.fromEntries(
        Object.entries(RESPONSES).map(([name, schema]) => [name, schemaOf(schema, 'output')]),
      ),
    },
  };
  return cached;
}
