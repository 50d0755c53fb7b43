/**
 * The one place where the AWS adapters are wired into the JobService (api, mcp, task-events and
 * sweeper Lambdas). Each entry point calls `createAwsService` once per cold start: clients are
 * created once and passed down, and the cursor key is read from Secrets Manager once.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { CloudWatchLogReader } from '../adapters/aws/cloudwatch-log-reader.ts';
import { EcsLauncher } from '../adapters/aws/ecs-launcher.ts';
import { EventBridgePublisher } from '../adapters/aws/eventbridge-publisher.ts';
import { S3Artifacts, S3UploadUrls } from '../adapters/aws/s3-artifacts.ts';
import { S3LogPageReader } from '../adapters/aws/s3-log-page-reader.ts';
import { createDocumentClient } from '../adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../adapters/dynamodb/dynamodb-job-store.ts';
import { DynamoDbWarmRunners } from '../adapters/dynamodb/warm-runners.ts';
import { ConfigError } from '../core/config.ts';
import { CursorCodec } from '../core/cursor.ts';
import { InvalidRequestError } from '../core/errors.ts';
import { MonotonicJobIds } from '../core/ids.ts';
import { JobService, type JobServiceDeps } from '../core/job-service.ts';
import type { KernelInfo, LogReader, NotebookRenderer } from '../core/ports.ts';
import { staticKernelCatalog } from '../kernels/python.ts';
import type { AwsConfig } from './config.ts';
import { DEFAULT_SECRET_ENV_PREFIX } from '../core/secrets.ts';

/** Structured JSON logs for every AWS entry point. */
export const logger = new Logger({ serviceName: 'notebook-jobs' });

/**
 * Starts an invocation's log context: the Lambda request id (and function) on every line, plus
 * `keys` such as the caller's tenant; keys of an earlier invocation of this container are dropped.
 */
export function logInvocation(context: Context | undefined, keys: { tenant?: string } = {}): void {
  logger.resetKeys();
  if (context) logger.addContext(context);
  if (keys.tenant) logger.appendKeys({ tenant: keys.tenant });
}

/** The kernels registered in the runner image (container/Dockerfile). */
export const IMAGE_KERNELS: readonly KernelInfo[] = [
  { name: 'python3', language: 'python', display_name: 'Python 3 (ipykernel)' },
  { name: '.net-csharp', language: 'C#', display_name: '.NET (C#)' },
  { name: '.net-fsharp', language: 'F#', display_name: '.NET (F#)' },
  { name: '.net-pwsh', language: 'PowerShell', display_name: '.NET (PowerShell)' },
];

/**
 * HTML needs nbconvert, which lives in the runner image, not in Lambda. The service serves an HTML
 * copy when one was saved beside the executed notebook; otherwise this answers a clear 400.
 */
export const lambdaRenderer: NotebookRenderer = {
  html: () =>
    Promise.reject(
      new InvalidRequestError(
        'no HTML copy of this notebook was saved (the runner renders one with nbconvert when the job ' +
          'completes, and AWS Lambda cannot render it); download it with ?format=ipynb and run ' +
          '`jupyter nbconvert --to html`',
      ),
    ),
};

/** The AWS SDK clients, created once per cold start and passed to every adapter. */
export interface AwsClients {
  dynamodb: DynamoDBDocumentClient;
  ecs: ECSClient;
  s3: S3Client;
  logs: CloudWatchLogsClient;
  events: EventBridgeClient;
  secrets: SecretsManagerClient;
}

export function createAwsClients(config: Pick<AwsConfig, 'region' | 'dynamodbEndpoint'>): AwsClients {
  const region = config.region;
  return {
    dynamodb: createDocumentClient({ endpoint: config.dynamodbEndpoint, region }),
    ecs: new ECSClient({ region }),
    s3: new S3Client({ region }),
    logs: new CloudWatchLogsClient({ region }),
    events: new EventBridgeClient({ region }),
    secrets: new SecretsManagerClient({ region }),
  };
}

