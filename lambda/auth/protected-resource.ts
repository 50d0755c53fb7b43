/**
 * The OAuth 2.1 resource server's public face: its configuration, the protected-resource metadata
 * (RFC 9728) and the `WWW-Authenticate` challenges (RFC 6750 3, RFC 9728 5.1) that point clients at
 * it. MCP clients (claude.ai, ChatGPT, the SDKs) start from a 401's `resource_metadata`, read the
 * authorization server from the metadata, and come back with a token issued for `resource`.
 */
import { ConfigError, optionalEnv, type Env } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { OAUTH_SETTINGS } from '../core/settings.ts';
import type { TokenScope } from '../adapters/dynamodb/token-store.ts';

export interface OAuthConfig {
  /** The authorization server's issuer URL, exactly as its tokens' `iss`. */
  issuer: string;
  /** This server's MCP URL: the `resource` of the metadata and the `aud` a token must carry. */
  audience: string;
  tenantClaim: string;
  scopePrefix: string;
  /** Client ids whose tokens may lack `aud` (Cognito access tokens). */
  clientIds: string[];
}

/** Where RFC 9728 puts the metadata; the resource's path is appended (`.../mcp`). */
export const METADATA_PATH = '/.well-known/oauth-protected-resource';

/**
 * The OAuth settings from the environment, or null when no issuer is set (OAuth off).
 * `defaultAudience` is used when NOTEBOOK_JOBS_OAUTH_AUDIENCE is unset (locally: the server's /mcp).
 */
export function readOAuthConfig(env: Env, defaultAudience?: string): OAuthConfig | null {
  const issuer = optionalEnv(env, OAUTH_SETTINGS.issuer.variable);
  if (issuer === undefined) return null;
  const audience = optionalEnv(env, OAUTH_SETTINGS.audience.variable) ?? defaultAudience;
  if (audience === undefined)
    throw new ConfigError(
      `${OAUTH_SETTINGS.audience.variable} is required when ${OAUTH_SETTINGS.issuer.variable} is set`,
    );
  return checkOAuthConfig({
    issuer,
    audience,
    tenantClaim: optionalEnv(env, OAUTH_SETTINGS.tenantClaim.variable) ?? OAUTH_SETTINGS.tenantClaim.default,
    scopePrefix: env[OAUTH_SETTINGS.scopePrefix.variable] ?? OAUTH_SETTINGS.scopePrefix.default,
    clientIds: (optionalEnv(env, OAUTH_SETTINGS.clientIds.variable) ?? '')
      .split(',')
      .map((id) => id.trim())
      .filter(Boolean),
  });
}

/** Fails fast, naming the setting, on a value that would make every token fail later. */
export function checkOAuthConfig(config: OAuthConfig): OAuthConfig {
  for (const [name, value] of [
    [OAUTH_SETTINGS.issuer.variable, config.issuer],
    [OAUTH_SETTINGS.audience.variable, config.audience],
  ] as const) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new ConfigError(`${name} must be an absolute URL, got "${value}"`);
    }
    // OAuth 2.1 and RFC 9728 want https; plain http only for a server on this machine.
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
      throw new ConfigError(`${name} must be an https URL (http only on loopback), got "${value}"`);
    if (url.hash || url.search)
      throw new ConfigError(`${name} must have no query or fragment, got "${value}"`);
  }
  if (!/^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$/.test(config.tenantClaim))
    throw new ConfigError(
      `${OAUTH_SETTINGS.tenantClaim.variable} is not a claim name: "${config.tenantClaim}"`,
    );
  return config;
}

/** The scope names a token carries for the API tokens' read and write. */
export function scopeNames(config: Pick<OAuthConfig, 'scopePrefix'>): Record<TokenScope, string> {
  return { read: `${config.scopePrefix}read`, write: `${config.scopePrefix}write` };
}

/** The metadata document's URL for the resource (RFC 9728 3.1: the well-known part goes first). */
export function metadataUrl(audience: string): string {
  const url = new URL(audience);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return `${url.origin}${METADATA_PATH}${path}`;
}

/** The paths a server answers the metadata on: the RFC 9728 one for the resource, and the bare one. */
export function metadataPaths(audience: string): string[] {
  const path = new URL(metadataUrl(audience)).pathname;
  return path === METADATA_PATH ? [METADATA_PATH] : [path, METADATA_PATH];
}

/** RFC 9728 2: what a client needs to get a token for this resource. */
export function protectedResourceMetadata(config: OAuthConfig): Record<string, unknown> {
  const scopes = scopeNames(config);
  return {
    resource: config.audience,
    authorization_servers: [config.issuer],
    scopes_supported: [scopes.read, scopes.write],
    bearer_methods_supported: ['header'],
    resource_name: 'notebook-jobs',
  };
}

/** A quoted-string for a challenge parameter (RFC 9110 5.6.4): no quotes or backslashes, no controls. */
function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, '').replace(/[^\x20-\x7e]/g, ' ')}"`;
}

/**
 * The `WWW-Authenticate` value of a refusal: `Bearer` with the metadata URL and the scopes MCP
 * needs, and RFC 6750's `error` when a token was presented (`invalid_token` for a 401,
 * `insufficient_scope` for a 403).
 */
export function bearerChallenge(
  config: OAuthConfig | null,
  error?: { code: 'invalid_token' | 'insufficient_scope'; description: string },
): string {
  const parts: string[] = [];
  if (error)
    parts.push(`error=${quoted(error.code)}`, `error_description=${quoted(error.description.slice(0, 300))}`);
  if (config) {
    const scopes = scopeNames(config);
    parts.push(
      `resource_metadata=${quoted(metadataUrl(config.audience))}`,
      `scope=${quoted(`${scopes.read} ${scopes.write}`)}`,
    );
  }
  return parts.length ? `Bearer ${parts.join(', ')}` : 'Bearer';
}

/** A refused caller (401 or 403) and the challenge to send with it. */
export class AuthError extends AppError {
  constructor(
    code: 'unauthorized' | 'forbidden',
    message: string,
    readonly challenge: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, details);
  }
}
