/**
 * REST API v1. Routes only translate: parse and validate the request, call one JobService use
 * case, map the result (or typed error) to a response. The local server and the Lambda handler
 * both call `handleApiRequest`.
 */
import { AppError, InvalidRequestError } from '../core/errors.ts';
import { parseJsonText } from '../core/json.ts';
import { textLog, withFields, type LogFields, type LogFn } from '../core/logging.ts';
import type { JobService } from '../core/job-service.ts';
import {
  CleanupRequestSchema,
  CreateJobRequestSchema,
  GetJobQuerySchema,
  InspectRequestSchema,
  ListJobsQuerySchema,
  LogsQuerySchema,
  OutputQuerySchema,
  parseRequest,
  UploadRequestSchema,
} from '../core/schemas.ts';
import { errorResponse, json } from './errors.ts';
import {
  buildOpenApi,
  errorResponseDoc,
  jobResponse,
  jsonResponse,
  type DocumentedRoute,
} from './openapi.ts';
import type { ApiRequest, ApiResponse } from './types.ts';

export interface ApiContext {
  service: JobService;
  /** Receives uploads when this deployment serves upload URLs itself (local mode). */
  uploads?: { accept(token: string, body: Buffer | null): Promise<{ notebook_uri: string; size: number }> };
  /** Extra facts for GET /v1/health (engine, kernels, version). */
  health: () => Promise<Record<string, unknown>>;
  /** Where internal errors are reported, with the request's fields (default: stderr). */
  log?: LogFn;
}

/**
 * The correlation fields of a request's log lines: method, path, tenant, and the job id when the
 * path names one. Request values are data: the text sink writes them as JSON strings, and the path
 * is cut so a huge one cannot flood the log.
 */
export function requestLogFields(req: Pick<ApiRequest, 'method' | 'path' | 'tenant'>): LogFields {
  const jobId = /^\/v1\/jobs\/([^/]{1,100})/.exec(req.path)?.[1];
  return {
    method: req.method.slice(0, 16),
    path: req.path.slice(0, 256),
    ...(req.tenant ? { tenant: req.tenant } : {}),
    ...(jobId ? { job_id: jobId } : {}),
  };
}

type Handler = (ctx: ApiContext, req: ApiRequest, params: string[]) => Promise<ApiResponse>;

/** One REST route: what it answers, how OpenAPI describes it, and who may call it. */
export interface Route extends DocumentedRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  handler: Handler;
}

const idempotencyKeyParameter = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  schema: { type: 'string', maxLength: 128 },
};

/** An executed notebook, as GET /v1/jobs/{job_id}/output returns it (nbformat 4). */
const notebookSchema = {
  type: 'object',
  required: ['cells', 'metadata', 'nbformat', 'nbformat_minor'],
  properties: {
    cells: { type: 'array', items: { type: 'object' } },
    metadata: { type: 'object' },
    nbformat: { const: 4 },
    nbformat_minor: { type: 'integer' },
  },
};

/**
 * The route table: the local server, the api Lambda, the OpenAPI document (openapi.ts) and the
 * API Gateway resources (lib/rest-api.ts) all come from it. Order matters where paths overlap
 * (`/v1/jobs/cleanup` before `/v1/jobs/{job_id}`).
 */
