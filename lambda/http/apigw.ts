/**
 * Translation between API Gateway REST API Lambda proxy events and the transport-neutral shapes the
 * routes (ApiRequest/ApiResponse) and the MCP transport (web Request/Response) speak. Pure functions:
 * no AWS calls, no business rules.
 *
 * Facts this relies on (API Gateway REST, Lambda proxy integration):
 * - `event.path` is percent-encoded as the client sent it; query parameters arrive decoded.
 * - On the execute-api URL `event.path` lacks the stage (`/v1/jobs`), while `requestContext.path`
 *   has it (`/prod/v1/jobs`). On a custom domain with a base path mapping, both carry the base path
 *   (`/nbj/v1/jobs`). `routePath` therefore derives the route from the matched resource template.
 * - `multiValueHeaders` / `multiValueQueryStringParameters` hold every value; the single-value maps
 *   hold only the last one.
 * - A body is base64 (`isBase64Encoded`) when its content type is one of the API's binary media
 *   types; a response body is decoded from base64 only for binary media types too, so text goes
 *   back as text.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { TOKEN_SCOPES, type TokenScope } from '../adapters/dynamodb/token-store.ts';
import { AppError } from '../core/errors.ts';
import { errorResponse } from './errors.ts';
import type { ApiRequest, ApiResponse } from './types.ts';

/** What the authorizer established about the caller (its `context`, as API Gateway passes it on). */
export interface CallerAuth {
  tenant: string;
  scopes: TokenScope[];
  token_id: string | null;
}

/** The tenant and scopes the authorizer put in `requestContext.authorizer`, or null when none ran. */
export function authOf(event: Pick<APIGatewayProxyEvent, 'requestContext'>): CallerAuth | null {
  const context = event.requestContext?.authorizer as Record<string, unknown> | null | undefined;
  const tenant = context?.tenant;
  if (typeof tenant !== 'string' || tenant === '') return null;
  const scopes = typeof context?.scopes === 'string' ? context.scopes.split(',') : [];
  return {
    tenant,
    scopes: TOKEN_SCOPES.filter((s) => scopes.includes(s)),
    token_id: typeof context?.token_id === 'string' ? context.token_id : null,
  };
}

/** The scope a request needs: reading (GET, HEAD) needs `read`, anything else `write`. */
export function requiredScope(method: string): TokenScope {
  return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
}

/** 403 in the house error format, for a caller whose token lacks a scope. */
export function forbidden(scope: TokenScope, method: string, path: string): ApiResponse {
  return errorResponse(
    new AppError(
      'forbidden',
      `this token lacks the "${scope}" scope that ${method} ${path} needs; create a token with --scopes read,write`,
      { required_scope: scope },
    ),
  );
}

/** Headers with lower-cased names; repeated headers joined with ", " (as node:http does). */
export function headersOf(
  event: Pick<APIGatewayProxyEvent, 'headers' | 'multiValueHeaders'>,
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers ?? {}))
    if (value !== undefined) headers[name.toLowerCase()] = value;
  for (const [name, values] of Object.entries(event.multiValueHeaders ?? {}))
    if (values && values.length > 0) headers[name.toLowerCase()] = values.join(', ');
  return headers;
}

/** Query parameters, decoded; for a repeated name the last value wins (as in local mode). */
export function queryOf(
  event: Pick<APIGatewayProxyEvent, 'queryStringParameters' | 'multiValueQueryStringParameters'>,
): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.queryStringParameters ?? {}))
    if (value !== undefined) query[name] = value;
  for (const [name, values] of Object.entries(event.multiValueQueryStringParameters ?? {}))
    if (values && values.length > 0) query[name] = values[values.length - 1] as string;
  return query;
}

/** The request body as bytes (base64 bodies decoded), or null when there is none. */
export function bodyOf(event: Pick<APIGatewayProxyEvent, 'body' | 'isBase64Encoded'>): Buffer | null {
  if (event.body === null || event.body === undefined || event.body === '') return null;
  return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
}

/**
 * The path the routes match, without stage or custom-domain base path: the tail of `event.path`
 * that the matched resource template (`/v1/jobs/{job_id}`, `/{proxy+}`) describes. Falls back to
 * `event.path` when the two do not line up.
 */
