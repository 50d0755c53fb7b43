/**
 * The deployment's settings, read once from CDK context (cdk.json `context`, or `-c key=value` on the
 * command line) into one typed object. Every key is optional with a documented default
 * (docs/deploy.md); a malformed value stops synth with a message naming the key and what is allowed,
 * instead of deploying something other than what was asked for.
 */
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { checkFargateSize } from '../lambda/adapters/aws/ecs-launcher.ts';
import { errorMessage } from '../lambda/core/errors.ts';
import { OAUTH_SETTINGS, SETTINGS, type IntSetting } from '../lambda/core/settings.ts';
import { readOAuthConfig, type OAuthConfig } from '../lambda/auth/protected-resource.ts';
import { parseTenantSources, type TenantSources } from '../lambda/adapters/aws/s3-artifacts.ts';
import type { Node } from 'constructs';

/** What job tasks (and so notebooks) can reach: the internet, or only AWS APIs through VPC endpoints. */
export type Egress = 'public' | 'private';
export type TaskArchitecture = 'arm64' | 'x86_64';
export type RemovalChoice = 'retain' | 'destroy';

export interface StackConfig {
  /** Existing VPC to run tasks in (needs an account and region at synth); else a small VPC is created. */
  readonly vpcId: string | undefined;
  /**
   * public: public subnets + public IP, internet egress, no NAT (cheapest); private: isolated
   * subnets with VPC endpoints for the AWS APIs the runner needs, no internet (lib/network.ts).
   */
  readonly egress: Egress;
  /** Default Fargate size of a job task (CPU units, MiB); jobs may override within Fargate's sizes. */
  readonly taskCpu: number;
  readonly taskMemory: number;
  readonly taskArchitecture: TaskArchitecture;
  /** Jobs running at once; more wait queued. */
  readonly maxConcurrentJobs: number;
  /** Days an ended job, its notebooks and its idempotency key are kept (DynamoDB TTL, S3 lifecycle). */
  readonly retentionDays: number;
  /** Days Lambda, task and API logs are kept. */
  readonly logRetentionDays: RetentionDays;
  readonly useFargateSpot: boolean;
  /**
   * Warm runner tasks kept started with the default kernel, each taking one job in about a second
   * instead of a task launch (lib/warm-runners.ts); 0 (default): none.
   */
  readonly warmRunners: number;
  /** Browser origins the MCP endpoint accepts (empty: only clients that send no Origin). */
  readonly mcpAllowedOrigins: readonly string[];
  /** API Gateway stage throttling: steady requests per second and burst. */
  readonly throttleRate: number;
  readonly throttleBurst: number;
  /** Alarm notifications go to this address through SNS when set. */
  readonly alarmEmail: string | undefined;
  /** retain (default) keeps the table, bucket and secret when the stack is deleted; destroy is for dev. */
  readonly removalPolicy: RemovalChoice;
  /** WAFv2 web ACL to associate with the API stage. */
  readonly webAclArn: string | undefined;
  /** External s3:// prefixes each tenant ("*": every tenant) may submit notebooks from. */
  readonly tenantSources: TenantSources;
  /** AWS X-Ray: active tracing of the Lambdas and the API stage (costs per trace; off by default). */
  readonly tracing: boolean;
  /** OAuth 2.1 for MCP clients beside the API tokens: off (default), a Cognito user pool, or an external issuer. */
  readonly oauth: OAuthStackConfig | null;
}

/**
 * Where OAuth access tokens come from (context `oauth`). `cognito`: the stack creates a user pool
 * with managed login, a resource server with the read/write scopes and a public PKCE app client
 * (lib/auth.ts). `external`: any OpenID Connect / OAuth 2.1 issuer (Auth0, Okta, Entra ID,
 * Keycloak), configured there. Either way `audience` defaults to the API's /mcp URL.
 */
export type OAuthStackConfig =
  | {
      readonly kind: 'cognito';
      /** The managed login domain: https://<prefix>.auth.<region>.amazoncognito.com. */
      readonly domainPrefix: string;
      /** Redirect URIs the app client accepts (claude.ai's, claude.com's and ChatGPT's by default). */
      readonly callbackUrls: readonly string[];
      readonly audience: string | undefined;
    }
  | {
      readonly kind: 'external';
      readonly issuer: string;
      readonly audience: string | undefined;
      readonly tenantClaim: string;
      readonly scopePrefix: string;
      readonly clientIds: readonly string[];
    };

/**
 * The MCP clients' OAuth redirect URIs a Cognito app client accepts by default: claude.ai's (on
 * both of Anthropic's domains) and ChatGPT's connectors (sources in docs/mcp.md).
 */
export const DEFAULT_OAUTH_CALLBACK_URLS = [
  'https://claude.ai/api/mcp/auth_callback',
  'https://claude.com/api/mcp/auth_callback',
  'https://chatgpt.com/connector_platform_oauth_redirect',
] as const;

/** Thrown for a context value that is present but not allowed. */
export class StackConfigError extends Error {}

