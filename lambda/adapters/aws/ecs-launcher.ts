/**
 * Runs each job as one ECS Fargate task (RunTask), stops it on cancel or timeout (StopTask), and
 * tells reconciliation whether a task is still there (DescribeTasks). A launch is one RunTask call:
 * a failure that means "not now" (capacity, the account's vCPU quota, throttling, an ECS server
 * error) is a LaunchUnavailableError, which keeps the job queued for the dispatcher's retry with
 * backoff; anything else (a bad task definition, access denied, an invalid parameter) fails the job
 * at once with the reason ECS gave.
 */
import {
  DescribeTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type ECSClient,
  type Failure,
  type RunTaskCommandInput,
} from '@aws-sdk/client-ecs';
import { errorMessage, InvalidRequestError, LaunchUnavailableError } from '../../core/errors.ts';
import type { JobRecord } from '../../core/job.ts';
import type { LaunchResult, Launcher, RunnerState } from '../../core/ports.ts';
import { runnerStop } from './ecs-task-stop.ts';

export interface EcsLauncherConfig {
  cluster: string;
  taskDefinition: string;
  containerName: string;
  subnets: string[];
  securityGroups: string[];
  assignPublicIp: boolean;
  capacity: 'FARGATE' | 'FARGATE_SPOT';
}

/** Task-level cpu units and the memory sizes (MiB) Fargate accepts with each. */
const FARGATE_SIZES: ReadonlyArray<{
  cpu: number;
  from: number;
  to: number;
  step: number;
  extra?: number[];
}> = [
  { cpu: 256, from: 1024, to: 2048, step: 1024, extra: [512] },
  { cpu: 512, from: 1024, to: 4096, step: 1024 },
  { cpu: 1024, from: 2048, to: 8192, step: 1024 },
  { cpu: 2048, from: 4096, to: 16384, step: 1024 },
  { cpu: 4096, from: 8192, to: 30720, step: 1024 },
  { cpu: 8192, from: 16384, to: 61440, step: 4096 },
  { cpu: 16384, from: 32768, to: 122880, step: 8192 },
];

function describeMemory(size: (typeof FARGATE_SIZES)[number]): string {
  const range = `${size.from}-${size.to} in steps of ${size.step}`;
  return size.extra ? `${size.extra.join(', ')} or ${range}` : range;
}

const VALID_SIZES_TEXT = FARGATE_SIZES.map((size) => `cpu ${size.cpu}: memory ${describeMemory(size)}`).join(
  '; ',
);

/** Throws InvalidRequestError listing the valid combinations when cpu/memory is not a Fargate size. */
export function checkFargateSize(cpu: number | null, memory: number | null): void {
  if (cpu === null && memory === null) return;
  const details = { cpu, memory, valid_sizes: VALID_SIZES_TEXT };
  if (cpu === null || memory === null) {
    // One alone would be paired with the task definition's default for the other, which may not be
    // a valid Fargate size; asking for both keeps the request checkable here.
    throw new InvalidRequestError(
      `give cpu and memory together (got ${cpu === null ? `memory ${memory} without cpu` : `cpu ${cpu} without memory`}); Fargate sizes (memory in MiB): ${VALID_SIZES_TEXT}`,
      details,
    );
  }
  const size = FARGATE_SIZES.find((s) => s.cpu === cpu);
  if (!size) {
    throw new InvalidRequestError(
      `cpu ${cpu} is not a Fargate size; cpu must be one of ${FARGATE_SIZES.map((s) => s.cpu).join(', ')} (memory in MiB: ${VALID_SIZES_TEXT})`,
      details,
    );
  }
  const fits =
    size.extra?.includes(memory) ||
    (memory >= size.from && memory <= size.to && (memory - size.from) % size.step === 0);
  if (!fits) {
    throw new InvalidRequestError(
      `memory ${memory} MiB does not fit cpu ${cpu} on Fargate; with cpu ${cpu} memory must be ${describeMemory(size)} MiB (all sizes: ${VALID_SIZES_TEXT})`,
      details,
    );
  }
}

