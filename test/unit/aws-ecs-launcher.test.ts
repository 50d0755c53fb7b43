/**
 * The ECS launcher against a mocked ECS client (aws-sdk-client-mock): the exact RunTask, StopTask
 * and DescribeTasks inputs, how each RunTask failure is classified (one call: "not now" answers
 * are LaunchUnavailableError for the dispatcher to retry, the rest fail at once), and the Fargate
 * size check.
 */
import {
  ClusterNotFoundException,
  DescribeTasksCommand,
  ECSClient,
  ECSServiceException,
  InvalidParameterException,
  RunTaskCommand,
  StopTaskCommand,
  type Failure,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  checkFargateSize,
  EcsLauncher,
  type EcsLauncherConfig,
} from '../../lambda/adapters/aws/ecs-launcher.ts';
import { InvalidRequestError, LaunchUnavailableError } from '../../lambda/core/errors.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import { jobRecord } from '../helpers/jobs.ts';

const CLUSTER = 'arn:aws:ecs:eu-west-1:123456789012:cluster/notebook-jobs';
const TASK_DEFINITION = 'arn:aws:ecs:eu-west-1:123456789012:task-definition/notebook-jobs-runner:7';
const TASK_ARN = 'arn:aws:ecs:eu-west-1:123456789012:task/notebook-jobs/0123456789abcdef0123456789abcdef';
const CAPACITY =
  'Capacity is unavailable at this time. Please try again later or in a different availability zone';

const client = new ECSClient({
  region: 'eu-west-1',
  credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
});
const ecs = mockClient(client);
const ids = new MonotonicJobIds();

function launcher(overrides: Partial<EcsLauncherConfig> = {}): EcsLauncher {
  return new EcsLauncher(client, {
    cluster: CLUSTER,
    taskDefinition: TASK_DEFINITION,
    containerName: 'runner',
    subnets: ['subnet-aaa', 'subnet-bbb'],
    securityGroups: ['sg-123'],
    assignPublicIp: false,
    capacity: 'FARGATE',
    ...overrides,
  });
}

const throttled = () =>
  new ECSServiceException({
    name: 'ThrottlingException',
    $fault: 'client',
    message: 'Rate exceeded',
    $metadata: { httpStatusCode: 400 },
  });

beforeEach(() => {
  ecs.reset();
});

