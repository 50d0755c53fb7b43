/**
 * The runner's configuration, read once from the environment (see main.ts for the variables).
 * Local mode keeps artifacts and logs under a data folder; AWS mode (NOTEBOOK_JOBS_ARTIFACTS=s3)
 * keeps notebooks in S3, writes logs to stdout for the awslogs driver, and may publish events.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, oneOfEnv, optionalEnv, requireEnv, type Env } from '../../lambda/core/config.ts';
import { TENANT_PATTERN } from '../../lambda/adapters/dynamodb/token-store.ts';
import { kernelEnvPass } from '../../lambda/kernels/kernel-env.ts';
import type { EngineName } from '../../lambda/kernels/python.ts';
import type { RunnerLimits } from './limits.ts';
import { readIntSetting, SECRET_ENV_PREFIX, SECRETS_DIR, SETTINGS } from '../../lambda/core/settings.ts';
import { secretEnvPrefixProblem } from '../../lambda/core/secrets.ts';

/** Local mode: artifacts and logs are files under the data folder. */
export interface FileStorageConfig {
  mode: 'file';
  artifactsRoot: string;
  logsFolder: string;
  /** Folder file:// submissions may come from. */
  workspace: string;
}

/** AWS mode: notebooks in S3, logs on stdout (-> CloudWatch), state changes to EventBridge. */
export interface S3StorageConfig {
  mode: 's3';
  bucket: string;
  /** Event bus for state changes; unset: none are published. */
  eventBus: string | undefined;
  /** An S3-compatible endpoint instead of AWS S3; unset on AWS. */
  s3Endpoint: string | undefined;
  /** The role whose job-scoped sessions the runner works with (job-credentials.ts). */
  runnerRoleArn: string;
  /** The job's tenant (a RunTask override): names the folders the session may reach. */
  tenant: string;
  region: string;
}

export interface RunnerConfig {
  jobId: string;
  table: string;
  dynamodbEndpoint: string | undefined;
  region: string | undefined;
  engine: 'auto' | EngineName;
  python: string | undefined;
  enginesDir: string | undefined;
  progressIntervalMs: number;
  /** Days an ended job is kept (DynamoDB TTL on the final write); the same as the Lambdas use. */
  retentionDays: number;
  watchStdin: boolean;
  /** Scratch folder; each job works in `<workRoot>/<job id>`. */
  workRoot: string;
  /** The user engines and kernels run as, when not the runner's own (the runner is then root). */
  kernelUser: string | undefined;
  /** More variable names kernels may see besides the allow-list (never AWS_*, NOTEBOOK_JOBS_*). */
  kernelEnvPass: string[];
  storage: FileStorageConfig | S3StorageConfig;
  /** What one job may produce (log bytes, log line length, executed notebook size). */
  limits: RunnerLimits;
  /** Local mode: where `env:` and `file:` secrets come from (AWS mode: Secrets Manager, SSM). */
  secrets: { envPrefix: string; secretsDir: string | undefined };
}

function readLimits(env: Env): RunnerLimits {
  return {
    maxLogBytes: readIntSetting(env, SETTINGS.maxLogBytes),
    maxLogLineBytes: readIntSetting(env, SETTINGS.maxLogLineBytes),
    maxOutputBytes: readIntSetting(env, SETTINGS.maxOutputBytes),
    maxOutputFiles: readIntSetting(env, SETTINGS.maxOutputFiles),
    maxOutputFilesBytes: readIntSetting(env, SETTINGS.maxOutputFilesBytes),
  };
}

/**
 * Reads and checks the runner's environment; throws ConfigError naming the first missing or
 * malformed variable. `args` are the command line arguments after the script (a job id may be one).
 */