export const ROUTES: readonly Route[] = [
  {
    method: 'POST',
    path: '/v1/jobs',
    doc: {
      summary: 'Create a job',
      headers: [idempotencyKeyParameter],
      body: CreateJobRequestSchema,
      responses: {
        '201': jobResponse,
        '400': errorResponseDoc,
        '409': errorResponseDoc,
        '413': errorResponseDoc,
      },
    },
    handler: async ({ service }, req) =>
      json(201, await service.create(req.tenant, jsonBody(req), idempotencyKeyHeader(req))),
  },
  {
    method: 'GET',
    path: '/v1/jobs',
    doc: {
      summary: 'List jobs, newest first',
      query: ListJobsQuerySchema,
      responses: { '200': jsonResponse('A page of jobs', 'JobList'), '400': errorResponseDoc },
    },
    handler: async ({ service }, req) =>
      json(200, await service.list(req.tenant, parseRequest(ListJobsQuerySchema, req.query, 'query'))),
  },
  {
    method: 'POST',
    path: '/v1/jobs/cleanup',
    doc: {
      summary: 'Delete ended jobs older than N hours',
      body: CleanupRequestSchema,
      responses: { '200': jsonResponse('The deleted job ids', 'Cleanup'), '400': errorResponseDoc },
    },
    handler: async ({ service }, req) => {
      const body = parseRequest(CleanupRequestSchema, jsonBody(req), 'cleanup request');
      return json(200, await service.cleanup(req.tenant, body.older_than_hours));
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}',
    doc: {
      summary: 'Job status and progress',
      query: GetJobQuerySchema,
      responses: {
        '200': jsonResponse('The job, and its last log lines with include_logs=true', 'JobWithLogs'),
        '400': errorResponseDoc,
        '404': errorResponseDoc,
      },
    },
    handler: async ({ service }, req, [id]) => {
      const query = parseRequest(GetJobQuerySchema, req.query, 'query');
      const job = await service.get(req.tenant, id as string);
      if (!query.include_logs) return json(200, job);
      const logs = await service.logs(req.tenant, id as string, {
        limit: query.log_tail,
        tail: query.log_tail,
      });
      return json(200, { ...job, logs });
    },
  },
  {
    method: 'DELETE',
    path: '/v1/jobs/{job_id}',
    doc: {
      summary: 'Delete an ended job',
      responses: {
        '200': jsonResponse('Deleted', 'Deleted'),
        '404': errorResponseDoc,
        '409': errorResponseDoc,
      },
    },
    handler: async ({ service }, req, [id]) => json(200, await service.delete(req.tenant, id as string)),
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}/logs',
    doc: {
      summary: 'A page of log lines',
      query: LogsQuerySchema,
      responses: {
        '200': jsonResponse('A page of log lines', 'LogPage'),
        '400': errorResponseDoc,
        '404': errorResponseDoc,
      },
    },
    handler: async ({ service }, req, [id]) =>
      json(
        200,
        await service.logs(req.tenant, id as string, parseRequest(LogsQuerySchema, req.query, 'query')),
      ),
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}/result',
    doc: {
      summary: 'Result summary',
      responses: { '200': jsonResponse('The result summary', 'Result'), '404': errorResponseDoc },
    },
    handler: async ({ service }, req, [id]) => json(200, await service.result(req.tenant, id as string)),
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}/output',
    doc: {
      summary: 'The executed notebook',
      query: OutputQuerySchema,
      responses: {
        '200': {
          description: 'The notebook (format=ipynb), or its HTML rendering (format=html)',
          content: {
            'application/x-ipynb+json': { schema: notebookSchema },
            'text/html': { schema: { type: 'string' } },
          },
        },
        '302': {
          description: 'A short-lived download URL for the notebook (AWS: presigned S3 GET)',
          headers: { Location: { required: true, schema: { type: 'string', format: 'uri' } } },
        },
        '400': errorResponseDoc,
        '404': errorResponseDoc,
      },
    },
    handler: async ({ service }, req, [id]): Promise<ApiResponse> => {
      const { format } = parseRequest(OutputQuerySchema, req.query, 'query');
      const output = await service.output(req.tenant, id as string, format);
      if ('url' in output) return { status: 302, headers: { location: output.url }, body: '' };
      const { name, body } = output;
      return {
        status: 200,
        headers: {
          'content-type': format === 'html' ? 'text/html; charset=utf-8' : 'application/x-ipynb+json',
          'content-disposition': contentDisposition(format === 'html' ? 'inline' : 'attachment', name),
        },
        body,
      };
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}/files',
    doc: {
      summary: 'The files the notebook created or changed in its working folder',
      responses: { '200': jsonResponse('The output files', 'JobFiles'), '404': errorResponseDoc },
    },
    handler: async ({ service }, req, [id]) => json(200, await service.files(req.tenant, id as string)),
  },
  {
    method: 'GET',
    path: '/v1/jobs/{job_id}/files/{path+}',
    doc: {
      summary: 'One output file',
      responses: {
        '200': {
          description: 'The file (served as an attachment, with the media type its name suggests)',
          content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
        },
        '302': {
          description: 'A short-lived download URL for the file (AWS: presigned S3 GET)',
          headers: { Location: { required: true, schema: { type: 'string', format: 'uri' } } },
        },
        '400': errorResponseDoc,
        '404': errorResponseDoc,
      },
    },
    handler: async ({ service }, req, [id, path]): Promise<ApiResponse> => {
      const found = await service.file(req.tenant, id as string, path as string);
      if ('url' in found) return { status: 302, headers: { location: found.url }, body: '' };
      const name = found.file.path.slice(found.file.path.lastIndexOf('/') + 1);
      return {
        status: 200,
        headers: {
          // Always an attachment, never sniffed: a notebook's HTML or SVG must not run as this origin.
          'content-type': found.file.media_type,
          'content-disposition': contentDisposition('attachment', name),
          'x-content-type-options': 'nosniff',
        },
        body: found.body,
      };
    },
  },
  {
    method: 'POST',
    path: '/v1/jobs/{job_id}/cancel',
    doc: {
      summary: 'Cancel a job',
      responses: { '200': jobResponse, '404': errorResponseDoc, '409': errorResponseDoc },
    },
    handler: async ({ service }, req, [id]) => json(200, await service.cancel(req.tenant, id as string)),
  },
  {
    method: 'POST',
    path: '/v1/uploads',
    doc: {
      summary: 'Get a short-lived URL to PUT a notebook to, and the notebook_uri to submit afterwards',
      body: UploadRequestSchema,
      responses: {
        '201': jsonResponse('Where to PUT the notebook, and the notebook_uri to submit', 'UploadSlot'),
        '400': errorResponseDoc,
      },
    },
    handler: async ({ service }, req) => json(201, await service.createUpload(req.tenant, jsonBody(req))),
  },
  {
    method: 'PUT',
    path: '/v1/uploads/{token}',
    doc: {
      summary:
        'Local mode: receive the notebook at the upload_url (on AWS the upload_url is a presigned S3 URL instead)',
      body: { contentTypes: ['application/x-ipynb+json', 'application/json', 'application/octet-stream'] },
      responses: {
        '200': jsonResponse('Stored', 'UploadReceipt'),
        '400': errorResponseDoc,
        '404': errorResponseDoc,
        '413': errorResponseDoc,
      },
    },
    handler: async ({ uploads }, req, [token]) => {
      if (!uploads)
        throw new AppError(
          'not_found',
          'this deployment does not receive uploads itself; PUT to the upload_url',
        );
      return json(200, await uploads.accept(token as string, req.body));
    },
  },
  {
    method: 'POST',
    path: '/v1/notebooks/inspect',
    doc: {
      summary: 'Inspect a notebook',
      body: InspectRequestSchema,
      responses: {
        '200': jsonResponse(
          "The notebook's kernel, parameters and cell counts; with files, the input files a job would bring",
          'Inspection',
        ),
        '400': errorResponseDoc,
      },
    },
    handler: async ({ service }, req) =>
      json(
        200,
        await service.inspect(
          req.tenant,
          parseRequest(InspectRequestSchema, jsonBody(req), 'inspect request'),
        ),
      ),
  },
  {
    method: 'GET',
    path: '/v1/health',
    public:
      'load balancers, uptime probes and supervisors call it without a token; it reveals nothing about jobs',
    doc: {
      summary: 'Health',
      responses: {
        '200': {
          description: 'The service is up; the facts vary by mode (engine, kernels, version)',
          content: {
            'application/json': {
              schema: { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
            },
          },
        },
      },
    },
    handler: async ({ health }) => json(200, { status: 'ok', ...(await health()) }),
  },
  {
    // Takes the token like every business route (locally when one is set; on AWS always).
    method: 'GET',
    path: '/openapi.json',
    doc: {
      summary: 'This document',
      responses: {
        '200': {
          description: 'OpenAPI 3.1',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['openapi', 'info', 'paths'],
                properties: {
                  openapi: { type: 'string' },
                  info: { type: 'object' },
                  paths: { type: 'object' },
                  components: { type: 'object' },
                },
              },
            },
          },
        },
      },
    },
    handler: async () => json(200, buildOpenApi(ROUTES)),
  },
];

