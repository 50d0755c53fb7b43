/**
 * The OAuth 2.1 resource server against a real authorization server: oidc-provider (a certified
 * OpenID provider) on a loopback port, with RFC 8707 resource indicators and JWT access tokens, and
 * a minimal interaction (the test's user logs in and consents at once). The MCP SDK v1 client's own
 * OAuth support runs the whole flow: the 401 and its resource_metadata, the protected-resource
 * metadata, the authorization server's discovery, authorization code + PKCE (S256, required by the
 * provider), the token request, then tools/call on a real local service with real kernels.
 * Refusals use tokens signed with the provider's own key (so only the claim under test is wrong).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Provider, { errors as oidcErrors } from 'oidc-provider';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformation, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

const CLIENT_ID = 'mcp-test-client';
/** Where the provider sends the browser back; nothing listens there, the test reads the redirect. */
const REDIRECT_URI = 'http://127.0.0.1:8976/callback';
const SCOPES = 'notebook-jobs/read notebook-jobs/write';
const API_TOKEN = 'a-static-api-token-for-scripts';

let svc: TestService;
let asServer: Server;
let issuer: string;
let mcpUrl: string;
let signingKey: JWK;
/** Who logs in at the provider's next interaction. */
let currentUser = 'alice';

async function startAuthorizationServer(): Promise<void> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  signingKey = { ...(await exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
  asServer = createServer();
  await new Promise<void>((done) => asServer.listen(0, '127.0.0.1', done));
  issuer = `http://127.0.0.1:${(asServer.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        // A public client (no secret), as claude.ai and ChatGPT are with a pre-registered id.
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: ['oauth-test-cookie-key'] },
    pkce: { required: () => true },
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => mcpUrl,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => {
          if (resource !== mcpUrl) throw new oidcErrors.InvalidTarget(`unknown resource ${resource}`);
          return {
            scope: SCOPES,
            audience: resource,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  const callback = provider.callback();
  asServer.on('request', (req, res) => {
    if (!req.url?.startsWith('/interaction/')) return callback(req, res);
    // The whole interaction at once: the current user logs in and grants what the client asked for.
    void (async () => {
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({
        accountId: currentUser,
        clientId: details.params.client_id as string,
      });
      grant.addResourceScope(details.params.resource ?? mcpUrl, details.params.scope ?? '');
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: currentUser }, consent: { grantId: await grant.save() } },
        { mergeWithLastSubmission: false },
      );
    })().catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
}

/** The MCP SDK's OAuth client state for one user: a pre-registered public client, in memory. */
class TestOAuthClient implements OAuthClientProvider {
  authorizationUrl: URL | undefined;
  private saved: OAuthTokens | undefined;
  private verifier = '';
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: 'notebook-jobs oauth test',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation(): OAuthClientInformation {
    return { client_id: CLIENT_ID };
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
}

/** Plays the browser: follows the provider's redirects with its cookies until the redirect URI. */
async function browse(start: URL): Promise<string> {
  const jar = new Map<string, string>();
  let next = start.href;
  for (let hop = 0; hop < 12; hop++) {
    const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await fetch(next, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';')[0] as string;
      const eq = pair.indexOf('=');
      const [name, value] = [pair.slice(0, eq), pair.slice(eq + 1)];
      if (value) jar.set(name, value);
      else jar.delete(name);
    }
    const location = response.headers.get('location');
    if (!location)
      throw new Error(`the authorization stopped at ${next}: ${response.status} ${await response.text()}`);
    const target = new URL(location, next);
    if (target.href.startsWith(REDIRECT_URI)) {
      const code = target.searchParams.get('code');
      if (!code) throw new Error(`the provider answered ${target.search}`);
      return code;
    }
    next = target.href;
  }
  throw new Error('too many redirects');
}

/** The whole flow for `user`, through the SDK: an MCP client connected with its access token. */
async function connectAs(user: string): Promise<{ client: Client; oauth: TestOAuthClient }> {
  currentUser = user;
  const oauth = new TestOAuthClient();
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  await expect(new Client({ name: 'oauth-test', version: '1.0.0' }).connect(first)).rejects.toThrow(
    UnauthorizedError,
  );
  expect(oauth.authorizationUrl).toBeDefined();
  const code = await browse(oauth.authorizationUrl as URL);
  await first.finishAuth(code);
  const client = new Client({ name: 'oauth-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth }));
  return { client, oauth };
}

async function call(client: Client, name: string, args: Record<string, unknown>) {
  return (await client.callTool({ name, arguments: args }, CallToolResultSchema)) as {
    structuredContent?: any;
    content: any[];
    isError?: boolean;
  };
}

/** A token signed with the provider's own key: only what `claims` changes is wrong with it. */
async function mint(claims: Record<string, unknown>, key: JWK = signingKey, alg = 'RS256'): Promise<string> {
  const { importJWK } = await import('jose');
  const now = Math.floor(Date.now() / 1000);
  const { iss, exp, ...rest } = claims;
  return new SignJWT({ scope: SCOPES, client_id: CLIENT_ID, ...rest })
    .setProtectedHeader({ alg, kid: key.kid, typ: 'at+jwt' })
    .setIssuer((iss as string | undefined) ?? issuer)
    .setSubject((claims.sub as string | undefined) ?? 'carol')
    .setAudience((claims.aud as string | undefined) ?? mcpUrl)
    .setIssuedAt(now - 60)
    .setExpirationTime((exp as number | undefined) ?? now + 600)
    .sign(await importJWK(key, alg));
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

function postMcp(token?: string) {
  return fetch(mcpUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(initialize),
  });
}

beforeAll(async () => {
  await startAuthorizationServer();
  svc = await startTestService({
    token: API_TOKEN,
    oauth: { issuer, tenantClaim: 'sub', scopePrefix: 'notebook-jobs/', clientIds: [] },
  });
  mcpUrl = `${svc.server.url}/mcp`;
}, 60_000);
afterAll(async () => {
  await svc?.close();
  await new Promise((done) => asServer?.close(done));
});

describe('protected-resource metadata (RFC 9728)', () => {
  it.each(['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource'])(
    'GET %s names the resource, the authorization server and the scopes, without a token',
    async (path) => {
      const response = await fetch(`${svc.server.url}${path}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({
        resource: mcpUrl,
        authorization_servers: [issuer],
        scopes_supported: ['notebook-jobs/read', 'notebook-jobs/write'],
        bearer_methods_supported: ['header'],
        resource_name: 'notebook-jobs',
      });
    },
  );

  it('a 401 from /mcp and from REST without a token points at the metadata', async () => {
    const challenge = `Bearer resource_metadata="${svc.server.url}/.well-known/oauth-protected-resource/mcp", scope="${SCOPES}"`;
    const mcp = await postMcp();
    expect(mcp.status).toBe(401);
    expect(mcp.headers.get('www-authenticate')).toBe(challenge);
    expect((await mcp.json()).error.message).toMatch(/authentication required/);
    const rest = await fetch(`${svc.server.url}/v1/jobs`);
    expect(rest.status).toBe(401);
    expect(rest.headers.get('www-authenticate')).toBe(challenge);
  });
});

