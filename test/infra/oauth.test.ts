/**
 * OAuth in the stack: the Cognito user pool (managed login, the resource server and its scopes, a
 * public PKCE app client with the MCP clients' callback URLs), or an external issuer; the
 * authorizer's settings; the public protected-resource metadata served by the gateway; the 401's
 * challenge; the settings' validation; cdk-nag over both variants.
 */
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { DEFAULT_OAUTH_CALLBACK_URLS, readStackConfig } from '../../lib/stack-config.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

function build(context: Record<string, unknown>) {
  const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context } });
  const stack = new NotebookJobsStack(app, 'OAuthTest', { config: readStackConfig(app.node) });
  return { stack, template: Template.fromStack(stack) };
}

const cognito = build({ oauth: 'cognito', cognitoDomainPrefix: 'notebook-jobs-test' });
const external = build({
  oauth: 'external',
  oauthIssuer: 'https://login.example.com/realms/jobs',
  oauthAudience: 'https://jobs.example.com/mcp',
  oauthTenantClaim: 'preferred_username',
  oauthScopePrefix: 'jobs:',
});

/** Every string a CloudFormation value resolves to, tokens shown as their references. */
function flat(value: unknown): string {
  return JSON.stringify(value);
}

describe('Cognito as the authorization server (oauth=cognito)', () => {
  it('creates a user pool with managed login, no self sign-up and required MFA', () => {
    cognito.template.hasResourceProperties('AWS::Cognito::UserPool', {
      UserPoolTier: 'ESSENTIALS',
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      MfaConfiguration: 'ON',
    });
    cognito.template.hasResourceProperties('AWS::Cognito::UserPoolDomain', {
      Domain: 'notebook-jobs-test',
      ManagedLoginVersion: 2,
    });
    cognito.template.resourceCountIs('AWS::Cognito::ManagedLoginBranding', 1);
  });

  it('has a resource server named by the MCP URL (the resource clients send), with read and write', () => {
    const [server] = Object.values(cognito.template.findResources('AWS::Cognito::UserPoolResourceServer'));
    expect(flat((server as any).Properties.Identifier)).toMatch(
      /https:\/\/.*RestApi.*execute-api.*\/api\/mcp/,
    );
    cognito.template.hasResourceProperties('AWS::Cognito::UserPoolResourceServer', {
      Identifier: Match.anyValue(),
      Scopes: [Match.objectLike({ ScopeName: 'read' }), Match.objectLike({ ScopeName: 'write' })],
    });
  });

  it("has one public app client: code grant, those scopes, claude.ai's and ChatGPT's callbacks", () => {
    cognito.template.resourceCountIs('AWS::Cognito::UserPoolClient', 1);
    cognito.template.hasResourceProperties('AWS::Cognito::UserPoolClient', {
      GenerateSecret: false,
      AllowedOAuthFlows: ['code'],
      AllowedOAuthFlowsUserPoolClient: true,
      AllowedOAuthScopes: Match.anyValue(),
      CallbackURLs: [...DEFAULT_OAUTH_CALLBACK_URLS],
      SupportedIdentityProviders: ['COGNITO'],
    });
    // `<resource server>/<scope>`, the resource server's identifier as a reference.
    const [client] = Object.values(cognito.template.findResources('AWS::Cognito::UserPoolClient'));
    const scopes = flat((client as any).Properties.AllowedOAuthScopes);
    expect(scopes).toMatch(/AuthUsersNotebookJobs.*"\/read".*AuthUsersNotebookJobs.*"\/write".*"openid"/);
    expect(DEFAULT_OAUTH_CALLBACK_URLS).toEqual([
      'https://claude.ai/api/mcp/auth_callback',
      'https://claude.com/api/mcp/auth_callback',
      'https://chatgpt.com/connector_platform_oauth_redirect',
    ]);
  });

  it('tells the authorizer the pool, the /mcp audience, the app client, sub and the scope prefix', () => {
    const env = authorizerEnv(cognito.template);
    expect(flat(env.NOTEBOOK_JOBS_OAUTH_ISSUER)).toMatch(/https:\/\/cognito-idp\..*AuthUsers/);
    expect(flat(env.NOTEBOOK_JOBS_OAUTH_AUDIENCE)).toMatch(/https:\/\/.*RestApi.*execute-api.*\/api\/mcp/);
    expect(flat(env.NOTEBOOK_JOBS_OAUTH_CLIENT_IDS)).toMatch(/AuthUsersMcpClients/);
    expect(env.NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM).toBe('sub');
    expect(flat(env.NOTEBOOK_JOBS_OAUTH_SCOPE_PREFIX)).toMatch(/https:\/\/.*RestApi.*\/api\/mcp\/"\]/);
  });

  it('outputs the issuer, the client id and the login domain', () => {
    for (const output of ['OAuthIssuer', 'OAuthClientId', 'OAuthLoginDomain'])
      expect(Object.keys(cognito.template.findOutputs(output))).toEqual([output]);
  });
});

describe('the gateway side (both variants)', () => {
  it.each([
    ['cognito', cognito.template],
    ['external', external.template],
  ])('%s: serves the metadata without a token, from a mock integration', (_name, template) => {
    const methods = template.findResources('AWS::ApiGateway::Method', {
      Properties: { HttpMethod: 'GET', AuthorizationType: 'NONE', Integration: { Type: 'MOCK' } },
    });
    expect(Object.keys(methods)).toHaveLength(2);
    const resources = template.findResources('AWS::ApiGateway::Resource');
    const parts = Object.values(resources).map(
      (r) => (r as { Properties: { PathPart: string } }).Properties.PathPart,
    );
    expect(parts).toEqual(expect.arrayContaining(['.well-known', 'oauth-protected-resource', 'mcp']));
  });

  it('external: the metadata names the issuer, the configured resource and its scopes', () => {
    const methods = external.template.findResources('AWS::ApiGateway::Method', {
      Properties: { Integration: { Type: 'MOCK' } },
    });
    for (const method of Object.values(methods)) {
      const body = (method as any).Properties.Integration.IntegrationResponses[0].ResponseTemplates[
        'application/json'
      ];
      expect(JSON.parse(body)).toEqual({
        resource: 'https://jobs.example.com/mcp',
        authorization_servers: ['https://login.example.com/realms/jobs'],
        scopes_supported: ['jobs:read', 'jobs:write'],
        bearer_methods_supported: ['header'],
        resource_name: 'notebook-jobs',
      });
    }
    // A custom domain at its root: the RFC 9728 location itself.
    external.template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      ResponseParameters: {
        'gatewayresponse.header.WWW-Authenticate':
          '\'Bearer resource_metadata="https://jobs.example.com/.well-known/oauth-protected-resource/mcp", scope="jobs:read jobs:write"\'',
      },
    });
    const env = authorizerEnv(external.template);
    expect(env).toMatchObject({
      NOTEBOOK_JOBS_OAUTH_ISSUER: 'https://login.example.com/realms/jobs',
      NOTEBOOK_JOBS_OAUTH_AUDIENCE: 'https://jobs.example.com/mcp',
      NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM: 'preferred_username',
      NOTEBOOK_JOBS_OAUTH_SCOPE_PREFIX: 'jobs:',
      NOTEBOOK_JOBS_OAUTH_CLIENT_IDS: '',
    });
    external.template.resourceCountIs('AWS::Cognito::UserPool', 0);
  });

  it('cognito: the 401 points at the metadata under the stage', () => {
    const [response] = Object.values(
      cognito.template.findResources('AWS::ApiGateway::GatewayResponse', {
        Properties: { ResponseType: 'UNAUTHORIZED' },
      }),
    );
    const header = flat(
      (response as any).Properties.ResponseParameters['gatewayresponse.header.WWW-Authenticate'],
    );
    expect(header).toMatch(
      /Bearer resource_metadata=\\"https:\/\/.*\/api\/.well-known\/oauth-protected-resource\/mcp\\", scope=\\"https:\/\/.*\/api\/mcp\/read https:\/\/.*\/api\/mcp\/write\\"/,
    );
  });

  it('without oauth: no pool, no metadata routes, a plain Bearer challenge, no OAuth settings', () => {
    const { template } = build({});
    template.resourceCountIs('AWS::Cognito::UserPool', 0);
    expect(
      Object.keys(
        template.findResources('AWS::ApiGateway::Method', { Properties: { Integration: { Type: 'MOCK' } } }),
      ),
    ).toEqual([]);
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      ResponseParameters: { 'gatewayresponse.header.WWW-Authenticate': "'Bearer'" },
    });
    expect(Object.keys(authorizerEnv(template)).filter((name) => name.includes('OAUTH'))).toEqual([]);
  });
});

