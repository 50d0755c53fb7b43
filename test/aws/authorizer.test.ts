/**
 * The REQUEST authorizer driven by an event shaped like API Gateway's documented example, with
 * tokens in dynalite; then the tenant it establishes is followed into the api Lambda, the way API
 * Gateway passes the authorizer's principalId and context on in requestContext.authorizer.
 */
import type { APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DynamoDbTokenStore } from '../../lambda/adapters/dynamodb/token-store.ts';
import type { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import {
  dynaliteForThisFile,
  coldStart,
  createBody,
  fixture,
  mockAws,
  proxyEvent,
  stackEnv,
} from './aws-harness.ts';

type AuthorizerModule = typeof import('../../lambda/handlers/authorizer.ts');
type ApiModule = typeof import('../../lambda/handlers/api.ts');

const DAY = 86_400_000;
const db = dynaliteForThisFile();
const aws = mockAws();
let tokens: DynamoDbTokenStore;
let jobs: DynamoDbJobStore;
let authorize: AuthorizerModule['handler'];
let env: Record<string, string>;

beforeEach(async () => {
  aws.reset();
  const table = await db().newTable();
  tokens = new DynamoDbTokenStore({ client: db().client, tableName: table });
  jobs = db().store(table);
  env = stackEnv(table, db().endpoint);
  // The authorizer Lambda gets only the table settings.
  const authorizerEnv = {
    AWS_REGION: env.AWS_REGION as string,
    AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID as string,
    AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY as string,
    NOTEBOOK_JOBS_TABLE: table,
    NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: db().endpoint,
  };
  ({ handler: authorize } = await coldStart<AuthorizerModule>(
    'lambda/handlers/authorizer.ts',
    authorizerEnv,
  ));
});

/** The documented REQUEST event with this Authorization header (or none). */
function requestEvent(authorization: string | null): APIGatewayRequestAuthorizerEvent {
  const event = structuredClone(fixture<APIGatewayRequestAuthorizerEvent>('authorizer-request.json'));
  for (const headers of [event.headers ?? {}, event.multiValueHeaders ?? {}]) delete headers.Authorization;
  if (authorization !== null) {
    (event.headers ?? {}).Authorization = authorization;
    (event.multiValueHeaders ?? {}).Authorization = [authorization];
  }
  return event;
}

describe('authorizer', () => {
  it('allows a valid token on the whole API, with tenant, scopes and token id in the context', async () => {
    const created = await tokens.create({ tenant: 'acme', scopes: ['read'] });

    const result = await authorize(requestEvent(`Bearer ${created.token}`));

    expect(result).toEqual({
      principalId: 'acme',
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Action: 'execute-api:Invoke',
            Effect: 'Allow',
            Resource: 'arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*',
          },
        ],
      },
      context: { tenant: 'acme', scopes: 'read', token_id: created.token_id },
    });
  });

  it('accepts the scheme in any case and a lower-case header name', async () => {
    const created = await tokens.create({ tenant: 'acme' });
    const event = requestEvent(null);
    event.headers = { ...event.headers, authorization: `bearer ${created.token}` };
    event.multiValueHeaders = { ...event.multiValueHeaders, authorization: [`bearer ${created.token}`] };
    expect((await authorize(event)).principalId).toBe('acme');
  });

  it('answers Unauthorized (401) for revoked, expired, unknown, malformed and missing tokens', async () => {
    const revoked = await tokens.create({ tenant: 'acme' });
    await tokens.revoke('acme', revoked.token_id);
    const expired = await tokens.create({ tenant: 'acme', expiresInDays: 1 }, new Date(Date.now() - 2 * DAY));
    const valid = await tokens.create({ tenant: 'acme' });
    // The fixture's own header: token-shaped, but no such token exists.
    const unknown = fixture<APIGatewayRequestAuthorizerEvent>('authorizer-request.json');

    for (const event of [
      requestEvent(`Bearer ${revoked.token}`),
      requestEvent(`Bearer ${expired.token}`),
      unknown,
      requestEvent(`Bearer ${valid.token.slice(0, -1)}`), // malformed: one character short
      requestEvent(`Basic ${Buffer.from('acme:secret').toString('base64')}`),
      requestEvent(`Bearer ${valid.token} extra`),
      requestEvent(null),
    ]) {
      await expect(authorize(event)).rejects.toThrow(/^Unauthorized$/);
    }
    // Two Authorization headers are ambiguous, even if one is valid.
    const twice = requestEvent(`Bearer ${valid.token}`);
    twice.multiValueHeaders = {
      ...twice.multiValueHeaders,
      Authorization: [`Bearer ${valid.token}`, 'Bearer x'],
    };
    await expect(authorize(twice)).rejects.toThrow(/^Unauthorized$/);
  });

  it('logs why a token was refused, by id, never the token', async () => {
    const revoked = await tokens.create({ tenant: 'acme' });
    await tokens.revoke('acme', revoked.token_id);
    const { logger } = await import('../../lambda/handlers/authorizer.ts');
    const info = vi.spyOn(logger, 'info').mockImplementation(() => undefined);

    await expect(authorize(requestEvent(`Bearer ${revoked.token}`))).rejects.toThrow('Unauthorized');
    await expect(authorize(requestEvent(null))).rejects.toThrow('Unauthorized');

    expect(info.mock.calls).toEqual([
      ['denied: revoked token', { token_id: revoked.token_id, path: '/v1/jobs' }],
      ['denied: missing or malformed Authorization header', { path: '/v1/jobs' }],
    ]);
    expect(JSON.stringify(info.mock.calls)).not.toContain(revoked.token);
  });

  it('fails closed (an error, not a policy) when the table cannot be read', async () => {
    const created = await tokens.create({ tenant: 'acme' });
    await coldStart<AuthorizerModule>('lambda/handlers/authorizer.ts', {}).then(async ({ handler }) => {
      await expect(handler(requestEvent(`Bearer ${created.token}`))).rejects.toThrow(
        'missing required environment variable NOTEBOOK_JOBS_TABLE',
      );
    });
  });
});

