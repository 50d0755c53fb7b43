/**
 * OpenAPI 3.1 for REST v1, generated from the same zod schemas the routes validate with.
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

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, {
    io: 'input',
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

const errorBody = {
  description: 'Error',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
};
const jobBody = {
  description: 'The job',
  content: {
    'application/json': { schema: { type: 'object', description: 'See DESIGN 3: the job representation.' } },
  },
};
const jobId = { name: 'job_id', in: 'path', required: true, schema: schemaOf(JobIdSchema) };
const body = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: schemaOf(schema) } },
});
const ok = (description: string) => ({
  description,
  content: { 'application/json': { schema: { type: 'object' } } },
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
          responses: { '200': ok('{jobs, next_cursor}'), '400': errorBody },
        },
      },
      '/v1/jobs/cleanup': {
        post: {
          summary: 'Delete ended jobs older than N hours',
          requestBody: body(CleanupRequestSchema),
          responses: { '200': ok('{deleted, count}'), '400': errorBody },
        },
      },
      '/v1/jobs/{job_id}': {
        get: {
          summary: 'Job status and progress',
          parameters: [jobId, ...queryParameters(GetJobQuerySchema)],
          responses: { '200': jobBody, '400': errorBody, '404': errorBody },
        },
        delete: {
          summary: 'Delete an ended job',
          parameters: [jobId],
          responses: { '200': ok('deleted'), '404': errorBody, '409': errorBody },
        },
      },
      '/v1/jobs/{job_id}/logs': {
        get: {
          summary: 'A page of log lines',
          parameters: [jobId, ...queryParameters(LogsQuerySchema)],
          responses: { '200': ok('{lines, next_cursor, at_end}'), '400': errorBody, '404': errorBody },
        },
      },
      '/v1/jobs/{job_id}/result': {
        get: {
          summary: 'Result summary',
          parameters: [jobId],
          responses: { '200': ok('result summary'), '404': errorBody },
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
            '201': ok('{upload_url, method, notebook_uri, expires_at, max_bytes}'),
            '400': errorBody,
          },
        },
      },
      '/v1/notebooks/inspect': {
        post: {
          summary: 'Inspect a notebook',
          requestBody: body(InspectRequestSchema),
          responses: { '200': ok('inspection'), '400': errorBody },
        },
      },
      '/v1/health': { get: { summary: 'Health', responses: { '200': ok('health') } } },
    },
    components: {
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string' },
                message: { type: 'string' },
                details: { type: 'object' },
              },
            },
          },
        },
      },
    },
  };
  return cached;
}