/** The routes that answer without a token, as `METHOD /path` (the api Lambda, the local server). */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(
  ROUTES.filter((route) => route.public !== undefined).map((route) => `${route.method} ${route.path}`),
);

/**
 * Path templates as patterns: each `{name}` is one path segment, captured; a final `{name+}` is
 * the rest of the path (one or more segments, each decoded on its own, joined by '/').
 */
const PATTERNS = new Map(
  ROUTES.map((route) => [
    route,
    new RegExp(
      `^${route.path
        .replace(/[.]/g, '\\.')
        .replace(/\{[^}]+\+\}/g, '(.+)')
        .replace(/\{[^}+]+\}/g, '([^/]+)')}$`,
    ),
  ]),
);

export async function handleApiRequest(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  try {
    const matching = ROUTES.map((route) => ({
      route,
      match: (PATTERNS.get(route) as RegExp).exec(req.path),
    })).filter((m): m is { route: Route; match: RegExpExecArray } => m.match !== null);
    if (matching.length === 0)
      throw new AppError('not_found', `no route for ${req.method} ${req.path}; see /openapi.json`);
    const found = matching.find((m) => m.route.method === req.method);
    if (!found) {
      const allow = matching.map((m) => m.route.method).join(', ');
      const response = errorResponse(
        new AppError('method_not_allowed', `${req.method} is not allowed on ${req.path}; allowed: ${allow}`),
      );
      return { ...response, headers: { ...response.headers, allow } };
    }
    const params = found.match.slice(1).map((raw) => raw.split('/').map(decodePathSegment).join('/'));
    return await found.route.handler(ctx, req, params);
  } catch (error) {
    return errorResponse(error, withFields(ctx.log ?? textLog(), requestLogFields(req)));
  }
}

