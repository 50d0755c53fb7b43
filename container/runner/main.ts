/**
 * Runner entry point: `node container/runner/main.ts <job_id>` (or NOTEBOOK_JOBS_JOB_ID).
 * Reads its configuration once from the environment, wires the adapters, runs the job, exits.
 * `main.ts --warm KERNEL warm_SLOT` (local mode): starts KERNEL's engine first, prints `warm` on
 * stdout once it is ready, then reads the job id as one line on stdin (docs/architecture.md, "Warm
 * kernels").
 *
 * Environment:
 *   NOTEBOOK_JOBS_JOB_ID              the job to run (or the first argument; on ECS a RunTask override)
 *   NOTEBOOK_JOBS_TABLE               DynamoDB table (required)
 *   NOTEBOOK_JOBS_DYNAMODB_ENDPOINT   endpoint override (local mode: the embedded dynalite's unix:/path)
 *   NOTEBOOK_JOBS_ARTIFACTS           file (default: local mode) | s3 (AWS mode)
 *   NOTEBOOK_JOBS_DATA                local mode: data folder with artifacts/, logs/, work/ (required);
 *                                     AWS mode: only holds the scratch work/ folder (default: os.tmpdir())
 *   NOTEBOOK_JOBS_WORKSPACE           local mode: folder file:// submissions may come from (default: cwd)
 *   NOTEBOOK_JOBS_BUCKET              AWS mode: the artifact bucket (required there)
 *   NOTEBOOK_JOBS_S3_ENDPOINT         AWS mode: an S3-compatible endpoint instead of AWS S3 (path-style)
 *   NOTEBOOK_JOBS_EVENT_BUS           AWS mode: EventBridge bus for state changes (unset: none published)
 *   NOTEBOOK_JOBS_RUNNER_ROLE_ARN     AWS mode: the role the runner assumes with a session policy
 *                                     naming only its job (required there; job-credentials.ts)
 *   NOTEBOOK_JOBS_TENANT              AWS mode: the job's tenant, set by RunTask (required there)
 *   NOTEBOOK_JOBS_PYTHON              interpreter with nbclient + ipykernel (default: probed)
 *   NOTEBOOK_JOBS_ENGINE              auto | nbclient | papermill (default auto)
 *   NOTEBOOK_JOBS_ENGINES_DIR         folder of the engine drivers (default: ../engines from here;
 *                                     set when the runner runs bundled)
 *   NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS  minimum time between progress writes (default 2000)
 *   NOTEBOOK_JOBS_RETENTION_DAYS      days an ended job is kept before DynamoDB TTL removes it (30)
 *   NOTEBOOK_JOBS_WATCH_STDIN         1: stop the job when stdin closes (the local server died)
 *   NOTEBOOK_JOBS_MAX_LOG_BYTES       log bytes kept per job (default 64 MiB); past it one line says
 *                                     so, the rest of the output is dropped and the job goes on
 *   NOTEBOOK_JOBS_MAX_LOG_LINE_BYTES  UTF-8 bytes of text in one log line (default 64 KiB, at most
 *                                     128 KiB); longer lines are cut and marked truncated
 *   NOTEBOOK_JOBS_MAX_OUTPUT_BYTES    largest executed notebook kept as is (default 50 MiB); a larger
 *                                     one fails the job (output_too_large) and is saved with its
 *                                     largest outputs replaced by notes
 *   NOTEBOOK_JOBS_WORK_ROOT           folder of the jobs' working folders (default: <DATA>/work);
 *                                     with a kernel user, every folder above it must be traversable
 *   NOTEBOOK_JOBS_KERNEL_USER         run engines and kernels as this user (the runner must be root);
 *                                     unset: as the runner's own user
 *   NOTEBOOK_JOBS_KERNEL_ENV_PASS     comma-separated variable names kernels may see besides the
 *                                     allow-list in lambda/kernels/kernel-env.ts (never AWS_*,
 *                                     NOTEBOOK_JOBS_*, ECS_*)
 *   NOTEBOOK_JOBS_SECRET_ENV_PREFIX   local mode: the prefix of variables jobs may name as env:
 *                                     secrets (default NOTEBOOK_SECRET_)
 *   NOTEBOOK_JOBS_SECRETS_DIR         local mode: the folder file: secrets are read from (unset:
 *                                     none); AWS mode reads secretsmanager: and ssm: secrets instead
 *   AWS_REGION                        region of the AWS clients (set by ECS on Fargate; required in
 *                                     AWS mode)
 *   AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_EVENTBRIDGE  the AWS SDK's own endpoint overrides
 *
 * Local mode writes logs to a file per job; AWS mode writes them as JSON lines to stdout, which the
 * awslogs driver ships to CloudWatch Logs, and as pages under logs/<tenant>/<job>/ in the bucket,
 * which the API and MCP read (lambda/adapters/aws/s3-log-pages.ts).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { STSClient } from '@aws-sdk/client-sts';
import { DynamoDbTenantSettings } from '../../lambda/adapters/dynamodb/tenant-settings.ts';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import { errorDetail, errorMessage } from '../../lambda/core/errors.ts';
import { S3Artifacts } from '../../lambda/adapters/aws/s3-artifacts.ts';
import { EventBridgePublisher } from '../../lambda/adapters/aws/eventbridge-publisher.ts';
import { StdoutLogSink } from '../../lambda/adapters/stdout-log-sink.ts';
import { S3LogPageSink } from '../../lambda/adapters/aws/s3-log-page-sink.ts';
import { TeeLogSink } from '../../lambda/adapters/tee-log-sink.ts';
import { NbconvertRenderer } from '../../lambda/adapters/nbconvert-renderer.ts';
import type { Artifacts, JobEventPublisher, JobStore, LogSink } from '../../lambda/core/ports.ts';
import { readRunnerConfig, type RunnerConfig, type S3StorageConfig } from './config.ts';
import {
  notebookBrokerSession,
  notebookRoleSession,
  runnerSession,
  warmSession,
  type AssumedRole,
} from './job-credentials.ts';
import { awaitWarmJob, ecsTaskArn, protectTask } from './warm-runner.ts';
import { DynamoDbWarmRunners, WARM_KERNEL_VARIABLE } from '../../lambda/adapters/dynamodb/warm-runners.ts';
import { notebookRoleCredentials, type KernelAwsAccess } from './kernel-credentials.ts';
import { findPython } from '../../lambda/kernels/python.ts';
import { ENGINES_DIR, engineScript } from '../../lambda/kernels/engines.ts';
import { JOB_ID_PATTERN } from '../../lambda/core/ids.ts';
import { WarmEngine } from './engine-process.ts';
import { RunnerControl, runJob, type StopReason } from './runner.ts';
import { awsSecretSources } from './secrets.ts';

/** How long a SIGTERM waits for the store to say whether the job was cancelled. */
const SIGTERM_LOOKUP_MS = 3000;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const warmArgs = argv[0] === '--warm' ? parseWarmArgs(argv) : null;
  // A task of the warm runner service (lib/warm-runners.ts): the runner task definition started
  // without a job (RunTask always names one), with the pool's kernel in its environment.
  const awsWarmKernel =
    !warmArgs &&
    argv.length === 0 &&
    !process.env.NOTEBOOK_JOBS_JOB_ID &&
    process.env.NOTEBOOK_JOBS_ARTIFACTS === 's3'
      ? process.env[WARM_KERNEL_VARIABLE]
      : undefined;
  let config = readRunnerConfig(process.env, warmArgs ? [warmArgs.slot] : argv, undefined, !!awsWarmKernel);
  // A warm runner on AWS runs the nbclient driver (the papermill driver has no warm start); both
  // engines end a run by the same rules (container/engines/outcome.py).
  const engine = awsWarmKernel ? 'nbclient' : config.engine;
  const python =
    config.python && engine !== 'auto'
      ? { python: config.python, engine }
      : await findPython({ configured: config.python, engine });
  let warm: WarmEngine | undefined;
  let jobId = config.jobId;
  const warmKernel = warmArgs?.kernel ?? awsWarmKernel;
  const warmSlot = warmArgs?.slot ?? `warm_${randomBytes(8).toString('hex')}`;
  if (warmKernel) {
    if (python.engine !== 'nbclient') throw new Error(`the ${python.engine} engine has no warm start`);
    warm = await WarmEngine.start(warmKernel, {
      python: python.python,
      engine: python.engine,
      driver: engineScript(python.engine, config.enginesDir),
      enginesDir: config.enginesDir ?? ENGINES_DIR,
      workDir: join(config.workRoot, warmSlot),
      kernelUser: config.kernelUser,
      kernelEnvPass: config.kernelEnvPass,
      stopGraceMs: 20_000,
    });
  }
  const sts = config.storage.mode === 's3' ? new STSClient({ region: config.region }) : null;
  let session: AssumedRole | null = null;
  if (warm && warmArgs) {
    const job = await jobFromStdin(warm);
    if (!job) return 0;
    jobId = job;
  } else if (warm && awsWarmKernel && sts && config.storage.mode === 's3') {
    const claimed = await claimWarmJob(config, config.storage, sts, warm, awsWarmKernel);
    if (!claimed) return 0;
    ({ session, jobId } = claimed);
    config = { ...config, jobId, storage: { ...config.storage, tenant: claimed.tenant } };
  }

  // AWS mode: every call below is made with credentials scoped to this job, never the task role's.
  session ??=
    sts && config.storage.mode === 's3'
      ? runnerSession(sts, {
          runnerRoleArn: config.storage.runnerRoleArn,
          region: config.storage.region,
          table: config.table,
          bucket: config.storage.bucket,
          eventBus: config.storage.eventBus,
          jobId,
          tenant: config.storage.tenant,
        })
      : null;
  const credentials = session?.provider;
  const documents = createDocumentClient({
    endpoint: config.dynamodbEndpoint,
    region: config.region,
    credentials,
  });
  const store = new DynamoDbJobStore({
    client: documents,
    tableName: config.table,
    retentionDays: config.retentionDays,
  });

  const control = new RunnerControl();
  let artifacts: Artifacts;
  let logs: LogSink & { close?: () => Promise<void> };
  let events: JobEventPublisher | undefined;
  if (config.storage.mode === 's3') {
    const { bucket, eventBus, s3Endpoint } = config.storage;
    // A custom endpoint is an S3-compatible store (MinIO, a test server): path-style addressing,
    // and checksums only where S3 requires them (many such stores reject the newer ones).
    const s3 = new S3Client({
      region: config.region,
      credentials,
      ...(s3Endpoint
        ? { endpoint: s3Endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' }
        : {}),
    });
    artifacts = new S3Artifacts(s3, { bucket });
    // stdout for CloudWatch Logs (the console), pages in S3 for API and MCP reads.
    logs = new TeeLogSink([
      new StdoutLogSink(),
      new S3LogPageSink(s3, {
        bucket,
        tenant: config.storage.tenant,
        jobId,
        attempt: attemptOf(store, jobId),
      }),
    ]);
    if (eventBus)
      events = new EventBridgePublisher(new EventBridgeClient({ region: config.region, credentials }), {
        eventBus,
      });
    let terminated = false;
    process.on('SIGTERM', () => {
      if (terminated) return;
      terminated = true;
      void stopReasonOnSigterm(store, jobId).then((reason) => control.stop(reason));
    });
  } else {
    artifacts = new FileArtifacts({
      root: config.storage.artifactsRoot,
      workspace: config.storage.workspace,
    });
    logs = new FileLogSink(jobLogPath(config.storage.logsFolder, jobId));
    process.on('SIGTERM', () => control.stop('cancel'));
  }
  process.on('SIGINT', () => control.stop('cancel'));
  if (config.watchStdin) {
    process.stdin.on('end', () => control.stop('orphaned'));
    process.stdin.on('error', () => control.stop('orphaned'));
    process.stdin.resume();
  }

  const workDir = warm?.settings.workDir ?? join(config.workRoot, jobId);
  try {
    const outcome = await runJob(
      jobId,
      {
        store,
        artifacts,
        logs,
        events,
        renderer: config.storage.mode === 's3' ? new NbconvertRenderer(python.python) : undefined,
        python: python.python,
        engine: python.engine,
        workDir,
        enginesDir: config.enginesDir,
        progressIntervalMs: config.progressIntervalMs,
        limits: config.limits,
        kernelUser: config.kernelUser,
        kernelEnvPass: config.kernelEnvPass,
        warm,
        secrets: {
          env: { from: process.env, prefix: config.secrets.envPrefix },
          secretsDir: config.secrets.secretsDir,
        },
        ...(config.storage.mode === 's3' && sts
          ? {
              secrets: awsSecretSources(sts, { ...config.storage, jobId }),
              tenant: config.storage.tenant,
              kernelAws: kernelAwsFor(config.storage, sts, documents, config.table, `${workDir}.aws`),
            }
          : {}),
      },
      control,
    );
    return outcome.status === 'completed' || outcome.status === 'skipped' ? 0 : 1;
  } finally {
    await (logs.close ? logs.close() : logs.flush());
    await rm(workDir, { recursive: true, force: true });
    await rm(`${workDir}.aws`, { recursive: true, force: true });
  }
}