const LOG_RETENTION_DAYS = Object.values(RetentionDays).filter(
  (value): value is RetentionDays => typeof value === 'number' && value > 0,
);

/** Reads and validates the deployment settings from the app's context. */
export function readStackConfig(node: Node): StackConfig {
  const get = (key: string): unknown => node.tryGetContext(key);
  const taskCpu = integer(get, 'taskCpu', 1024, 256, 16384);
  const taskMemory = integer(get, 'taskMemory', 4096, 512, 122880);
  try {
    // The same table that checks per-job sizes at submit time.
    checkFargateSize(taskCpu, taskMemory);
  } catch (error) {
    throw new StackConfigError(`context taskCpu/taskMemory: ${errorMessage(error)}`);
  }
  const retentionDays = setting(get, SETTINGS.retentionDays);
  const logRetention = setting(get, SETTINGS.logRetentionDays);
  if (!LOG_RETENTION_DAYS.includes(logRetention)) {
    throw new StackConfigError(
      `context logRetentionDays must be a CloudWatch Logs retention (${LOG_RETENTION_DAYS.join(', ')}), got ${logRetention}`,
    );
  }
  if (get('taskSubnets') !== undefined) {
    throw new StackConfigError(
      'context taskSubnets was replaced by egress (public | private); private now means isolated subnets with VPC endpoints and no NAT gateway',
    );
  }
  const vpcId = optionalString(get, 'vpcId');
  if (vpcId !== undefined && !/^vpc-[0-9a-f]{8,17}$/.test(vpcId)) {
    throw new StackConfigError(`context vpcId must look like vpc-0123456789abcdef0, got "${vpcId}"`);
  }
  const alarmEmail = optionalString(get, 'alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
    throw new StackConfigError(`context alarmEmail must be an email address, got "${alarmEmail}"`);
  }
  const webAclArn = optionalString(get, 'webAclArn');
  if (
    webAclArn !== undefined &&
    !/^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:\d{12}:regional\/webacl\//.test(webAclArn)
  ) {
    throw new StackConfigError(
      `context webAclArn must be a regional WAFv2 web ACL ARN (arn:aws:wafv2:<region>:<account>:regional/webacl/...), got "${webAclArn}"`,
    );
  }
  return {
    vpcId,
    egress: oneOf(get, 'egress', ['public', 'private'] as const, 'public'),
    taskCpu,
    taskMemory,
    taskArchitecture: oneOf(get, 'taskArchitecture', ['arm64', 'x86_64'] as const, 'arm64'),
    maxConcurrentJobs: setting(get, SETTINGS.maxConcurrentJobs),
    retentionDays,
    logRetentionDays: logRetention as RetentionDays,
    useFargateSpot: boolean(get, 'useFargateSpot', false),
    warmRunners: integer(get, 'warmRunners', 0, 0, 100),
    mcpAllowedOrigins: origins(get, 'mcpAllowedOrigins'),
    throttleRate: integer(get, 'throttleRate', 50, 1, 10000),
    throttleBurst: integer(get, 'throttleBurst', 100, 1, 5000),
    alarmEmail,
    removalPolicy: oneOf(get, 'removalPolicy', ['retain', 'destroy'] as const, 'retain'),
    webAclArn,
    tenantSources: tenantSources(get),
    tracing: boolean(get, 'tracing', false),
    oauth: oauthConfig(get),
  };
}

function oauthConfig(get: Getter): OAuthStackConfig | null {
  const kind = oneOf(get, OAUTH_SETTINGS_CONTEXT.kind, ['off', 'cognito', 'external'] as const, 'off');
  const issuer = optionalString(get, OAUTH_SETTINGS.issuer.context);
  const audience = optionalUrl(get, OAUTH_SETTINGS.audience.context);
  if (kind !== 'external' && issuer !== undefined)
    throw new StackConfigError(
      `context ${OAUTH_SETTINGS.issuer.context} needs oauth=external (it is "${kind}")`,
    );
  if (kind === 'off') return null;
  if (kind === 'cognito') {
    const domainPrefix = optionalString(get, OAUTH_SETTINGS_CONTEXT.domainPrefix);
    // Cognito's rules for a prefix domain: lower-case letters, digits and hyphens, no reserved words.
    if (
      domainPrefix === undefined ||
      !/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(domainPrefix) ||
      /aws|amazon|cognito/.test(domainPrefix)
    ) {
      throw new StackConfigError(
        `context ${OAUTH_SETTINGS_CONTEXT.domainPrefix} is required with oauth=cognito: a globally unique prefix of lower-case letters, digits and hyphens without "aws", "amazon" or "cognito", got ${show(domainPrefix)}`,
      );
    }
    const callbackUrls = urlList(get, OAUTH_SETTINGS_CONTEXT.callbackUrls) ?? [
      ...DEFAULT_OAUTH_CALLBACK_URLS,
    ];
    return { kind, domainPrefix, callbackUrls, audience };
  }
  if (issuer === undefined)
    throw new StackConfigError(
      `context ${OAUTH_SETTINGS.issuer.context} is required with oauth=external (the issuer URL)`,
    );
  const env: Record<string, string | undefined> = {
    [OAUTH_SETTINGS.issuer.variable]: issuer,
    [OAUTH_SETTINGS.tenantClaim.variable]: optionalString(get, OAUTH_SETTINGS.tenantClaim.context),
    [OAUTH_SETTINGS.scopePrefix.variable]: optionalString(get, OAUTH_SETTINGS.scopePrefix.context),
    [OAUTH_SETTINGS.clientIds.variable]: optionalString(get, OAUTH_SETTINGS.clientIds.context),
  };
  try {
    // The same checks the authorizer makes at its cold start, now (the audience is a placeholder).
    const checked = readOAuthConfig(env, audience ?? 'https://placeholder.example/mcp') as OAuthConfig;
    return {
      kind,
      issuer: checked.issuer,
      audience,
      tenantClaim: checked.tenantClaim,
      scopePrefix: checked.scopePrefix,
      clientIds: checked.clientIds,
    };
  } catch (error) {
    throw new StackConfigError(`context oauth=external: ${errorMessage(error)}`);
  }
}

