/**
 * The deployment's settings, read once from CDK context (cdk.json `context`, or `-c key=value` on the
 * command line) into one typed object. Every key is optional with a documented default
 * (docs/deploy.md); a malformed value stops synth with a message naming the key and what is allowed,
 * instead of deploying something other than what was asked for.
 */
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { checkFargateSize } from '../lambda/adapters/aws/ecs-launcher.ts';
import { errorMessage } from '../lambda/core/errors.ts';
import { SETTINGS, type IntSetting } from '../lambda/core/settings.ts';
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
}

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
    mcpAllowedOrigins: origins(get, 'mcpAllowedOrigins'),
    throttleRate: integer(get, 'throttleRate', 50, 1, 10000),
    throttleBurst: integer(get, 'throttleBurst', 100, 1, 5000),
    alarmEmail,
    removalPolicy: oneOf(get, 'removalPolicy', ['retain', 'destroy'] as const, 'retain'),
    webAclArn,
    tenantSources: tenantSources(get),
    tracing: boolean(get, 'tracing', false),
  };
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