/**
 * RunTask `failures` reasons (the call succeeded, no task started) that mean "not now": worth a
 * retry later. From "API failure reasons" in the ECS developer guide
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/api_failures_messages.html):
 * `RESOURCE:CPU` / `RESOURCE:MEMORY` (and `RESOURCE:*`): the capacity the task asks for is not
 * available; `AGENT`: the chosen instance's agent is disconnected; and Fargate's "Capacity is
 * unavailable at this time. Please try again later or in a different availability zone". The
 * account's Fargate vCPU quota answers "You've reached the limit on the number of vCPUs you can run
 * concurrently", and the task-count quota "You've reached the limit on the number of tasks you can
 * run concurrently". Every other reason (`ATTRIBUTE`, `MISSING`, a placement constraint, an
 * unknown one) is about the request or the cluster and fails the job at once.
 */
const QUOTA_REACHED = /reached the limit on the number of (vcpus|tasks)/i;
const UNAVAILABLE_REASONS = [/^RESOURCE:/, /^AGENT$/, /capacity is unavailable/i, QUOTA_REACHED];

/**
 * Thrown RunTask errors that mean "not now": throttling (ThrottlingException: the API's rate
 * limit), a quota (LimitExceededException), ECS's own server errors (ServerException) and their
 * SDK-level cousins. The ECS API reference lists ClientException, InvalidParameterException,
 * AccessDeniedException, ClusterNotFoundException, PlatformUnknownException and
 * UnsupportedFeatureException as RunTask's other errors: those are about our request or our
 * permissions, and fail the job at once.
 */
const RETRYABLE_ERRORS = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'ServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
]);

interface AwsErrorShape {
  name?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** Whether an AWS SDK error is throttling or a server-side failure (retry later) rather than our fault. */
export function isRetryableAwsError(error: unknown): boolean {
  const e = (error ?? {}) as AwsErrorShape;
  if (e.name && RETRYABLE_ERRORS.has(e.name)) return true;
  // The vCPU quota has also been reported as a thrown ClientException carrying this text.
  if (QUOTA_REACHED.test(errorMessage(error))) return true;
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode;
  return status === 429 || (status !== undefined && status >= 500);
}

function failureText(failures: Failure[]): string {
  return failures.map((f) => [f.reason, f.detail].filter(Boolean).join(': ') || 'unknown failure').join('; ');
}

/** One Fargate task per job; the task ARN is the job's runner_ref. */
export class EcsLauncher implements Launcher {
  constructor(
    private readonly ecs: ECSClient,
    private readonly config: EcsLauncherConfig,
  ) {
    if (config.subnets.length === 0) throw new Error('EcsLauncher needs at least one subnet');
  }

  checkResources({ cpu, memory }: { cpu: number | null; memory: number | null }): void {
    checkFargateSize(cpu, memory);
  }

  /**
   * One RunTask call, no retry here (a request may be waiting; the dispatcher retries with
   * backoff). The client token names the job's attempt and launch generation: a retry after a
   * thrown error (which may hide a started task) sends the same token, so ECS answers with that
   * task instead of starting a second one; after a definite `failures` answer the scheduler moves
   * to the next generation.
   */
  async launch(job: JobRecord): Promise<LaunchResult> {
    checkFargateSize(job.cpu, job.memory);
    const token = `${job.job_id}-${job.attempt}-${job.launch_generation ?? 0}`;
    let failures: Failure[];
    try {
      const out = await this.ecs.send(new RunTaskCommand(this.runTaskInput(job, token)));
      const arn = out.tasks?.[0]?.taskArn;
      if (arn) return { runner_ref: arn };
      failures = out.failures ?? [];
    } catch (error) {
      const name = (error as AwsErrorShape).name ?? 'Error';
      const message = `ECS RunTask failed (${name}): ${errorMessage(error)}`;
      if (isRetryableAwsError(error)) throw new LaunchUnavailableError(message, false, { cause: error });
      throw new Error(message, { cause: error });
    }
    const reason = failures.length ? failureText(failures) : 'RunTask returned no task and no failure';
    const unavailable = failures.some((f) =>
      UNAVAILABLE_REASONS.some((re) => re.test(f.reason ?? '') || re.test(f.detail ?? '')),
    );
    const message = `ECS RunTask started no task (${this.config.capacity}): ${reason}`;
    if (unavailable) throw new LaunchUnavailableError(message, true);
    throw new Error(message);
  }

