/**
 * OpenAPI 3.1 for REST v1, generated from the route table (routes.ts: each route's method, path
 * and `doc`), the zod schemas the routes validate requests with, and the service's response
 * contract (lambda/core/contract.ts). Nothing here lists paths: a route without a document entry,
 * or a documented path without a route, cannot happen.
 */
import * as z from 'zod';
import { JobIdSchema } from '../core/schemas.ts';
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
  JobFilesSchema,
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

/** The response bodies, published once under components.schemas and referred to by name. */
const RESPONSES = {
  Job: JobViewSchema,
  JobWithLogs: JobWithLogsSchema,
  JobList: JobListSchema,
  LogPage: LogPageSchema,
  Result: ResultViewSchema,
  JobFiles: JobFilesSchema,
  Inspection: InspectResultSchema,
  Cleanup: CleanupResultSchema,
  Deleted: DeleteResultSchema,
  UploadSlot: UploadSlotSchema,
  UploadReceipt: UploadReceiptSchema,
  Error: ErrorBodySchema,
} as const;

/** One response of an operation, as OpenAPI writes it. */
export interface ResponseDoc {
  description: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema: JsonSchema }>;
}

/** What a route tells the OpenAPI document beyond its method and path. */
export interface OperationDoc {
  summary: string;
  /** Query parameters: the zod schema the route parses `req.query` with. */
  query?: z.ZodType;
  /** Header parameters, as OpenAPI parameter objects. */
  headers?: JsonSchema[];
  /** A JSON body: the zod schema the route parses it with; or raw content types. */
  body?: z.ZodType | { contentTypes: readonly string[] };
  responses: Record<string, ResponseDoc>;
}

/** What buildOpenApi needs of a route. */
export interface DocumentedRoute {
  method: string;
  /** The OpenAPI path template, e.g. `/v1/jobs/{job_id}`. */
  path: string;
  /** Answers without a token. */
  public?: string;
  doc: OperationDoc;
}

/** A JSON response whose body is one of the contract's named schemas. */
export const jsonResponse = (description: string, name: keyof typeof RESPONSES): ResponseDoc => ({
  description,
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } },
});
export const errorResponseDoc = jsonResponse('Error: what was wrong and what is allowed', 'Error');
export const jobResponse = jsonResponse('The job (DESIGN 3: the job representation)', 'Job');

/** The schema of each path parameter a route template may name. */
const PATH_PARAMETERS: Record<string, JsonSchema> = {
  job_id: schemaOf(JobIdSchema),
  token: { type: 'string', description: 'the token of a local upload URL' },
  path: {
    type: 'string',
    description:
      "an output file's path in the working folder, e.g. plots/loss.png ('/' between folders; each name percent-encoded)",
  },
};

/** `{name+}` (the rest of the path, as API Gateway writes it) is `{name}` in OpenAPI. */
function openApiPath(path: string): string {
  return path.replace(/\{([^}]+)\+\}/g, '{$1}');
}

function pathParameters(template: string): JsonSchema[] {
  const path = openApiPath(template);
  return [...path.matchAll(/\{([^}]+)\}/g)].map(([, name]) => {
    const schema = PATH_PARAMETERS[name as string];
    if (!schema) throw new Error(`no schema for path parameter {${name}} of ${path}`);
    return { name, in: 'path', required: true, schema };
  });
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

function requestBody(body: NonNullable<OperationDoc['body']>): JsonSchema {
  if ('contentTypes' in body) {
    return {
      required: true,
      content: Object.fromEntries(body.contentTypes.map((type) => [type, {}])),
    };
  }
  return { required: true, content: { 'application/json': { schema: schemaOf(body) } } };
}

function operation({ path, public: open, doc }: DocumentedRoute): JsonSchema {
  const parameters = [
    ...pathParameters(path),
    ...(doc.headers ?? []),
    ...(doc.query ? queryParameters(doc.query) : []),
  ];
  return {
    summary: doc.summary,
    ...(parameters.length ? { parameters } : {}),
    ...(doc.body ? { requestBody: requestBody(doc.body) } : {}),
    responses: doc.responses,
    // No token needed: override the document-wide bearer requirement.
    ...(open !== undefined ? { security: [] } : {}),
  };
}

const cache = new WeakMap<readonly DocumentedRoute[], JsonSchema>();

/** The OpenAPI document of `routes` (built once per route table). */
export function buildOpenApi(routes: readonly DocumentedRoute[]): JsonSchema {
  const cached = cache.get(routes);
  if (cached) return cached;
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const route of routes) {
    (paths[openApiPath(route.path)] ??= {})[route.method.toLowerCase()] = operation(route);
  }
  const document = {
    openapi: '3.1.0',
    info: {
      title: 'notebook-jobs',
      version: '1',
      description: 'Run Jupyter notebooks as asynchronous jobs.',
    },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'AWS: an API token (notebook-jobs tokens create). Local: needed only when the server was started with NOTEBOOK_JOBS_TOKEN.',
        },
      },
      schemas: Object.fromEntries(
        Object.entries(RESPONSES).map(([name, schema]) => [name, schemaOf(schema, 'output')]),
      ),
    },
  };
  cache.set(routes, document);
  return document;
}