describe('authorization code + PKCE with the MCP SDK client', () => {
  let alice: Client;
  let bob: Client;
  let aliceJob: string;

  afterAll(async () => {
    await alice?.close();
    await bob?.close();
  });

  it('runs the whole flow and ends in a tools/call that runs a notebook', async () => {
    const connected = await connectAs('alice');
    alice = connected.client;
    // The provider issued a JWT for this resource, with both scopes (the SDK sent resource and scope).
    const token = connected.oauth.tokens()?.access_token as string;
    const claims = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString());
    expect(claims).toMatchObject({
      iss: issuer,
      sub: 'alice',
      aud: mcpUrl,
      client_id: CLIENT_ID,
      scope: SCOPES,
    });
    expect(new URL(connected.oauth.authorizationUrl as URL).searchParams.get('code_challenge_method')).toBe(
      'S256',
    );

    const notebook = makeNotebook([codeCell('print("hello from", 6 * 7)')]);
    const result = await call(alice, 'execute_notebook', {
      notebook: { content: notebook, name: 'oauth.ipynb' },
      sync_timeout_seconds: 25,
    });
    expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
    expect(result.structuredContent.job.status).toBe('completed');
    aliceJob = result.structuredContent.job.job_id;
  }, 60_000);

  it("keeps users apart: bob sees none of alice's jobs, over MCP and REST", async () => {
    ({ client: bob } = await connectAs('bob'));
    const listed = await call(bob, 'manage_async_job', { action: 'list' });
    expect(listed.structuredContent.jobs).toEqual([]);
    const status = await call(bob, 'manage_async_job', { action: 'status', job_id: aliceJob });
    expect(status.isError).toBe(true);
    expect(JSON.stringify(status.content)).toMatch(/not_found|not found/);

    const aliceList = await call(alice, 'manage_async_job', { action: 'list' });
    expect(aliceList.structuredContent.jobs.map((job: any) => job.job_id)).toEqual([aliceJob]);
    // The API token is the local tenant: it sees neither user's jobs, and they do not see its.
    const local = await svc.request('GET', '/v1/jobs');
    expect(local.status).toBe(200);
    expect(local.body.jobs).toEqual([]);
    const restAsBob = await svc.request('GET', `/v1/jobs/${aliceJob}`, undefined, {
      authorization: `Bearer ${await mint({ sub: 'bob' })}`,
    });
    expect(restAsBob.status).toBe(404);
  }, 60_000);
});

