/**
 * Deciding who a bearer token is, where the local server checks it: a JWT from the configured
 * authorization server (tenant from its claim, scopes mapped to read/write), or the server's own
 * API token (the local tenant, both scopes). Refusals are AuthErrors carrying the RFC 6750 /
 * RFC 9728 challenge, so every 401 from /mcp (and REST) names the protected-resource metadata.
 */
import type { TokenScope } from '../adapters/dynamodb/token-store.ts';
import { looksLikeJwt, type JwtVerifier } from './jwt-verifier.ts';
import { AuthError, bearerChallenge, scopeNames, type OAuthConfig } from './protected-resource.ts';

export interface Caller {
  tenant: string;
  scopes: readonly TokenScope[];
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return /^Bearer +(\S+) *$/i.exec(authorization ?? '')?.[1];
}

export interface BearerPolicy {
  oauth: { config: OAuthConfig; verifier: JwtVerifier } | null;
  /** The server's own token (NOTEBOOK_JOBS_TOKEN) and whether `presented` is it (constant time). */
  apiToken: ((presented: string) => Caller | null) | null;
  /** What the refusal of a missing header says about the API token, if there is one. */
  missingHint: string;
}

/** The caller a request's Authorization header proves, or an AuthError (401). */
export async function authenticate(policy: BearerPolicy, authorization: string | undefined): Promise<Caller> {
  const config = policy.oauth?.config ?? null;
  const presented = bearerToken(authorization);
  if (presented === undefined) {
    throw new AuthError(
      'unauthorized',
      `authentication required: ${policy.missingHint}`,
      bearerChallenge(config),
      {
        header: 'authorization',
      },
    );
  }
  const fromApiToken = policy.apiToken?.(presented) ?? null;
  if (fromApiToken) return fromApiToken;
  if (policy.oauth && looksLikeJwt(presented)) {
    const check = await policy.oauth.verifier.verify(presented);
    if (check.ok) return check.caller;
    throw new AuthError(
      'unauthorized',
      check.reason,
      bearerChallenge(config, { code: 'invalid_token', description: check.reason }),
      { header: 'authorization' },
    );
  }
  const message = policy.oauth
    ? `the bearer token is neither this server's API token nor an access token from ${policy.oauth.config.issuer}`
    : 'the bearer token in the Authorization header is not the one this server was started with';
  throw new AuthError(
    'unauthorized',
    message,
    bearerChallenge(config, { code: 'invalid_token', description: message }),
    {
      header: 'authorization',
    },
  );
}

/**
 * Refuses (403, `insufficient_scope`) a caller without every scope in `needed`: GET/HEAD need read,
 * other REST methods write, and /mcp both (it reads and submits through one endpoint).
 */
export function requireScopes(
  caller: Caller,
  needed: readonly TokenScope[],
  config: OAuthConfig | null,
): void {
  const missing = needed.filter((scope) => !caller.scopes.includes(scope));
  if (missing.length === 0) return;
  const names = config ? missing.map((scope) => scopeNames(config)[scope]) : missing;
  const message = `this token lacks the ${names.map((name) => `"${name}"`).join(' and ')} scope${missing.length > 1 ? 's' : ''} this request needs`;
  throw new AuthError(
    'forbidden',
    message,
    bearerChallenge(config, { code: 'insufficient_scope', description: message }),
    { required_scopes: names },
  );
}