export function readRunnerConfig(
  env: Env,
  args: readonly string[] = [],
  cwd = process.cwd(),
  awaitingJob = false,
): RunnerConfig {
  // A warm runner on AWS learns its job and tenant from the offer it claims (main.ts fills them in).
  const jobId = awaitingJob ? '' : (args[0] ?? requireEnv(env, 'NOTEBOOK_JOBS_JOB_ID'));
  const mode = oneOfEnv(env, 'NOTEBOOK_JOBS_ARTIFACTS', ['file', 's3'] as const, 'file');
  const table = requireEnv(env, 'NOTEBOOK_JOBS_TABLE');
  let storage: RunnerConfig['storage'];
  let workRoot: string;
  if (mode === 's3') {
    storage = {
      mode,
      bucket: requireEnv(env, 'NOTEBOOK_JOBS_BUCKET'),
      eventBus: optionalEnv(env, 'NOTEBOOK_JOBS_EVENT_BUS'),
      s3Endpoint: optionalEnv(env, 'NOTEBOOK_JOBS_S3_ENDPOINT'),
      runnerRoleArn: requireEnv(env, 'NOTEBOOK_JOBS_RUNNER_ROLE_ARN'),
      tenant: awaitingJob ? '' : requireEnv(env, 'NOTEBOOK_JOBS_TENANT'),
      region: requireEnv(env, 'AWS_REGION'),
    };
    workRoot = join(optionalEnv(env, 'NOTEBOOK_JOBS_DATA') ?? tmpdir(), 'work');
  } else {
    const data = requireEnv(env, 'NOTEBOOK_JOBS_DATA');
    storage = {
      mode,
      artifactsRoot: join(data, 'artifacts'),
      logsFolder: join(data, 'logs'),
      workspace: optionalEnv(env, 'NOTEBOOK_JOBS_WORKSPACE') ?? cwd,
    };
    workRoot = join(data, 'work');
  }
  if (storage.mode === 's3') {
    if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]+$/.test(storage.runnerRoleArn))
      throw new ConfigError(
        `NOTEBOOK_JOBS_RUNNER_ROLE_ARN is not an IAM role ARN: "${storage.runnerRoleArn}"`,
      );
    if (!awaitingJob && !TENANT_PATTERN.test(storage.tenant))
      throw new ConfigError(`NOTEBOOK_JOBS_TENANT is not a tenant name: "${storage.tenant}"`);
  }
  const kernelUser = optionalEnv(env, 'NOTEBOOK_JOBS_KERNEL_USER');
  // A user name, not an option or a path: it becomes an argument of the sandbox.
  if (kernelUser !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(kernelUser))
    throw new ConfigError(`NOTEBOOK_JOBS_KERNEL_USER is not a user name: "${kernelUser}"`);
  const envPrefix = optionalEnv(env, SECRET_ENV_PREFIX.variable) ?? SECRET_ENV_PREFIX.default;
  const prefixProblem = secretEnvPrefixProblem(envPrefix);
  if (prefixProblem) throw new ConfigError(`${SECRET_ENV_PREFIX.variable}: ${prefixProblem}`);
  return {
    jobId,
    table,
    dynamodbEndpoint: optionalEnv(env, 'NOTEBOOK_JOBS_DYNAMODB_ENDPOINT'),
    region: optionalEnv(env, 'AWS_REGION'),
    engine: oneOfEnv(env, 'NOTEBOOK_JOBS_ENGINE', ['auto', 'nbclient', 'papermill'] as const, 'auto'),
    python: optionalEnv(env, 'NOTEBOOK_JOBS_PYTHON'),
    enginesDir: optionalEnv(env, 'NOTEBOOK_JOBS_ENGINES_DIR'),
    progressIntervalMs: readIntSetting(env, SETTINGS.progressIntervalMs),
    retentionDays: readIntSetting(env, SETTINGS.retentionDays),
    watchStdin: env.NOTEBOOK_JOBS_WATCH_STDIN === '1',
    workRoot: optionalEnv(env, 'NOTEBOOK_JOBS_WORK_ROOT') ?? workRoot,
    kernelUser,
    kernelEnvPass: kernelEnvPass(env),
    storage,
    limits: readLimits(env),
    secrets: { envPrefix, secretsDir: optionalEnv(env, SECRETS_DIR.variable) },
  };
}