describe('the tenant reaches the api handler', () => {
  it("creates the job as the token's tenant, and another tenant's token cannot see it", async () => {
    const acme = await tokens.create({ tenant: 'acme' });
    const globex = await tokens.create({ tenant: 'globex', scopes: ['read'] });
    const acmeAuth = await authorize(requestEvent(`Bearer ${acme.token}`));
    const globexAuth = await authorize(requestEvent(`Bearer ${globex.token}`));
    const { handler: api } = await coldStart<ApiModule>('lambda/handlers/api.ts', env);
    // What API Gateway hands the integration: principalId plus the authorizer's context.
    const asCaller = (auth: typeof acmeAuth, event: ReturnType<typeof proxyEvent>) => {
      event.requestContext.authorizer = {
        principalId: auth.principalId,
        ...auth.context,
        integrationLatency: 21,
      };
      return event;
    };

    const created = await api(
      asCaller(acmeAuth, proxyEvent({ method: 'POST', path: '/v1/jobs', body: createBody() })),
    );
    expect(created.statusCode, created.body).toBe(201);
    const jobId = JSON.parse(created.body).job_id as string;
    expect((await jobs.get(jobId))?.tenant).toBe('acme');

    const seen = await api(asCaller(globexAuth, proxyEvent({ path: `/v1/jobs/${jobId}` })));
    expect(seen.statusCode).toBe(404);
    const write = await api(
      asCaller(globexAuth, proxyEvent({ method: 'POST', path: '/v1/jobs', body: createBody() })),
    );
    expect(write.statusCode).toBe(403);
  });
});

/**
 * JWT access tokens beside API tokens: a loopback issuer publishes its discovery document and keys
 * (as Cognito and any OIDC issuer do); tokens are signed with its key, so only the claim a case
 * changes is wrong.
 */
