/**
 * The default authorization server for MCP clients that can only do OAuth (claude.ai, ChatGPT): an
 * Amazon Cognito user pool with managed login, a resource server whose identifier is the MCP URL,
 * with the `read` and `write` scopes (tokens carry them as `<MCP URL>/read` and `.../write`), and one
 * public app client (no secret; authorization code grant, where the client's PKCE is what binds the
 * code to it) whose callback URLs are the MCP clients' redirect URIs. Users are created by an
 * administrator (no self sign-up); each user's `sub` is their tenant.
 *
 * The identifier is the MCP URL because that is the `resource` MCP clients send (RFC 8707), and
 * Cognito's resource binding (Essentials and Plus, managed login) issues a token whose `aud` is the
 * resource it was asked for; a token without `aud` (no `resource` sent) is accepted by issuer +
 * this client id + the scopes, which name the same URL (lambda/auth/jwt-verifier.ts). Client
 * registration is this one pre-registered client id; docs/mcp.md says why and how clients use it.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  CfnManagedLoginBranding,
  FeaturePlan,
  ManagedLoginVersion,
  Mfa,
  OAuthScope,
  ResourceServerScope,
  UserPool,
  UserPoolClient,
  UserPoolClientIdentityProvider,
  AccountRecovery,
} from 'aws-cdk-lib/aws-cognito';
import { Construct } from 'constructs';
import { acknowledge } from './nag-acknowledgements.ts';

export interface CognitoAuthorizationProps {
  /** The MCP URL: the resource server's identifier, so scopes are `<it>/read` and `<it>/write`. */
  readonly resourceUrl: string;
  readonly domainPrefix: string;
  readonly callbackUrls: readonly string[];
  readonly removalPolicy: RemovalPolicy;
}

/** The user pool, its managed login domain and the MCP clients' app client. */
export class CognitoAuthorization extends Construct {
  readonly userPool: UserPool;
  readonly client: UserPoolClient;
  /** The pool's issuer URL: the `iss` of its tokens and the base of its discovery document. */
  readonly issuer: string;
  /** The managed login domain's base URL (sign-in pages, /oauth2/authorize, /oauth2/token). */
  readonly domainUrl: string;

  constructor(scope: Construct, id: string, props: CognitoAuthorizationProps) {
    super(scope, id);
    this.userPool = new UserPool(this, 'Users', {
      // Essentials: managed login (the newer hosted pages) needs it or Plus.
      featurePlan: FeaturePlan.ESSENTIALS,
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      accountRecovery: AccountRecovery.EMAIL_ONLY,
      // An account here can run arbitrary code as its tenant: a second factor is required.
      mfa: Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
      },
      deletionProtection: props.removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy: props.removalPolicy,
    });
    const read = new ResourceServerScope({
      scopeName: 'read',
      scopeDescription: 'Read jobs, logs and results',
    });
    const write = new ResourceServerScope({
      scopeName: 'write',
      scopeDescription: 'Submit, cancel and delete jobs (runs notebooks)',
    });
    const resourceServer = this.userPool.addResourceServer('NotebookJobs', {
      identifier: props.resourceUrl,
      userPoolResourceServerName: 'notebook-jobs',
      scopes: [read, write],
    });
    this.client = this.userPool.addClient('McpClients', {
      userPoolClientName: 'mcp-clients',
      // Public: claude.ai, ChatGPT and other MCP clients cannot keep a secret for every user's server.
      generateSecret: false,
      authFlows: {},
      supportedIdentityProviders: [UserPoolClientIdentityProvider.COGNITO],
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [
          OAuthScope.resourceServer(resourceServer, read),
          OAuthScope.resourceServer(resourceServer, write),
          OAuthScope.OPENID,
        ],
        callbackUrls: [...props.callbackUrls],
      },
      preventUserExistenceErrors: true,
      enableTokenRevocation: true,
      accessTokenValidity: Duration.hours(1),
      idTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(30),
    });
    const domain = this.userPool.addDomain('Login', {
      cognitoDomain: { domainPrefix: props.domainPrefix },
      managedLoginVersion: ManagedLoginVersion.NEWER_MANAGED_LOGIN,
    });
    // Managed login shows pages only for a client with a branding style; Cognito's defaults.
    new CfnManagedLoginBranding(this, 'LoginBranding', {
      userPoolId: this.userPool.userPoolId,
      clientId: this.client.userPoolClientId,
      useCognitoProvidedValues: true,
    });
    const stack = Stack.of(this);
    this.issuer = `https://cognito-idp.${stack.region}.${stack.urlSuffix}/${this.userPool.userPoolId}`;
    this.domainUrl = domain.baseUrl();

    acknowledge(
      this.userPool,
      'COG3',
      'Threat protection (advanced security mode ENFORCED) needs the Plus feature plan, billed per monthly active user; MFA is required, self sign-up is off and passwords are long. Operators who want it switch the plan and mode in lib/auth.ts.',
    );
    acknowledge(
      this.userPool,
      'COG8',
      'Essentials, not Plus: Plus adds threat protection at a per-user price (see COG3); managed login, required MFA and the resource server need only Essentials.',
    );
  }
}
