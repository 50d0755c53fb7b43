/**
 * JWT access tokens from one authorization server, checked with `jose` (no crypto of our own):
 * the signature against the issuer's published keys (found through its discovery document, cached,
 * refetched when a new key id appears), `iss`, `exp`/`nbf`, the audience, then the scopes and the
 * tenant claim. Every refusal says what was wrong; none echoes the token.
 *
 * Audience (RFC 8707): a token with `aud` must name this server's MCP URL. A token without `aud`
 * is accepted only when its `client_id` is one of the configured app clients and it is an access
 * token (`token_use: access`): that is how Cognito writes access tokens; its pool is this
 * deployment's own, and its scopes carry the resource server's identifier.
 */
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { errors } from 'jose';
import { TENANT_PATTERN, TOKEN_SCOPES, type TokenScope } from '../adapters/dynamodb/token-store.ts';
import { scopeNames, type OAuthConfig } from './protected-resource.ts';

/** A caller a token let in: its tenant and which of read/write it may do. */
export interface VerifiedCaller {
  tenant: string;
  scopes: TokenScope[];
  /** The token's subject and client, for logs (never the token). */
  subject: string | undefined;
  client: string | undefined;
}

export type JwtCheck = { ok: true; caller: VerifiedCaller } | { ok: false; reason: string };

/** Asymmetric algorithms only: a shared-secret (HS*) token could be forged with a public key. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** Tolerated clock difference between this server and the issuer. */
const CLOCK_TOLERANCE_SECONDS = 30;

/** A JWT's shape (three base64url parts), so an API token is never sent through JWT parsing. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

export class JwtVerifier {
  private keys: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  constructor(
    readonly config: OAuthConfig,
    private readonly fetchJson: (url: string) => Promise<unknown> = defaultFetchJson,
  ) {}

  async verify(token: string): Promise<JwtCheck> {
    let payload: JWTPayload;
    try {
      const { payload: verified } = await jwtVerify(token, await this.keySet(), {
        issuer: this.config.issuer,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      });
      payload = verified;
    } catch (error) {
      return { ok: false, reason: refusal(error, this.config) };
    }
    const audience = this.audienceProblem(payload);
    if (audience) return { ok: false, reason: audience };
    const claim = payload[this.config.tenantClaim];
    if (typeof claim !== 'string' || !TENANT_PATTERN.test(claim)) {
      return {
        ok: false,
        reason:
          claim === undefined
            ? `the access token has no "${this.config.tenantClaim}" claim, which names the caller's tenant here`
            : `the access token's "${this.config.tenantClaim}" claim is not a usable tenant name (1-128 of letters, digits and _.@:- starting with a letter or digit)`,
      };
    }
    const granted = grantedScopes(payload);
    const names = scopeNames(this.config);
    return {
      ok: true,
      caller: {
        tenant: claim,
        scopes: TOKEN_SCOPES.filter((scope) => granted.has(names[scope])),
        subject: typeof payload.sub === 'string' ? payload.sub : undefined,
        client: clientOf(payload),
      },
    };
  }

  private audienceProblem(payload: JWTPayload): string | null {
    const { aud } = payload;
    if (aud !== undefined) {
      const audiences = Array.isArray(aud) ? aud : [aud];
      return audiences.includes(this.config.audience)
        ? null
        : `the access token was issued for another resource (aud), not ${this.config.audience}; ask the authorization server for a token with resource=${this.config.audience}`;
    }
    const client = clientOf(payload);
    if (client !== undefined && this.config.clientIds.includes(client) && payload.token_use === 'access')
      return null;
    return `the access token has no audience (aud); it must be issued for ${this.config.audience}`;
  }

  /** The issuer's keys, from the jwks_uri of its discovery document (looked up once, retried on failure). */
  private keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    this.keys ??= this.discover().catch((error: unknown) => {
      this.keys = undefined;
      throw error;
    });
    return this.keys;
  }

  private async discover(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const issuer = this.config.issuer.replace(/\/$/, '');
    const url = new URL(this.config.issuer);
    const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
    // OpenID Connect Discovery (issuer + path), then RFC 8414 (well-known part inserted first).
    const candidates = [
      `${issuer}/.well-known/openid-configuration`,
      `${url.origin}/.well-known/oauth-authorization-server${path}`,
    ];
    const failures: string[] = [];
    for (const candidate of candidates) {
      let metadata: unknown;
      try {
        metadata = await this.fetchJson(candidate);
      } catch (error) {
        failures.push(`${candidate}: ${(error as Error).message}`);
        continue;
      }
      const { issuer: named, jwks_uri: jwksUri } = (metadata ?? {}) as Record<string, unknown>;
      // RFC 8414 3.3: the metadata must name the issuer it was fetched for.
      if (named !== this.config.issuer)
        throw new Error(`${candidate} names issuer ${String(named)}, not ${this.config.issuer}`);
      if (typeof jwksUri !== 'string') throw new Error(`${candidate} has no jwks_uri`);
      return createRemoteJWKSet(new URL(jwksUri));
    }
    throw new Error(`the issuer's metadata could not be read: ${failures.join('; ')}`);
  }
}

async function defaultFetchJson(url: string): Promise<unknown> {
  const response = await fetch(url, {
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

/** `scope` (RFC 9068: space-separated) or `scp` (Entra, Okta: a list or a string). */
function grantedScopes(payload: JWTPayload): Set<string> {
  const scopes = new Set<string>();
  for (const value of [payload.scope, payload.scp]) {
    if (typeof value === 'string') for (const scope of value.split(' ')) if (scope) scopes.add(scope);
    if (Array.isArray(value)) for (const scope of value) if (typeof scope === 'string') scopes.add(scope);
  }
  return scopes;
}

function clientOf(payload: JWTPayload): string | undefined {
  const client = payload.client_id ?? payload.azp;
  return typeof client === 'string' ? client : undefined;
}

/** What to tell the caller about a token jose refused. */
function refusal(error: unknown, config: OAuthConfig): string {
  if (error instanceof errors.JWTExpired) return 'the access token has expired; get a new one';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'iss')
      return `the access token was not issued by ${config.issuer}, the issuer this server trusts`;
    if (error.claim === 'nbf') return 'the access token is not valid yet (nbf)';
    return `the access token's "${error.claim}" claim is not valid (${error.reason})`;
  }
  if (error instanceof errors.JWKSNoMatchingKey)
    return `the access token is signed by a key ${config.issuer} does not publish`;
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return 'the access token signature is not valid';
  if (error instanceof errors.JOSEAlgNotAllowed)
    return 'the access token is signed with an algorithm this server does not accept';
  if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid)
    return 'the access token is not a valid JWT';
  // The issuer's key set unreachable or broken is not the token's fault: thrown, not a refusal.
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) throw error;
  if (error instanceof errors.JOSEError) return `the access token could not be verified (${error.code})`;
  // Not the token's fault (the issuer unreachable, its metadata wrong): the caller cannot fix it.
  throw error;
}
