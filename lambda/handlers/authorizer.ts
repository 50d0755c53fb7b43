/**
 * API Gateway REQUEST authorizer for `Authorization: Bearer <token>`.
 *
 * - No header, not `Bearer`, or not token-shaped: `Unauthorized` (API Gateway answers 401) without
 *   touching the table.
 * - Unknown, revoked or expired token: also `Unauthorized` (401). RFC 6750 calls all of these an
 *   invalid token, and a 401 tells the client to fix its credentials; 403 (a Deny policy) is kept for
 *   "authenticated but not allowed", which the api handler answers for a missing scope. The reason
 *   is logged with the token id (never the token).
 * - Valid: an Allow policy on the whole API (`<api>/<stage>/*\/*`), because API Gateway caches the
 *   result per token and reuses it for other routes; principalId and context carry the tenant,
 *   the scopes (`read,write`) and the token id for the handlers (see `authOf` in lambda/http/apigw.ts).
 *
 * The token is looked up by its SHA-256 hash, so no secret is compared here and no timing-safe
 * comparison is needed. Other failures (the table unreachable) are thrown as themselves: API
 * Gateway then answers 500 and lets nobody in.
 *
 * With NOTEBOOK_JOBS_OAUTH_ISSUER set, a JWT access token from that authorization server is
 * accepted too (lambda/auth/jwt-verifier.ts: signature by the issuer's published keys, issuer,
 * expiry, audience = the MCP URL or, for Cognito, one of the stack's app clients); its tenant is the
 * configured claim and its scopes map to read/write. A refused JWT is `Unauthorized` like a bad API
 * token, and the gateway's 401 carries `WWW-Authenticate` with the resource metadata (lib/rest-api.ts).
 */
import type {
  APIGatewayAuthorizerResult,
  APIGatewayRequestAuthorizerEvent,
  PolicyDocument,
} from 'aws-lambda';
import { Logger } from '@aws-lambda-powertools/logger';
import { createDocumentClient } from '../adapters/dynamodb/client.ts';
import { DynamoDbTokenStore, TOKEN_PATTERN } from '../adapters/dynamodb/token-store.ts';
import { readTokenTableConfig } from '../aws/config.ts';
import { JwtVerifier, looksLikeJwt } from '../auth/jwt-verifier.ts';
import { readOAuthConfig } from '../auth/protected-resource.ts';

/** Structured logs of this Lambda (exported for tests). */
export const logger = new Logger({ serviceName: 'notebook-jobs-authorizer' });
let store: DynamoDbTokenStore | undefined;
/** undefined: not read yet; null: OAuth is off. */
let verifier: JwtVerifier | null | undefined;

function jwtVerifier(): JwtVerifier | null {
  if (verifier === undefined) {
    const config = readOAuthConfig(process.env);
    verifier = config ? new JwtVerifier(config) : null;
  }
  return verifier;
}

/** Wired here, not in aws/wiring.ts, so this small, hot Lambda bundles only DynamoDB. */
function tokenStore(): DynamoDbTokenStore {
  // Once per cold start; a configuration error names the variable and fails every call until fixed.
  if (!store) {
    const config = readTokenTableConfig(process.env);
    store = new DynamoDbTokenStore({
      client: createDocumentClient({ endpoint: config.dynamodbEndpoint, region: config.region }),
      tableName: config.table,
    });
  }
  return store;
}

/** The Lambda entry point. */
export async function handler(event: APIGatewayRequestAuthorizerEvent): Promise<APIGatewayAuthorizerResult> {
  const token = bearerToken(event);
  if (!token) {
    logger.info('denied: missing or malformed Authorization header', { path: event.path });
    throw new Error('Unauthorized');
  }
  if (!TOKEN_PATTERN.test(token)) return authorizeJwt(event, token);
  const check = await tokenStore().verify(token, new Date());
  if (!check.ok) {
    logger.info(`denied: ${check.reason} token`, { token_id: check.token_id, path: event.path });
    throw new Error('Unauthorized');
  }
  const { tenant, scopes, token_id } = check.token;
  return {
    principalId: tenant,
    policyDocument: allowWholeApi(event.methodArn),
    context: { tenant, scopes: scopes.join(','), token_id },
  };
}

async function authorizeJwt(
  event: APIGatewayRequestAuthorizerEvent,
  token: string,
): Promise<APIGatewayAuthorizerResult> {
  const jwt = jwtVerifier();
  if (!jwt) {
    logger.info('denied: not an API token, and OAuth is not configured', { path: event.path });
    throw new Error('Unauthorized');
  }
  const check = await jwt.verify(token);
  if (!check.ok) {
    logger.info(`denied: ${check.reason}`, { path: event.path });
    throw new Error('Unauthorized');
  }
  const { tenant, scopes, subject, client } = check.caller;
  return {
    principalId: tenant,
    policyDocument: allowWholeApi(event.methodArn),
    context: {
      tenant,
      scopes: scopes.join(','),
      auth: 'oauth',
      subject: subject ?? '',
      client_id: client ?? '',
    },
  };
}

/** The token of an `Authorization: Bearer <token>` header, or null when absent or malformed. */
export function bearerToken(
  event: Pick<APIGatewayRequestAuthorizerEvent, 'headers' | 'multiValueHeaders'>,
): string | null {
  const values: string[] = [];
  for (const [name, list] of Object.entries(event.multiValueHeaders ?? {}))
    if (name.toLowerCase() === 'authorization') values.push(...(list ?? []));
  if (values.length === 0) {
    for (const [name, value] of Object.entries(event.headers ?? {}))
      if (name.toLowerCase() === 'authorization' && value !== undefined) values.push(value);
  }
  // Two Authorization headers are ambiguous: refuse rather than pick one.
  if (values.length !== 1) return null;
  const match = /^Bearer +(\S+) *$/i.exec(values[0] as string);
  const token = match?.[1];
  return token && (TOKEN_PATTERN.test(token) || looksLikeJwt(token)) ? token : null;
}

/**
 * Allow on every method and resource of the stage the request came through:
 * `arn:aws:execute-api:<region>:<account>:<api>/<stage>/<verb>/<path>` -> `.../<api>/<stage>/*\/*`.
 */
export function allowWholeApi(methodArn: string): PolicyDocument {
  const [apiArn, stage] = methodArn.split('/');
  if (!apiArn?.startsWith('arn:') || !stage) throw new Error(`unexpected methodArn "${methodArn}"`);
  return {
    Version: '2012-10-17',
    Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: `${apiArn}/${stage}/*/*` }],
  };
}