describe('OAuth access tokens (JWT)', () => {
  const AUDIENCE = 'https://abc123.execute-api.us-east-1.amazonaws.com/api/mcp';
  const CLIENT = 'cognito-app-client-1';
  let issuerServer: import('node:http').Server;
  let issuer: string;
  let sign: (claims: Record<string, unknown>) => Promise<string>;

  beforeAll(async () => {
    const { createServer } = await import('node:http');
    const { exportJWK, generateKeyPair, SignJWT } = await import('jose');
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    issuerServer = createServer((req, res) => {
      const body =
        req.url === '/pool/.well-known/openid-configuration'
          ? { issuer, jwks_uri: `${issuer}/.well-known/jwks.json` }
          : req.url === '/pool/.well-known/jwks.json'
            ? { keys: [jwk] }
            : null;
      res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body ?? {}));
    });
    await new Promise<void>((done) => issuerServer.listen(0, '127.0.0.1', done));
    issuer = `http://127.0.0.1:${(issuerServer.address() as import('node:net').AddressInfo).port}/pool`;
    sign = async ({ exp, ...claims }) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(issuer)
        .setIssuedAt()
        .setExpirationTime((exp as number | undefined) ?? Math.floor(Date.now() / 1000) + 300)
        .sign(privateKey);
  });
  afterAll(() => new Promise<void>((done) => issuerServer.close(() => done())));

  async function withOAuth(): Promise<AuthorizerModule['handler']> {
    const { handler } = await coldStart<AuthorizerModule>('lambda/handlers/authorizer.ts', {
      AWS_REGION: env.AWS_REGION as string,
      AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID as string,
      AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY as string,
      NOTEBOOK_JOBS_TABLE: env.NOTEBOOK_JOBS_TABLE as string,
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: db().endpoint,
      NOTEBOOK_JOBS_OAUTH_ISSUER: issuer,
      NOTEBOOK_JOBS_OAUTH_AUDIENCE: AUDIENCE,
      NOTEBOOK_JOBS_OAUTH_CLIENT_IDS: CLIENT,
    });
    return handler;
  }

  it('allows a token for this resource: tenant from sub, scopes mapped, the policy as for API tokens', async () => {
    const handler = await withOAuth();
    const token = await sign({
      sub: 'user-1',
      aud: AUDIENCE,
      scope: 'notebook-jobs/read notebook-jobs/write openid',
    });
    const result = await handler(requestEvent(`Bearer ${token}`));
    expect(result.principalId).toBe('user-1');
    expect(result.policyDocument.Statement[0]).toMatchObject({
      Effect: 'Allow',
      Resource: 'arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*',
    });
    expect(result.context).toEqual({
      tenant: 'user-1',
      scopes: 'read,write',
      auth: 'oauth',
      subject: 'user-1',
      client_id: '',
    });
  });

  it("allows a Cognito access token (no aud; client_id one of the stack's clients)", async () => {
    const handler = await withOAuth();
    const token = await sign({
      sub: 'user-2',
      client_id: CLIENT,
      token_use: 'access',
      scope: 'notebook-jobs/read',
    });
    const result = await handler(requestEvent(`Bearer ${token}`));
    expect(result.context).toMatchObject({ tenant: 'user-2', scopes: 'read', client_id: CLIENT });
  });

  it.each([
    ['expired', { sub: 'u', aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) - 120 }],
    ['for another resource', { sub: 'u', aud: 'https://other.example/mcp' }],
    ['without aud from an unknown client', { sub: 'u', client_id: 'someone-else', token_use: 'access' }],
    ['a Cognito id token', { sub: 'u', client_id: CLIENT, token_use: 'id' }],
    ['without the tenant claim', { aud: AUDIENCE }],
  ])('refuses a token %s: Unauthorized, the reason logged', async (_name, claims) => {
    const handler = await withOAuth();
    const { logger } = await import('../../lambda/handlers/authorizer.ts');
    const info = vi.spyOn(logger, 'info');
    const token = await sign(claims);
    await expect(handler(requestEvent(`Bearer ${token}`))).rejects.toThrow(/^Unauthorized$/);
    expect(info.mock.calls.map((args) => String(args[0])).join('\n')).toMatch(/denied: the access token/);
    expect(JSON.stringify(info.mock.calls)).not.toContain(token);
  });

  it('keeps accepting API tokens, and refuses JWTs when OAuth is not configured', async () => {
    const handler = await withOAuth();
    const created = await tokens.create({ tenant: 'scripts', scopes: ['read', 'write'] });
    expect((await handler(requestEvent(`Bearer ${created.token}`))).principalId).toBe('scripts');
    const token = await sign({ sub: 'user-1', aud: AUDIENCE });
    // A cold start without the OAuth settings (the module reads them at its first JWT).
    const { handler: plain } = await coldStart<AuthorizerModule>('lambda/handlers/authorizer.ts', {
      AWS_REGION: env.AWS_REGION as string,
      NOTEBOOK_JOBS_TABLE: env.NOTEBOOK_JOBS_TABLE as string,
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: db().endpoint,
    });
    await expect(plain(requestEvent(`Bearer ${token}`))).rejects.toThrow(/^Unauthorized$/);
  });
});