function jsonBody(req: ApiRequest): unknown {
  const text = req.body?.toString('utf8') ?? '';
  if (text.trim() === '') throw new InvalidRequestError('request body is empty; send a JSON object');
  return parseJsonText(text, 'request body');
}

function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidRequestError(
      `path segment "${segment}" is not valid percent-encoding (each %XX must form UTF-8)`,
      { segment },
    );
  }
}

/** The body field `idempotency_key` allows 1-128 characters; the header gets the same cap. */
const IDEMPOTENCY_KEY_HEADER = /^[\x20-\x7e]{1,128}$/;

function idempotencyKeyHeader(req: ApiRequest): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (!IDEMPOTENCY_KEY_HEADER.test(key)) {
    throw new InvalidRequestError(
      `Idempotency-Key header must be 1 to 128 printable ASCII characters (got ${key.length} characters)`,
      { header: 'idempotency-key', length: key.length, max_length: 128 },
    );
  }
  return key;
}

/**
 * Content-Disposition for a file name that may hold any Unicode (RFC 6266): an ASCII `filename`
 * for old clients, and the exact name as RFC 5987 `filename*`. Nothing from the name can reach the
 * header raw, so no name can make writing the response throw.
 */
export function contentDisposition(type: 'attachment' | 'inline', name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\]/gu, '_');
  // A lone surrogate would make encodeURIComponent throw. RFC 5987 attr-char leaves only
  // ALPHA DIGIT !#$&+-.^_`|~ unencoded; encodeURIComponent also leaves '()* alone: encoded here.
  const encoded = encodeURIComponent(name.replace(/\p{Cs}/gu, '\ufffd')).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${type}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