/**
 * A warm runner on AWS: once its kernel is ready it registers idle and waits (warm-runner.ts) with a
 * session allowed only the warm runner items; an offered job is claimed with that job's own data
 * session, which the runner then keeps for the job. Null when a SIGTERM (scale-in, a deploy) came
 * before a job; throws when its engine died first (ECS then replaces the failed task).
 */
async function claimWarmJob(
  config: RunnerConfig,
  storage: S3StorageConfig,
  sts: STSClient,
  warm: WarmEngine,
  kernel: string,
): Promise<{ jobId: string; tenant: string; session: AssumedRole } | null> {
  // The task's own lines (CloudWatch Logs, its stream) until it has a job.
  const out = new StdoutLogSink();
  const say = (text: string) => out.write({ ts: new Date().toISOString(), stream: 'runner', text });
  await warm.ready;
  const runnerId = await ecsTaskArn(process.env.ECS_CONTAINER_METADATA_URI_V4);
  const registryOf = (credentials: AssumedRole) =>
    new DynamoDbWarmRunners({
      client: createDocumentClient({
        endpoint: config.dynamodbEndpoint,
        region: config.region,
        credentials: credentials.provider,
      }),
      tableName: config.table,
      kernel,
    });
  const idle = warmSession(sts, {
    runnerRoleArn: storage.runnerRoleArn,
    region: storage.region,
    table: config.table,
    kernel,
    sessionName: `warm-${runnerId.split('/').at(-1)}`,
  });
  let claimed: { jobId: string; tenant: string; session: AssumedRole } | null = null;
  let onSigterm: () => void = () => undefined;
  let engineGone = false;
  const stopped = new Promise<void>((resolve) => {
    onSigterm = resolve;
    process.once('SIGTERM', onSigterm);
    warm.process.child.once('close', () => {
      engineGone = true;
      resolve();
    });
  });
  try {
    const offer = await awaitWarmJob({
      registry: registryOf(idle),
      runnerId,
      stopped,
      log: say,
      claim: async (offer) => {
        const session = runnerSession(sts, {
          runnerRoleArn: storage.runnerRoleArn,
          region: storage.region,
          table: config.table,
          bucket: storage.bucket,
          eventBus: storage.eventBus,
          jobId: offer.job_id,
          tenant: offer.tenant,
        });
        if (!(await registryOf(session).claim(offer, runnerId))) return false;
        claimed = { jobId: offer.job_id, tenant: offer.tenant, session };
        // Now a deployment or a lower warmRunners must not stop this task until its job is done.
        await protectTask(process.env.ECS_AGENT_URI, say);
        return true;
      },
    });
    // An engine that died while idle is a failed task (ECS starts another); a SIGTERM is not.
    if (!offer && engineGone) throw new Error('the warm engine exited while the runner waited for a job');
    if (!offer) await warm.dispose();
    return offer ? claimed : null;
  } finally {
    process.off('SIGTERM', onSigterm);
  }
}