  /** Stops the job's task with a reason ECS shows in the console; a task that is gone is a no-op. */
  async stop(job: JobRecord): Promise<void> {
    if (!job.runner_ref) return;
    try {
      await this.ecs.send(
        new StopTaskCommand({
          cluster: this.config.cluster,
          task: job.runner_ref,
          reason: `notebook-jobs: job ${job.job_id} ${job.status}`.slice(0, 255),
        }),
      );
    } catch (error) {
      // ECS answers InvalidParameterException ("The referenced task was not found") for a task that
      // stopped long enough ago to be forgotten: there is nothing left to stop.
      if ((error as AwsErrorShape).name === 'InvalidParameterException') return;
      throw error;
    }
  }

  /**
   * False once the task is stopped (or deprovisioning after its containers stopped) or unknown to
   * ECS; true while it runs, including while a stop is pending and the runner saves its notebook.
   */
  async isAlive(runnerRef: string): Promise<boolean | null> {
    return (await this.runnerState(runnerRef)).alive;
  }

  /** As isAlive, with the stop code's meaning and the stop reason once the task has stopped. */
  async runnerState(runnerRef: string): Promise<RunnerState> {
    let out;
    try {
      out = await this.ecs.send(
        new DescribeTasksCommand({ cluster: this.config.cluster, tasks: [runnerRef] }),
      );
    } catch (error) {
      if (isRetryableAwsError(error)) return { alive: null };
      throw error;
    }
    const task = out.tasks?.find((t) => t.taskArn === runnerRef) ?? out.tasks?.[0];
    if (!task) {
      const failures = out.failures ?? [];
      return { alive: failures.length === 0 || failures.some((f) => f.reason === 'MISSING') ? false : null };
    }
    const stopped =
      task.lastStatus === 'STOPPED' ||
      task.lastStatus === 'DELETED' ||
      (task.desiredStatus === 'STOPPED' && task.lastStatus === 'DEPROVISIONING');
    return stopped ? { alive: false, stop: runnerStop(task, this.config.containerName) } : { alive: true };
  }

  private runTaskInput(job: JobRecord, clientToken: string): RunTaskCommandInput {
    const { config } = this;
    const placement: Pick<RunTaskCommandInput, 'launchType' | 'capacityProviderStrategy'> =
      config.capacity === 'FARGATE_SPOT'
        ? { capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }] }
        : { launchType: 'FARGATE' };
    const resources =
      job.cpu !== null && job.memory !== null ? { cpu: String(job.cpu), memory: String(job.memory) } : {};
    return {
      cluster: config.cluster,
      taskDefinition: config.taskDefinition,
      ...placement,
      count: 1,
      startedBy: job.job_id,
      clientToken,
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: config.subnets,
          securityGroups: config.securityGroups,
          assignPublicIp: config.assignPublicIp ? 'ENABLED' : 'DISABLED',
        },
      },
      overrides: {
        containerOverrides: [
          {
            name: config.containerName,
            // The tenant names the folders the runner's scoped session may reach (job-credentials.ts).
            environment: [
              { name: 'NOTEBOOK_JOBS_JOB_ID', value: job.job_id },
              { name: 'NOTEBOOK_JOBS_TENANT', value: job.tenant },
            ],
          },
        ],
        ...resources,
      },
      tags: [
        { key: 'notebook-jobs:job-id', value: job.job_id },
        { key: 'notebook-jobs:tenant', value: tagValue(job.tenant) },
      ],
      propagateTags: 'TASK_DEFINITION',
    };
  }
}

/**
 * ECS tag values allow letters, digits, spaces and `+ - = . _ : / @`, up to 256 characters; a tenant
 * name outside that would make RunTask fail, so other characters become `_`.
 */
function tagValue(value: string): string {
  return value.replace(/[^\p{L}\p{N} +\-=._:/@]/gu, '_').slice(0, 256);
}