/** Reads the cursor-signing key (the secret's string value); fails naming the variable. */
export async function readCursorKey(secrets: SecretsManagerClient, secretArn: string): Promise<string> {
  let value: string | undefined;
  try {
    value = (await secrets.send(new GetSecretValueCommand({ SecretId: secretArn }))).SecretString;
  } catch (error) {
    throw new ConfigError(
      `cannot read the secret named by NOTEBOOK_JOBS_CURSOR_SECRET_ARN (${secretArn}): ${(error as Error).message}`,
    );
  }
  if (!value || value.length < 16) {
    throw new ConfigError(
      `the secret named by NOTEBOOK_JOBS_CURSOR_SECRET_ARN (${secretArn}) must hold a string of at least 16 characters`,
    );
  }
  return value;
}

/** The JobService's dependencies on AWS. */
export async function createAwsDeps(config: AwsConfig, clients: AwsClients): Promise<JobServiceDeps> {
  const cursors = new CursorCodec(await readCursorKey(clients.secrets, config.cursorSecretArn));
  return {
    store: new DynamoDbJobStore({
      client: clients.dynamodb,
      tableName: config.table,
      retentionDays: config.retentionDays,
    }),
    artifacts: new S3Artifacts(clients.s3, { bucket: config.bucket, tenantSources: config.tenantSources }),
    launcher: new EcsLauncher(clients.ecs, config.ecs),
    ...(config.warmKernel
      ? {
          warm: new DynamoDbWarmRunners({
            client: clients.dynamodb,
            tableName: config.table,
            kernel: config.warmKernel,
          }),
        }
      : {}),
    logs: jobLogs(config, clients),
    kernels: staticKernelCatalog([...IMAGE_KERNELS]),
    clock: { now: () => new Date() },
    ids: new MonotonicJobIds(),
    cursors,
    uploads: new S3UploadUrls(clients.s3, { bucket: config.bucket }),
    renderer: lambdaRenderer,
    events: new EventBridgePublisher(clients.events, {
      eventBus: config.eventBus,
      log: (message, fields) => logger.warn(message, fields ?? {}),
    }),
    // Structured: job_id and tenant as keys, the error (with its cause) formatted by Powertools.
    log: (message, fields) => logger.warn(message, fields ?? {}),
    config: {
      maxConcurrentJobs: config.maxConcurrentJobs,
      launchDeadlineSeconds: config.launchDeadlineSeconds,
      maxAttempts: config.maxAttempts,
      maxInputFiles: config.maxInputFiles,
      maxInputFilesBytes: config.maxInputFilesBytes,
      secrets: { schemes: ['secretsmanager', 'ssm'], envPrefix: DEFAULT_SECRET_ENV_PREFIX },
    },
  };
}

/**
 * Job logs: read from the runner's S3 log pages, never from CloudWatch Logs (whose GetLogEvents
 * quota is account-wide and meant for people: docs/deploy.md, "Job logs"). Deleting a job also
 * deletes its task's log stream, which the console shows.
 */
function jobLogs(config: AwsConfig, clients: AwsClients): LogReader {
  const pages = new S3LogPageReader(clients.s3, { bucket: config.bucket });
  const stream = new CloudWatchLogReader(clients.logs, {
    logGroup: config.logs.logGroup,
    streamPrefix: config.logs.streamPrefix,
    containerName: config.ecs.containerName,
  });
  // The service hands readers the whole job record; LogSource (lambda/core/ports.ts) names only
  // what the CloudWatch and file readers need, not the tenant and attempt the pages' keys hold.
  return {
    read: (job, options) => pages.read(job as Parameters<S3LogPageReader['read']>[0], options),
    delete: async (job) => {
      await pages.delete(job as Parameters<S3LogPageReader['delete']>[0]);
      await stream.delete(job);
    },
  };
}

/** A wired service for one Lambda container. */
export interface AwsService {
  config: AwsConfig;
  service: JobService;
  /** Facts for GET /v1/health. */
  health: () => Promise<Record<string, unknown>>;
}

export async function createAwsService(
  config: AwsConfig,
  clients: AwsClients = createAwsClients(config),
): Promise<AwsService> {
  const deps = await createAwsDeps(config, clients);
  const service = new JobService(deps);
  return {
    config,
    service,
    health: async () => ({
      mode: 'aws',
      kernels: IMAGE_KERNELS.map((k) => k.name),
      max_concurrent_jobs: service.config.maxConcurrentJobs,
    }),
  };
}

/**
 * Memoizes an async initializer for a Lambda container: the first call starts it, later calls share
 * it; a failure is not cached (a throttled Secrets Manager read is retried on the next event).
 */
export function once<T>(init: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= init().catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