describe('settings', () => {
  it.each([
    [{ oauth: 'cognito' }, /cognitoDomainPrefix is required/],
    [{ oauth: 'cognito', cognitoDomainPrefix: 'my-aws-login' }, /without "aws"/],
    [{ oauth: 'external' }, /oauthIssuer is required/],
    [{ oauth: 'external', oauthIssuer: 'http://login.example.com' }, /https URL/],
    [{ oauthIssuer: 'https://login.example.com' }, /needs oauth=external/],
    [
      { oauth: 'cognito', cognitoDomainPrefix: 'ok-prefix', oauthCallbackUrls: 'http://evil.example/cb' },
      /https URLs/,
    ],
    [{ oauth: 'yes' }, /oauth must be one of off, cognito, external/],
  ])('refuses %j', (context, message) => {
    expect(() => build(context)).toThrow(message);
  });
});

describe('cdk-nag AwsSolutions', () => {
  it.each([
    ['cognito', cognito.stack],
    ['external', external.stack],
  ])('finds nothing unacknowledged with oauth=%s', (_name, stack) => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(
      report.violations.map(
        (v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
      ),
    ).toEqual([]);
  });
});

function authorizerEnv(template: Template): Record<string, unknown> {
  const functions = template.findResources('AWS::Lambda::Function', {
    Properties: { Description: 'notebook-jobs: bearer token authorizer' },
  });
  const [fn] = Object.values(functions) as {
    Properties: { Environment: { Variables: Record<string, unknown> } };
  }[];
  return fn?.Properties.Environment.Variables ?? {};
}
