/**
 * Who may call the local server, decided from the request line and headers alone, before any body
 * is read (split from local-server.ts): the Host and Origin checks, the token or OAuth bearer, and
 * the JSON-only bodies. docs/architecture.md, "Security model", says why each holds.
 */
import { type IncomingMessage } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { AppError, InvalidRequestError, UnsupportedMediaTypeError } from '../core/errors.ts';
import { ConfigError } from '../core/config.ts';
import { clip } from '../core/names.ts';
import { PUBLIC_ROUTES } from '../http/routes.ts';
import { authenticate, requireScopes, type BearerPolicy, type Caller } from '../auth/bearer.ts';
import { JwtVerifier } from '../auth/jwt-verifier.ts';
import { checkOAuthConfig, metadataPaths } from '../auth/protected-resource.ts';
import { requiredScope } from '../http/apigw.ts';

import type { LocalServerOptions } from './local-server.ts';

/** The tenant of every local caller (one user; OAuth callers bring their own). */
export const LOCAL_TENANT = 'local';

/**
 * Who may call, decided from the request line and headers alone, before any body is read. The
 * server listens on loopback, but a browser on this machine can still be made to send requests to
 * it: a page on any site can POST "simple" cross-site requests (text/plain, forms), and a domain
 * that re-resolves to 127.0.0.1 (DNS rebinding) can even read the answers. The Host check stops
 * rebinding, the Origin check and the JSON-only bodies stop cross-site requests, the token (when
 * configured) stops other local users and programs.
 */
export interface CallerPolicy {
  /** Accepted Host header values, as `name:port` in lower case. */
  hosts: ReadonlySet<string>;
  /** Accepted Origin header values, serialized (`http://localhost:8080`). */
  origins: ReadonlySet<string>;
  /** How a bearer token is checked; null when the server needs none (no token, no OAuth). */
  bearer: BearerPolicy | null;
}

export const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

/** Checks the configured hosts and origins at once (fail fast); the policy itself needs the port. */
export function callerPolicyFor(options: LocalServerOptions): (port: number) => CallerPolicy {
  const names = [
    ...LOOPBACK_NAMES,
    hostForUrl(options.host ?? '127.0.0.1'),
    ...(options.allowedHosts ?? []).map((name) => name.trim()),
  ];
  for (const name of names) {
    if (!parseHost(name, 0))
      throw new ConfigError(`allowed host "${name}" is not a host name, IP address or name:port`);
  }
  const extraOrigins = (options.allowedOrigins ?? []).map((entry) => {
    const origin = originOf(entry.trim());
    if (!origin)
      throw new ConfigError(`allowed origin "${entry}" is not an origin like http://localhost:6274`);
    return origin;
  });
  const token = options.token || undefined;
  const oauthAt = (audience: string) =>
    options.oauth ? checkOAuthConfig({ ...options.oauth, audience }) : null;
  // Checked now, before the server listens; the default audience needs the port.
  oauthAt(options.oauth?.audience ?? 'http://127.0.0.1/mcp');
  return (port) => {
    const hosts = new Set(names.map((name) => parseHost(name, port) as string));
    const own = [...hosts].map((host) => new URL(`http://${host}`).origin);
    const config = oauthAt(
      options.oauth?.audience ?? `http://${hostForUrl(options.host ?? '127.0.0.1')}:${port}/mcp`,
    );
    const bearer: BearerPolicy | null =
      token || config
        ? {
            oauth: config ? { config, verifier: new JwtVerifier(config) } : null,
            // Everyone holding the server's own token is the local tenant, with both scopes.
            apiToken: token
              ? (presented) =>
                  sameSecret(presented, token) ? { tenant: LOCAL_TENANT, scopes: ['read', 'write'] } : null
              : null,
            missingHint: [
              token ? 'this server was started with a token (NOTEBOOK_JOBS_TOKEN)' : null,
              config ? `it accepts access tokens from ${config.issuer}` : null,
            ]
              .filter(Boolean)
              .join(', and ')
              .concat('; send the Authorization header as "Bearer <token>"'),
          }
        : null;
    return { hosts, origins: new Set([...own, ...extraOrigins]), bearer };
  };
}

/** What the checks need to know about a route. */
export interface RouteKind {
  mcp: boolean;
  /** The protected-resource metadata (RFC 9728): public, it tells clients where to get a token. */
  metadata: boolean;
  /** A route the table marks public (health: no business data), so no token. */
  public: boolean;
  /**
   * A PUT to a signed upload URL needs no token: the URL itself is the permission (as a presigned
   * S3 URL is on AWS), and it only stores bytes under the key it names.
   */
  upload: boolean;
}