describe('refused tokens', () => {
  const now = () => Math.floor(Date.now() / 1000);

  it.each([
    ['an expired token', () => mint({ exp: now() - 120 }), /has expired/],
    [
      'a token for another resource',
      () => mint({ aud: 'https://elsewhere.example/mcp' }),
      /issued for another resource/,
    ],
    [
      'a token from another issuer',
      () => mint({ iss: 'http://127.0.0.1:9/other' }),
      /not issued by http:\/\/127\.0\.0\.1:\d+/,
    ],
    [
      'a token signed by a key the issuer does not publish',
      async () => {
        const { privateKey } = await generateKeyPair('RS256', { extractable: true });
        return mint({}, { ...(await exportJWK(privateKey)), kid: 'stranger' });
      },
      /signed by a key .* does not publish/,
    ],
    [
      'a token signed with a shared secret (HS256)',
      () =>
        mint(
          {},
          { kty: 'oct', k: Buffer.from('x'.repeat(32)).toString('base64url'), kid: 'test-key' },
          'HS256',
        ),
      /algorithm this server does not accept/,
    ],
    [
      'a token whose tenant claim is unusable',
      () => mint({ sub: 'auth0|has a space' }),
      /"sub" claim is not a usable tenant/,
    ],
    [
      'neither a JWT nor the API token',
      async () => 'not-a-token',
      /neither this server's API token nor an access token/,
    ],
  ])('%s: 401 invalid_token, saying why', async (_name, token, reason) => {
    const response = await postMcp(await token());
    expect(response.status).toBe(401);
    const challenge = response.headers.get('www-authenticate') as string;
    expect(challenge).toMatch(
      /^Bearer error="invalid_token", error_description="[^"]+", resource_metadata="/,
    );
    expect((await response.json()).error.message).toMatch(reason);
  });

  it('a token without the write scope: 403 insufficient_scope on /mcp and on REST writes, reads allowed', async () => {
    const readOnly = await mint({ sub: 'dave', scope: 'notebook-jobs/read' });
    const mcp = await postMcp(readOnly);
    expect(mcp.status).toBe(403);
    expect(mcp.headers.get('www-authenticate')).toMatch(/^Bearer error="insufficient_scope"/);
    expect((await mcp.json()).error.message).toMatch(/lacks the "notebook-jobs\/write" scope/);
    const headers = { authorization: `Bearer ${readOnly}` };
    expect((await svc.request('GET', '/v1/jobs', undefined, headers)).status).toBe(200);
    const write = await svc.request('POST', '/v1/jobs/cleanup', { older_than_hours: 1 }, headers);
    expect(write.status).toBe(403);
    expect(write.body.error).toMatchObject({
      code: 'forbidden',
      details: { required_scopes: ['notebook-jobs/write'] },
    });
  });

  it('a token with no scope of ours: 403 on reads too', async () => {
    const none = await mint({ sub: 'erin', scope: 'openid profile' });
    const response = await svc.request('GET', '/v1/jobs', undefined, { authorization: `Bearer ${none}` });
    expect(response.status).toBe(403);
  });

  it('the API token keeps working beside OAuth (CLIs and scripts)', async () => {
    const response = await postMcp(API_TOKEN);
    expect(response.status).toBe(200);
  });
});