/** Context keys of the OAuth settings only the stack takes. */
export const OAUTH_SETTINGS_CONTEXT = {
  kind: 'oauth',
  domainPrefix: 'cognitoDomainPrefix',
  callbackUrls: 'oauthCallbackUrls',
} as const;

function optionalUrl(get: Getter, key: string): string | undefined {
  const value = optionalString(get, key);
  if (value === undefined) return undefined;
  if (!URL.canParse(value) || !value.startsWith('https://'))
    throw new StackConfigError(`context ${key} must be an https URL, got ${show(value)}`);
  return value;
}

/** A JSON array of https URLs (http only on localhost), or a comma-separated string of them. */
function urlList(get: Getter, key: string): string[] | undefined {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return undefined;
  const list = typeof raw === 'string' ? raw.split(',').map((entry) => entry.trim()) : raw;
  if (!Array.isArray(list) || list.length === 0)
    throw new StackConfigError(`context ${key} must be a list of URLs or a comma-separated string`);
  for (const entry of list) {
    if (
      typeof entry !== 'string' ||
      !URL.canParse(entry) ||
      !/^(https:\/\/|http:\/\/localhost[:/])/.test(entry)
    )
      throw new StackConfigError(
        `context ${key} entries must be https URLs (http only for localhost), got ${show(entry)}`,
      );
  }
  return list as string[];
}

function tenantSources(get: Getter): TenantSources {
  const raw = get('tenantSources');
  if (raw === undefined) return {};
  try {
    return parseTenantSources(raw);
  } catch (error) {
    throw new StackConfigError(`context tenantSources ${errorMessage(error)}`);
  }
}

type Getter = (key: string) => unknown;

// Context from cdk.json keeps its JSON type; `-c key=value` always arrives as a string. Both are accepted.

function optionalString(get: Getter, key: string): string | undefined {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return undefined;
  if (typeof raw !== 'string')
    throw new StackConfigError(`context ${key} must be a string, got ${show(raw)}`);
  return raw.trim();
}

function integer(get: Getter, key: string, fallback: number, min: number, max: number): number {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return fallback;
  const value = typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new StackConfigError(`context ${key} must be an integer from ${min} to ${max}, got ${show(raw)}`);
  }
  return value;
}

/** A setting of the settings module that the stack takes from context. */
function setting(
  get: Getter,
  { context, default: fallback, min, max }: IntSetting & { context: string },
): number {
  return integer(get, context, fallback, min, max);
}

function boolean(get: Getter, key: string, fallback: boolean): boolean {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return fallback;
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new StackConfigError(`context ${key} must be true or false, got ${show(raw)}`);
}

function oneOf<T extends string>(get: Getter, key: string, allowed: readonly T[], fallback: T): T {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return fallback;
  if (typeof raw !== 'string' || !allowed.includes(raw as T)) {
    throw new StackConfigError(`context ${key} must be one of ${allowed.join(', ')}, got ${show(raw)}`);
  }
  return raw as T;
}

/** A JSON array of origins, or a comma-separated string of them; each exactly scheme://host[:port]. */
function origins(get: Getter, key: string): string[] {
  const raw = get(key);
  if (raw === undefined || raw === null || raw === '') return [];
  const list = typeof raw === 'string' ? raw.split(',').map((entry) => entry.trim()) : raw;
  if (!Array.isArray(list)) {
    throw new StackConfigError(`context ${key} must be a list of origins or a comma-separated string`);
  }
  const values = list.filter((entry) => entry !== '');
  for (const entry of values) {
    let origin: string | null;
    try {
      origin = typeof entry === 'string' ? new URL(entry).origin : null;
    } catch {
      origin = null;
    }
    if (origin === null || origin !== entry || !/^https?:/.test(entry)) {
      throw new StackConfigError(
        `context ${key} entries must be origins like https://app.example.com (scheme, host, optional port; no path), got ${show(entry)}`,
      );
    }
  }
  return values as string[];
}

function show(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : JSON.stringify(value);
}
