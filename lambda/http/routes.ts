/**
 * REST API v1. Routes only translate: parse and validate the request, call one JobService use
 * case, map the result (or typed error) to a response. The local server and the Lambda handler
 * both call `handleApiRequest`.
 */
import { AppError, InvalidRequestError } from '../core/errors.ts';
import { parseJsonText } from '../core/json.ts';
import type { JobService } from '../core/job-service.ts';
import {
  CleanupRequestSchema,
  GetJobQuerySchema,
  InspectRequestSchema,
  ListJobsQuerySchema,
  LogsQuerySchema,
  OutputQuerySchema,
  parseRequest,
} from '../core/schemas.ts';
import { errorResponse, json } from './errors.ts';
import { buildOpenApi } from './openapi.ts';
import type { ApiRequest, ApiResponse } from './types.ts';

export interface ApiContext {
  service: JobService;
  /** Receives uploads when this deployment serves upload URLs itself (local mode). */
  uploads?: { accept(token: string, body: Buffer | null): Promise<{ notebook_uri: string; size: number }> };
  /** Extra facts for GET /v1/health (engine, kernels, version). */
  health: () => Promise<Record<string, unknown>>;
}

type Handler = (ctx: ApiContext, req: ApiRequest, params: string[]) => Promise<ApiResponse>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const JOB = '([^/]+)';

const routes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/v1\/jobs$/,
    handler: async ({ service }, req) =>
      json(201, await service.create(req.tenant, jsonBody(req), idempotencyKeyHeader(req))),
  },
  {
    method: 'GET',
    pattern: /^\/v1\/jobs$/,
    handler: async ({ service }, req) =>
      json(200, await service.list(req.tenant, parseRequest(ListJobsQuerySchema, req.query, 'query'))),
  },
  {
    method: 'POST',
    pattern: /^\/v1\/jobs\/cleanup$/,
    handler: async ({ service }, req) => {
      const body = parseRequest(CleanupRequestSchema, jsonBody(req), 'cleanup request');
      return json(200, await service.cleanup(req.tenant, body.older_than_hours));
    },
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/jobs/${JOB}$`),
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
    pattern: new RegExp(`^/v1/jobs/${JOB}$`),
    handler: async ({ service }, req, [id]) => json(200, await service.delete(req.tenant, id as string)),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/jobs/${JOB}/logs$`),
    handler: async ({ service }, req, [id]) =>
      json(
        200,
        await service.logs(req.tenant, id as string, parseRequest(LogsQuerySchema, req.query, 'query')),
      ),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/jobs/${JOB}/result$`),
    handler: async ({ service }, req, [id]) => json(200, await service.result(req.tenant, id as string)),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/jobs/${JOB}/output$`),
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
    method: 'POST',
    pattern: new RegExp(`^/v1/jobs/${JOB}/cancel$`),
    handler: async ({ service }, req, [id]) => json(200, await service.cancel(req.tenant, id as string)),
  },
  {
    method: 'POST',
    pattern: /^\/v1\/uploads$/,
    handler: async ({ service }, req) => json(201, await service.createUpload(req.tenant, jsonBody(req))),
  },
  {
    method: 'PUT',
    pattern: /^\/v1\/uploads\/([^/]+)$/,
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
    pattern: /^\/v1\/notebooks\/inspect$/,
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
    pattern: /^\/v1\/health$/,
    handler: async ({ health }) => json(200, { status: 'ok', ...(await health()) }),
  },
  {
    method: 'GET',
    pattern: /^\/openapi\.json$/,
    handler: async () => json(200, buildOpenApi()),
  },
];

export async function handleApiRequest(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  try {
    const matching = routes
      .map((route) => ({ route, match: route.pattern.exec(req.path) }))
      .filter((m): m is { route: Route; match: RegExpExecArray } => m.match !== null);
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
    const params = found.match.slice(1).map(decodePathSegment);
    return await found.route.handler(ctx, req, params);
  } catch (error) {
    return errorResponse(error);
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