export function routeKind(method: string, path: string, policy: CallerPolicy): RouteKind {
  const oauth = policy.bearer?.oauth?.config;
  return {
    mcp: path === '/mcp',
    metadata: oauth !== undefined && metadataPaths(oauth.audience).includes(path),
    public: PUBLIC_ROUTES.has(`${method} ${path}`),
    upload: method === 'PUT' && /^\/v1\/uploads\/[^/]+$/.test(path),
  };
}

/** JSON bodies only: text/plain, form and multipart bodies are what a browser sends cross-site unasked. */
export const JSON_MEDIA_TYPES = ['application/json'];
/**
 * An upload is the notebook file. A PUT is never a "simple" cross-site request, so this list is
 * about clear errors, not forgery: text/plain is what fetch() and many tools send for a string
 * body, and no Content-Type at all (curl -T, Python requests) is accepted too.
 */
export const UPLOAD_MEDIA_TYPES = [
  'application/json',
  'application/x-ipynb+json',
  'application/octet-stream',
  'text/plain',
];

/** Throws the refusal (an AppError naming the header and what is allowed), or returns the Host and caller. */
export async function checkCaller(
  policy: CallerPolicy,
  req: IncomingMessage,
  method: string,
  path: string,
  route: RouteKind,
): Promise<{ host: string; caller: Caller }> {
  const hosts = [...policy.hosts];
  const host = req.headers.host;
  if (!host) {
    throw new InvalidRequestError(`the Host header is missing; send Host: ${hosts[0]}`, {
      header: 'host',
      allowed: hosts,
    });
  }
  const normalized = parseHost(host, 80);
  if (!normalized) {
    throw new InvalidRequestError(
      `the Host header "${clip(host)}" is malformed; this server answers to ${hosts.join(', ')}`,
      { header: 'host', received: clip(host), allowed: hosts },
    );
  }
  if (!policy.hosts.has(normalized)) {
    throw new AppError(
      'forbidden',
      `the Host header "${clip(host)}" is not this server's: it answers to ${hosts.join(', ')} only ` +
        '(add names with --allowed-hosts or NOTEBOOK_JOBS_ALLOWED_HOSTS)',
      { header: 'host', received: clip(host), allowed: hosts },
    );
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const normalizedOrigin = originOf(origin);
    if (!normalizedOrigin || !policy.origins.has(normalizedOrigin)) {
      const origins = [...policy.origins];
      throw new AppError(
        'forbidden',
        `Origin header refused: origin ${clip(origin)} is not allowed to call this server; allowed: ` +
          `${origins.join(', ')} (add origins with NOTEBOOK_JOBS_ALLOWED_ORIGINS; requests without an ` +
          'Origin header, as CLIs and scripts send them, are not affected)',
        { header: 'origin', received: clip(origin), allowed: origins },
      );
    }
  }
  let caller: Caller = { tenant: LOCAL_TENANT, scopes: ['read', 'write'] };
  if (policy.bearer && !route.public && !route.upload && !route.metadata) {
    caller = await authenticate(policy.bearer, req.headers.authorization);
    requireScopes(
      caller,
      route.mcp ? ['read', 'write'] : [requiredScope(method)],
      policy.bearer.oauth?.config ?? null,
    );
  }
  if (method !== 'GET' && method !== 'HEAD') checkContentType(req, method, path, route);
  return { host: normalized, caller };
}

/** Constant-time: hashing first makes both sides the same length whatever was presented. */
export function sameSecret(presented: string, token: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

export function checkContentType(req: IncomingMessage, method: string, path: string, route: RouteKind): void {
  const contentType = req.headers['content-type'];
  const hasBody =
    (req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined;
  if (contentType === undefined && (!hasBody || route.upload)) return;
  const allowed = route.upload ? UPLOAD_MEDIA_TYPES : JSON_MEDIA_TYPES;
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (allowed.includes(mediaType)) return;
  throw new UnsupportedMediaTypeError(
    contentType === undefined
      ? `the Content-Type header is missing on ${method} ${path}, which has a body; send Content-Type: ${allowed.join(' or ')}`
      : `the Content-Type header "${clip(contentType)}" is not accepted on ${method} ${path}; send ${allowed.join(' or ')}`,
    { header: 'content-type', received: contentType === undefined ? null : clip(contentType), allowed },
  );
}

export const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?$/i;

/** `name:port` in lower case (port defaulted), or null when `value` is not a host[:port]. */
export function parseHost(value: string, defaultPort: number): string | null {
  const match = HOST_HEADER.exec(value);
  if (!match) return null;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (port > 65535) return null;
  return `${(match[1] as string).toLowerCase()}:${port}`;
}

/** The serialized origin of `value`, or null for "null" and anything that is not a URL. */
export function originOf(value: string): string | null {
  try {
    const origin = new URL(value).origin;
    return origin === 'null' ? null : origin;
  } catch {
    return null;
  }
}

/** An IPv6 address in brackets, as URLs and Host headers write it. */
export function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
