/**
 * The OAuth settings (serve flags over variables, fail-fast checks), the metadata URLs of RFC 9728
 * and the WWW-Authenticate challenges.
 */
import { describe, expect, it } from 'vitest';
import { readServeConfig } from '../../bin/serve.ts';
import {
  bearerChallenge,
  metadataPaths,
  metadataUrl,
  readOAuthConfig,
} from '../../lambda/auth/protected-resource.ts';

const quiet = () => undefined;

describe('serve --oauth-*', () => {
  it('is off without an issuer', () => {
    expect(readServeConfig({}, {}, quiet).oauth).toBeUndefined();
  });

  it('reads the variables, flags winning; the audience stays unset for the server to default', () => {
    const env = {
      NOTEBOOK_JOBS_OAUTH_ISSUER: 'https://from-env.example.com',
      NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM: 'email',
    };
    expect(readServeConfig(env, {}, quiet).oauth).toEqual({
      issuer: 'https://from-env.example.com',
      audience: undefined,
      tenantClaim: 'email',
      scopePrefix: 'notebook-jobs/',
      clientIds: [],
    });
    const flagged = readServeConfig(
      env,
      { oauthIssuer: 'https://flag.example.com/realms/a', oauthAudience: 'https://tunnel.example.com/mcp' },
      quiet,
    ).oauth;
    expect(flagged).toMatchObject({
      issuer: 'https://flag.example.com/realms/a',
      audience: 'https://tunnel.example.com/mcp',
    });
  });

  it.each([
    [{ oauthAudience: 'https://x.example.com/mcp' }, {}, /needs --oauth-issuer/],
    [{ oauthIssuer: 'not a url' }, {}, /NOTEBOOK_JOBS_OAUTH_ISSUER must be an absolute URL/],
    [{ oauthIssuer: 'http://login.example.com' }, {}, /https URL \(http only on loopback\)/],
    [
      { oauthIssuer: 'https://login.example.com' },
      { NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM: 'bad claim' },
      /TENANT_CLAIM is not a claim name/,
    ],
  ])('refuses %j %j at start', (options, env, message) => {
    expect(() => readServeConfig(env, options, quiet)).toThrow(message);
  });

  it('allows an http issuer on loopback (a provider on this machine)', () => {
    expect(readServeConfig({}, { oauthIssuer: 'http://127.0.0.1:9000' }, quiet).oauth?.issuer).toBe(
      'http://127.0.0.1:9000',
    );
  });
});

describe('readOAuthConfig (the Lambdas)', () => {
  it('needs an audience when there is no default', () => {
    expect(() => readOAuthConfig({ NOTEBOOK_JOBS_OAUTH_ISSUER: 'https://login.example.com' })).toThrow(
      /NOTEBOOK_JOBS_OAUTH_AUDIENCE is required/,
    );
  });

  it('splits the client ids and keeps an empty scope prefix (Entra ID scopes)', () => {
    const config = readOAuthConfig({
      NOTEBOOK_JOBS_OAUTH_ISSUER: 'https://login.example.com',
      NOTEBOOK_JOBS_OAUTH_AUDIENCE: 'https://api.example.com/api/mcp',
      NOTEBOOK_JOBS_OAUTH_CLIENT_IDS: ' a1 , b2 ,',
      NOTEBOOK_JOBS_OAUTH_SCOPE_PREFIX: '',
    });
    expect(config).toMatchObject({ clientIds: ['a1', 'b2'], scopePrefix: '' });
  });
});

describe('RFC 9728 locations and the challenge', () => {
  it('inserts the well-known part before the resource path', () => {
    expect(metadataUrl('https://api.example.com/api/mcp')).toBe(
      'https://api.example.com/.well-known/oauth-protected-resource/api/mcp',
    );
    expect(metadataUrl('https://api.example.com/')).toBe(
      'https://api.example.com/.well-known/oauth-protected-resource',
    );
    expect(metadataPaths('http://127.0.0.1:8080/mcp')).toEqual([
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource',
    ]);
  });

  it('builds the challenge, quoting safely what a refusal says', () => {
    const config = {
      issuer: 'https://login.example.com',
      audience: 'https://api.example.com/mcp',
      tenantClaim: 'sub',
      scopePrefix: 'notebook-jobs/',
      clientIds: [],
    };
    expect(bearerChallenge(null)).toBe('Bearer');
    expect(bearerChallenge(config)).toBe(
      'Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp", scope="notebook-jobs/read notebook-jobs/write"',
    );
    expect(
      bearerChallenge(config, { code: 'invalid_token', description: 'a "quoted"\\ reason\nwith a newline' }),
    ).toMatch(
      /^Bearer error="invalid_token", error_description="a quoted reason with a newline", resource_metadata=/,
    );
  });
});