export function routePath(event: Pick<APIGatewayProxyEvent, 'path' | 'resource' | 'pathParameters'>): string {
  const path = event.path || '/';
  const template = (event.resource ?? '').split('/').filter(Boolean);
  if (template.length === 0) return path;
  const segments = path.split('/').filter(Boolean);
  const trailingSlash = path.length > 1 && path.endsWith('/') ? '/' : '';
  const last = template[template.length - 1] as string;
  const greedy = /^\{(.+)\+\}$/.exec(last);
  let count = template.length;
  if (greedy) {
    const value = event.pathParameters?.[greedy[1] as string] ?? '';
    count = template.length - 1 + value.split('/').filter(Boolean).length;
  }
  if (count > segments.length) return path;
  const tail = segments.slice(segments.length - count);
  const fixed = greedy ? template.slice(0, -1) : template;
  const matches = fixed.every((part, i) => /^\{.+\}$/.test(part) || part === tail[i]);
  return matches ? `/${tail.join('/')}${trailingSlash}` : path;
}

/** Builds the routes' request from a proxy event, for an authenticated `tenant`. */
export function toApiRequest(event: APIGatewayProxyEvent, tenant: string): ApiRequest {
  return {
    method: event.httpMethod,
    path: routePath(event),
    query: queryOf(event),
    headers: headersOf(event),
    body: bodyOf(event),
    tenant,
  };
}

/** Converts a route response; text goes back as text, other bytes as base64. */
export function toProxyResult(response: ApiResponse): APIGatewayProxyResult {
  const body =
    typeof response.body === 'string'
      ? { body: response.body, isBase64Encoded: false }
      : encodeBody(response.body, response.headers['content-type']);
  return { statusCode: response.status, headers: { ...response.headers }, ...body };
}

/**
 * A web standard Request for the same call (the MCP transport takes one): the absolute URL the
 * client used (Host + X-Forwarded-Proto + requestContext.path, which keeps the stage), method,
 * every header value, and the body.
 */
export function toWebRequest(event: APIGatewayProxyEvent): Request {
  const single = headersOf(event);
  const host = single.host ?? event.requestContext.domainName ?? 'localhost';
  const proto = (single['x-forwarded-proto'] ?? 'https').split(',')[0]?.trim() || 'https';
  const query = new URLSearchParams();
  const multi = event.multiValueQueryStringParameters;
  if (multi) {
    for (const [name, values] of Object.entries(multi))
      for (const value of values ?? []) query.append(name, value);
  } else {
    for (const [name, value] of Object.entries(event.queryStringParameters ?? {}))
      if (value !== undefined) query.append(name, value);
  }
  const search = query.size > 0 ? `?${query}` : '';
  const url = `${proto}://${host}${event.requestContext.path || event.path}${search}`;

  const headers = new Headers();
  if (event.multiValueHeaders) {
    for (const [name, values] of Object.entries(event.multiValueHeaders))
      for (const value of values ?? []) headers.append(name, value);
  } else {
    for (const [name, value] of Object.entries(event.headers ?? {}))
      if (value !== undefined) headers.append(name, value);
  }
  // The body below may be re-encoded (base64 decoded); let fetch compute its length.
  headers.delete('content-length');
  const body = event.httpMethod === 'GET' || event.httpMethod === 'HEAD' ? null : bodyOf(event);
  return new Request(url, { method: event.httpMethod, headers, body: body && new Uint8Array(body) });
}

/** Converts a web standard Response (from the MCP transport) into a proxy result. */
export async function fromWebResponse(response: Response): Promise<APIGatewayProxyResult> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  const bytes = Buffer.from(await response.arrayBuffer());
  return {
    statusCode: response.status,
    headers,
    ...(cookies.length > 0 ? { multiValueHeaders: { 'set-cookie': cookies } } : {}),
    ...encodeBody(bytes, headers['content-type']),
  };
}

const TEXT_TYPE = /^(text\/|application\/([\w.+-]*\+)?(json|xml|javascript|x-ipynb\+json)\b)/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Text media types are returned as text: API Gateway decodes base64 only for the API's binary
 * media types, so base64 for a JSON notebook would reach clients as base64 text.
 */
function encodeBody(
  bytes: Buffer,
  contentType: string | undefined,
): { body: string; isBase64Encoded: boolean } {
  if (bytes.length === 0) return { body: '', isBase64Encoded: false };
  if (contentType && TEXT_TYPE.test(contentType)) {
    try {
      return { body: utf8.decode(bytes), isBase64Encoded: false };
    } catch {
      // Not valid UTF-8 after all: fall through to base64.
    }
  }
  return { body: bytes.toString('base64'), isBase64Encoded: true };
}