/** `--warm KERNEL SLOT`: start KERNEL now in the working folder SLOT, and wait for a job. */
function parseWarmArgs(argv: readonly string[]): { kernel: string; slot: string } {
  const [, kernel, slot] = argv;
  if (!kernel || !/^[\w.-]{1,100}$/.test(kernel) || !slot || !/^warm_\w{1,64}$/.test(slot))
    throw new Error('usage: main.ts --warm KERNEL warm_SLOT (a kernel name and a slot name)');
  return { kernel, slot };
}

/**
 * A warm runner's job: once its kernel is ready it prints `warm` on stdout, then reads one job id
 * line from stdin (the local launcher hands it a job that way). Stdin closed first (the server
 * stopped or shrank its pool): the kernel is shut down and there is no job.
 */
async function jobFromStdin(warm: WarmEngine): Promise<string | null> {
  const line = new Promise<string | null>((resolve) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const end = text.indexOf('\n');
      if (end < 0 && text.length < 200) return;
      process.stdin.off('data', onData);
      process.stdin.pause();
      resolve(text.slice(0, end < 0 ? 200 : end).trim());
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', () => resolve(null));
  });
  const ready = warm.ready.then(() => process.stdout.write('warm\n'));
  const job = await Promise.race([line, ready.then(() => line)]);
  if (job === null) {
    await warm.dispose();
    return null;
  }
  if (!JOB_ID_PATTERN.test(job)) {
    await warm.dispose();
    throw new Error(`a warm runner was handed ${JSON.stringify(job.slice(0, 80))}, not a job id`);
  }
  return job;
}