describe('EcsLauncher.launch', () => {
  it('sends RunTask for one Fargate task carrying the job id, networking and tags', async () => {
    const job = jobRecord(ids.jobId(), { status: 'running', attempt: 1, tenant: 'team-a' });
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK_ARN }], failures: [] });

    await expect(launcher().launch(job)).resolves.toEqual({ runner_ref: TASK_ARN });

    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
    expect(ecs.commandCalls(RunTaskCommand)[0]!.args[0].input).toEqual({
      cluster: CLUSTER,
      taskDefinition: TASK_DEFINITION,
      launchType: 'FARGATE',
      count: 1,
      startedBy: job.job_id,
      clientToken: `${job.job_id}-1-0`,
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: ['subnet-aaa', 'subnet-bbb'],
          securityGroups: ['sg-123'],
          assignPublicIp: 'DISABLED',
        },
      },
      overrides: {
        containerOverrides: [
          {
            name: 'runner',
            environment: [
              { name: 'NOTEBOOK_JOBS_JOB_ID', value: job.job_id },
              { name: 'NOTEBOOK_JOBS_TENANT', value: 'team-a' },
            ],
          },
        ],
      },
      tags: [
        { key: 'notebook-jobs:job-id', value: job.job_id },
        { key: 'notebook-jobs:tenant', value: 'team-a' },
      ],
      propagateTags: 'TASK_DEFINITION',
    });
  });

  it('uses the FARGATE_SPOT capacity provider (and no launch type) and passes cpu/memory as strings', async () => {
    const job = jobRecord(ids.jobId(), { status: 'running', attempt: 2, cpu: 1024, memory: 4096 });
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK_ARN }] });

    await launcher({ capacity: 'FARGATE_SPOT', assignPublicIp: true }).launch(job);

    const input = ecs.commandCalls(RunTaskCommand)[0]!.args[0].input;
    expect(input).toEqual({
      cluster: CLUSTER,
      taskDefinition: TASK_DEFINITION,
      capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }],
      count: 1,
      startedBy: job.job_id,
      clientToken: `${job.job_id}-2-0`,
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: ['subnet-aaa', 'subnet-bbb'],
          securityGroups: ['sg-123'],
          assignPublicIp: 'ENABLED',
        },
      },
      overrides: {
        containerOverrides: [
          {
            name: 'runner',
            environment: [
              { name: 'NOTEBOOK_JOBS_JOB_ID', value: job.job_id },
              { name: 'NOTEBOOK_JOBS_TENANT', value: 'local' },
            ],
          },
        ],
        cpu: '1024',
        memory: '4096',
      },
      tags: [
        { key: 'notebook-jobs:job-id', value: job.job_id },
        { key: 'notebook-jobs:tenant', value: 'local' },
      ],
      propagateTags: 'TASK_DEFINITION',
    });
    expect(input).not.toHaveProperty('launchType');
  });

  it('passes cpu/memory on plain Fargate too, and makes a tenant a valid tag value', async () => {
    const job = jobRecord(ids.jobId(), { cpu: 256, memory: 512, tenant: 'acme#1 (eu)' });
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK_ARN }] });

    await launcher().launch(job);

    const input = ecs.commandCalls(RunTaskCommand)[0]!.args[0].input;
    expect(input.launchType).toBe('FARGATE');
    expect(input.overrides).toMatchObject({ cpu: '256', memory: '512' });
    expect(input.tags).toContainEqual({ key: 'notebook-jobs:tenant', value: 'acme_1 _eu_' });
  });

  const sdkError = (name: string, message: string, fault: 'client' | 'server' = 'client', status = 400) =>
    new ECSServiceException({ name, $fault: fault, message, $metadata: { httpStatusCode: status } });

  // Each "not now" answer ECS gives: one RunTask, no retry and no sleep here (the dispatcher
  // retries), a LaunchUnavailableError saying whether a task may have started.
  it.each<[string, Error | { failures: Failure[] }, boolean]>([
    ['Fargate capacity (failures[])', { failures: [{ arn: TASK_ARN, reason: CAPACITY }] }, true],
    ['RESOURCE:CPU (failures[])', { failures: [{ reason: 'RESOURCE:CPU' }] }, true],
    ['RESOURCE:MEMORY (failures[])', { failures: [{ reason: 'RESOURCE:MEMORY' }] }, true],
    [
      'the vCPU quota (failures[])',
      { failures: [{ reason: "You've reached the limit on the number of vCPUs you can run concurrently" }] },
      true,
    ],
    ['ThrottlingException', sdkError('ThrottlingException', 'Rate exceeded'), false],
    ['LimitExceededException', sdkError('LimitExceededException', 'Limit exceeded'), false],
    ['ServerException', sdkError('ServerException', 'Service error', 'server', 500), false],
    [
      'the vCPU quota (thrown)',
      sdkError('ClientException', "You've reached the limit on the number of vCPUs you can run concurrently"),
      false,
    ],
  ])('answers %s with LaunchUnavailableError after one RunTask', async (_name, answer, nothing) => {
    const job = jobRecord(ids.jobId(), { attempt: 2, launch_generation: 3 });
    if (answer instanceof Error) ecs.on(RunTaskCommand).rejects(answer);
    else ecs.on(RunTaskCommand).resolves({ tasks: [], ...answer });

    const error = await launcher({ capacity: 'FARGATE_SPOT' })
      .launch(job)
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(LaunchUnavailableError);
    expect((error as LaunchUnavailableError).nothingStarted).toBe(nothing);
    expect((error as Error).message).toMatch(
      /^ECS RunTask (started no task \(FARGATE_SPOT\)|failed \(\w+\)): /,
    );
    // The token names the attempt and launch generation the scheduler keeps on the job.
    expect(ecs.commandCalls(RunTaskCommand).map((call) => call.args[0].input.clientToken)).toEqual([
      `${job.job_id}-2-3`,
    ]);
  });

  it('fails at once on a non-retryable error, naming it', async () => {
    ecs.on(RunTaskCommand).rejects(
      new InvalidParameterException({
        message: 'subnet-aaa is not in the same VPC as sg-123',
        $metadata: { httpStatusCode: 400 },
      }),
    );

    const error = await launcher()
      .launch(jobRecord(ids.jobId()))
      .catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(LaunchUnavailableError);
    expect((error as Error).message).toBe(
      'ECS RunTask failed (InvalidParameterException): subnet-aaa is not in the same VPC as sg-123',
    );
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it.each([
    ['a bad task definition', sdkError('ClientException', 'TaskDefinition is inactive')],
    ['access denied', sdkError('AccessDeniedException', 'not authorized to perform: ecs:RunTask')],
  ])('fails at once on %s', async (_name, error) => {
    ecs.on(RunTaskCommand).rejects(error);
    const thrown = await launcher()
      .launch(jobRecord(ids.jobId()))
      .catch((e: unknown) => e);
    expect(thrown).not.toBeInstanceOf(LaunchUnavailableError);
    expect((thrown as Error).message).toContain(error.message);
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('fails at once on a failure that is not about capacity', async () => {
    ecs.on(RunTaskCommand).resolves({
      tasks: [],
      failures: [{ reason: 'ATTRIBUTE', detail: 'no instance with ecs.capability.task-eni' }],
    });

    const error = await launcher()
      .launch(jobRecord(ids.jobId()))
      .catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(LaunchUnavailableError);
    expect((error as Error).message).toBe(
      'ECS RunTask started no task (FARGATE): ATTRIBUTE: no instance with ecs.capability.task-eni',
    );
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('refuses a job whose cpu/memory is not a Fargate size without calling ECS', async () => {
    await expect(launcher().launch(jobRecord(ids.jobId(), { cpu: 512, memory: 512 }))).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    expect(ecs.calls()).toHaveLength(0);
  });
});

describe('checkFargateSize', () => {
  it.each([
    [null, null],
    [256, 512],
    [256, 1024],
    [256, 2048],
    [512, 1024],
    [512, 4096],
    [1024, 2048],
    [1024, 8192],
    [2048, 4096],
    [2048, 16384],
    [4096, 8192],
    [4096, 30720],
    [8192, 16384],
    [8192, 20480],
    [8192, 61440],
    [16384, 32768],
    [16384, 40960],
    [16384, 122880],
  ])('accepts cpu %s with memory %s', (cpu, memory) => {
    expect(() => checkFargateSize(cpu, memory)).not.toThrow();
  });

  it.each([
    [
      256,
      3072,
      'memory 3072 MiB does not fit cpu 256 on Fargate; with cpu 256 memory must be 512 or 1024-2048 in steps of 1024 MiB',
    ],
    [512, 512, 'with cpu 512 memory must be 1024-4096 in steps of 1024 MiB'],
    [1024, 2560, 'with cpu 1024 memory must be 2048-8192 in steps of 1024 MiB'],
    [4096, 31744, 'with cpu 4096 memory must be 8192-30720 in steps of 1024 MiB'],
    [8192, 17408, 'with cpu 8192 memory must be 16384-61440 in steps of 4096 MiB'],
    [16384, 36864, 'with cpu 16384 memory must be 32768-122880 in steps of 8192 MiB'],
    [300, 1024, 'cpu 300 is not a Fargate size; cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384'],
    [1024, null, 'give cpu and memory together (got cpu 1024 without memory)'],
    [null, 2048, 'give cpu and memory together (got memory 2048 without cpu)'],
  ])('rejects cpu %s with memory %s, saying what is allowed', (cpu, memory, text) => {
    let error: unknown;
    try {
      checkFargateSize(cpu, memory);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidRequestError);
    const message = (error as Error).message;
    expect(message).toContain(text);
    // Every rejection lists the whole table, so a caller can pick a valid size in one go.
    expect(message).toContain('cpu 256: memory 512 or 1024-2048 in steps of 1024');
    expect(message).toContain('cpu 16384: memory 32768-122880 in steps of 8192');
  });

  it('is the launcher resource check', () => {
    expect(() => launcher().checkResources({ cpu: 2048, memory: 1024 })).toThrow(InvalidRequestError);
    expect(() => launcher().checkResources({ cpu: 2048, memory: 8192 })).not.toThrow();
  });
});

describe('EcsLauncher.stop', () => {
  it('sends StopTask with a reason naming the job', async () => {
    const job = jobRecord(ids.jobId(), { status: 'cancelled', runner_ref: TASK_ARN });
    ecs.on(StopTaskCommand).resolves({});

    await launcher().stop(job);

    expect(ecs.commandCalls(StopTaskCommand)[0]!.args[0].input).toEqual({
      cluster: CLUSTER,
      task: TASK_ARN,
      reason: `notebook-jobs: job ${job.job_id} cancelled`,
    });
  });

  it('does nothing for a job without a task', async () => {
    await launcher().stop(jobRecord(ids.jobId(), { status: 'cancelled', runner_ref: null }));
    expect(ecs.calls()).toHaveLength(0);
  });

  it('treats a task ECS no longer knows as stopped', async () => {
    ecs
      .on(StopTaskCommand)
      .rejects(
        new InvalidParameterException({ message: 'The referenced task was not found.', $metadata: {} }),
      );
    await expect(
      launcher().stop(jobRecord(ids.jobId(), { status: 'failed', runner_ref: TASK_ARN })),
    ).resolves.toBeUndefined();
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(1);
  });

  it('lets other errors through', async () => {
    ecs
      .on(StopTaskCommand)
      .rejects(new ClusterNotFoundException({ message: 'Cluster not found.', $metadata: {} }));
    await expect(
      launcher().stop(jobRecord(ids.jobId(), { status: 'cancelled', runner_ref: TASK_ARN })),
    ).rejects.toThrow('Cluster not found.');
  });
});

describe('EcsLauncher.isAlive', () => {
  it.each([
    ['RUNNING', 'RUNNING', true],
    ['PROVISIONING', 'RUNNING', true],
    ['PENDING', 'RUNNING', true],
    // Stop requested, the runner is still saving the partial notebook: keep its slot.
    ['RUNNING', 'STOPPED', true],
    ['DEACTIVATING', 'STOPPED', true],
    ['DEPROVISIONING', 'STOPPED', false],
    ['STOPPED', 'STOPPED', false],
  ])('lastStatus %s, desiredStatus %s -> %s', async (lastStatus, desiredStatus, alive) => {
    ecs.on(DescribeTasksCommand).resolves({ tasks: [{ taskArn: TASK_ARN, lastStatus, desiredStatus }] });

    await expect(launcher().isAlive(TASK_ARN)).resolves.toBe(alive);
    expect(ecs.commandCalls(DescribeTasksCommand)[0]!.args[0].input).toEqual({
      cluster: CLUSTER,
      tasks: [TASK_ARN],
    });
  });

  it('is false for a task ECS reports MISSING', async () => {
    ecs.on(DescribeTasksCommand).resolves({ tasks: [], failures: [{ arn: TASK_ARN, reason: 'MISSING' }] });
    await expect(launcher().isAlive(TASK_ARN)).resolves.toBe(false);
  });

  it('cannot tell (null) while throttled', async () => {
    ecs.on(DescribeTasksCommand).rejects(throttled());
    await expect(launcher().isAlive(TASK_ARN)).resolves.toBeNull();
  });

  it('lets configuration errors through', async () => {
    ecs
      .on(DescribeTasksCommand)
      .rejects(new ClusterNotFoundException({ message: 'Cluster not found.', $metadata: {} }));
    await expect(launcher().isAlive(TASK_ARN)).rejects.toThrow('Cluster not found.');
  });
});
