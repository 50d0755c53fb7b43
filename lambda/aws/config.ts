/**
 * Configuration of the AWS entry points, read once per cold start from the NOTEBOOK_JOBS_* variables
 * the CDK stack sets. Every cloud setting is required: a missing or malformed one fails at start-up
 * with the variable's name, never later as a confusing AWS error.
 */
import { WARM_KERNEL_PATTERN, WARM_KERNEL_VARIABLE } from '../adapters/dynamodb/warm-runners.ts';
import { ConfigError, optionalEnv, requireEnv, type Env } from '../core/config.ts';
import { readIntSetting, SETTINGS } from '../core/settings.ts';
import type { EcsLauncherConfig } from '../adapters/aws/ecs-launcher.ts';
import { parseTenantSources, type TenantSources } from '../adapters/aws/s3-artifacts.ts';

export const CAPACITIES = ['FARGATE', 'FARGATE_SPOT'] as const;
export type Capacity = (typeof CAPACITIES)[number];

/** Everything the api, mcp, task-events and sweeper Lambdas need to build the JobService. */
export interface AwsConfig {
  /** AWS_REGION (set by Lambda); undefined lets the SDK resolve it. */
  region: string | undefined;
  table: string;
  /** Endpoint override for a DynamoDB-compatible server (tests: dynalite). Unset on AWS. */
  dynamodbEndpoint: string | undefined;
  /** Days ended jobs are kept before DynamoDB TTL removes them. */
  retentionDays: number;
  bucket: string;
  /** External s3:// prefixes each tenant may submit notebooks from (NOTEBOOK_JOBS_TENANT_SOURCES). */
  tenantSources: TenantSources;
  ecs: EcsLauncherConfig;
  logs: { logGroup: string; streamPrefix: string };
  eventBus: string;
  maxConcurrentJobs: number;
  launchDeadlineSeconds: number;
  maxAttempts: number;
  /** Caps on the input files a job may bring (NOTEBOOK_JOBS_MAX_INPUT_FILES[_BYTES]). */
  maxInputFiles: number;
  maxInputFilesBytes: number;
  cursorSecretArn: string;
  /**
   * The kernel of the warm runner pool (NOTEBOOK_JOBS_WARM_KERNEL, set by the stack when
   * `warmRunners` > 0): started jobs of that kernel are offered to its idle runners first.
   */
  warmKernel: string | undefined;
}

/** What the authorizer and the `tokens` CLI need: only the table. */
export interface TokenTableConfig {
  region: string | undefined;
  table: string;
  dynamodbEndpoint: string | undefined;
}

/**
 * Reads and validates the JobService configuration; throws ConfigError naming the variable.
 * `warn` hears about renamed variables still set under their old name (default: stderr).
 */
export function readAwsConfig(env: Env, warn?: (message: string) => void): AwsConfig {
  return {
    ...readTokenTableConfig(env),
    retentionDays: readIntSetting(env, SETTINGS.retentionDays, warn),
    bucket: requireEnv(env, 'NOTEBOOK_JOBS_BUCKET'),
    tenantSources: tenantSources(env, 'NOTEBOOK_JOBS_TENANT_SOURCES'),
    ecs: {
      cluster: requireEnv(env, 'NOTEBOOK_JOBS_CLUSTER'),
      taskDefinition: requireEnv(env, 'NOTEBOOK_JOBS_TASK_DEFINITION'),
      containerName: requireEnv(env, 'NOTEBOOK_JOBS_CONTAINER'),
      subnets: idList(env, 'NOTEBOOK_JOBS_SUBNETS', 'subnet-'),
      securityGroups: idList(env, 'NOTEBOOK_JOBS_SECURITY_GROUPS', 'sg-'),
      assignPublicIp:
        requireOneOf(env, 'NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP', ['ENABLED', 'DISABLED']) === 'ENABLED',
      capacity: requireOneOf(env, 'NOTEBOOK_JOBS_CAPACITY', CAPACITIES),
    },
    logs: {
      logGroup: requireEnv(env, 'NOTEBOOK_JOBS_LOG_GROUP'),
      streamPrefix: requireEnv(env, 'NOTEBOOK_JOBS_LOG_STREAM_PREFIX'),
    },
    eventBus: requireEnv(env, 'NOTEBOOK_JOBS_EVENT_BUS'),
    maxConcurrentJobs: readIntSetting(env, SETTINGS.maxConcurrentJobs, warn),
    launchDeadlineSeconds: readIntSetting(env, SETTINGS.launchDeadlineSeconds, warn),
    maxAttempts: readIntSetting(env, SETTINGS.maxAttempts, warn),
    maxInputFiles: readIntSetting(env, SETTINGS.maxInputFiles, warn),
    maxInputFilesBytes: readIntSetting(env, SETTINGS.maxInputFilesBytes, warn),
    cursorSecretArn: requireEnv(env, 'NOTEBOOK_JOBS_CURSOR_SECRET_ARN'),
    warmKernel: warmKernel(env),
  };
}

/** NOTEBOOK_JOBS_WARM_KERNEL: a kernel name (it becomes part of a key and an IAM condition). */
function warmKernel(env: Env): string | undefined {
  const kernel = optionalEnv(env, WARM_KERNEL_VARIABLE);
  if (kernel !== undefined && !WARM_KERNEL_PATTERN.test(kernel))
    throw new ConfigError(`${WARM_KERNEL_VARIABLE} is not a kernel name: "${kernel}"`);
  return kernel;
}

/** Reads the table settings alone (authorizer Lambda, `notebook-jobs tokens`). */
export function readTokenTableConfig(env: Env): TokenTableConfig {
  return {
    region: optionalEnv(env, 'AWS_REGION'),
    table: requireEnv(env, 'NOTEBOOK_JOBS_TABLE'),
    dynamodbEndpoint: optionalEnv(env, 'NOTEBOOK_JOBS_DYNAMODB_ENDPOINT'),
  };
}

function tenantSources(env: Env, name: string): TenantSources {
  const raw = optionalEnv(env, name);
  if (raw === undefined) return {};
  try {
    return parseTenantSources(raw);
  } catch (error) {
    throw new ConfigError(`${name} ${(error as Error).message}`);
  }
}

function requireOneOf<T extends string>(env: Env, name: string, allowed: readonly T[]): T {
  const raw = requireEnv(env, name);
  if (!allowed.includes(raw as T))
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

/** A comma-separated, non-empty list of AWS resource ids that all start with `prefix`. */
function idList(env: Env, name: string, prefix: string): string[] {
  const ids = requireEnv(env, name)
    .split(',')
    .map((id) => id.trim())
    .filter(Boolean);
  const bad = ids.filter((id) => !id.startsWith(prefix));
  if (ids.length === 0 || bad.length > 0) {
    throw new ConfigError(
      `${name} must be a comma-separated list of ${prefix}... ids, got "${env[name] ?? ''}"`,
    );
  }
  return ids;
}