/**
 * The kernel's AWS access: its tenant's notebook role when the tenant has one (read from the
 * tenant's settings item with the job's scoped session), else none at all.
 */
function kernelAwsFor(
  storage: S3StorageConfig,
  sts: STSClient,
  documents: ReturnType<typeof createDocumentClient>,
  table: string,
  folder: string,
): (job: { job_id: string; tenant: string }, log: (text: string) => void) => Promise<KernelAwsAccess | null> {
  return async (job, log) => {
    const settings = await new DynamoDbTenantSettings({ client: documents, tableName: table }).get(
      job.tenant,
    );
    const arn = settings.notebook_role_arn;
    if (!arn) {
      log('no notebook role for this tenant: the kernel has no AWS credentials');
      return null;
    }
    const scope = { runnerRoleArn: storage.runnerRoleArn, jobId: job.job_id, tenant: job.tenant };
    const broker = notebookBrokerSession(sts, scope, arn);
    const chained = new STSClient({ region: storage.region, credentials: broker.provider });
    const role = notebookRoleSession(chained, scope, arn);
    try {
      const access = await notebookRoleCredentials({ role, folder, region: storage.region, log });
      log(`the kernel works as the tenant's notebook role ${arn}`);
      return access;
    } catch (error) {
      throw new Error(`cannot assume the tenant's notebook role ${arn}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  };
}

/** The job's attempt, which names its run of log pages (runJob reads the job again to run it). */
async function attemptOf(store: JobStore, jobId: string): Promise<number> {
  const job = await store.get(jobId);
  if (!job) throw new Error(`job ${jobId} does not exist`);
  return Math.max(1, job.attempt);
}

/**
 * ECS sends SIGTERM both for StopTask after a user's cancel and when it stops a task for its own
 * reasons (Fargate Spot interruption, maintenance). A cancel is written to the store before
 * StopTask, so only a job the store already shows as cancelled was cancelled; any other SIGTERM
 * must end the job as failed (infrastructure): 'interrupted'. If the store does not answer,
 * 'interrupted' is still right:
 * the runner's final write is conditional on `running`, so a stored cancel stands either way.
 */
async function stopReasonOnSigterm(store: JobStore, jobId: string): Promise<StopReason> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>(
    (resolve) => (timer = setTimeout(() => resolve(null), SIGTERM_LOOKUP_MS)),
  );
  try {
    const job = await Promise.race([store.get(jobId), timeout]);
    return job?.status === 'cancelled' ? 'cancel' : 'interrupted';
  } catch {
    return 'interrupted';
  } finally {
    clearTimeout(timer);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(errorDetail(error)); // with its causes
    process.exit(2);
  },
);
