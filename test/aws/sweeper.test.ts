/**
 * The scheduled sweeper Lambda against dynalite with ECS mocked: a job past its deadline plus grace
 * is failed as a timeout and its task stopped (exact StopTask input), its slot is freed once ECS
 * reports the task stopped, the next job starts, and the queue/running gauges are emitted as EMF.
 * A task found STOPPED is settled by its stop code as the STOPPED event would have settled it.
 */
import {
  DescribeTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type DescribeTasksCommandInput,
  type TaskStopCode,
} from '@aws-sdk/client-ecs';
import { beforeEach, describe, expect, it } from 'vitest';
import type { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import {
  CLUSTER_ARN,
  dynaliteForThisFile,
  oneSlotColdStart,
  createJobVia,
  expectedRunTask,
  mockAws,
  proxyEvent,
  stdoutLines,
} from './aws-harness.ts';

type SweeperModule = typeof import('../../lambda/handlers/sweeper.ts');

const db = dynaliteForThisFile();
const aws = mockAws();
let store: DynamoDbJobStore;
let createJob: () => Promise<string>;
let sweep: SweeperModule['handler'];

beforeEach(async () => {
  aws.reset();
  const started = await oneSlotColdStart<SweeperModule>(db(), 'lambda/handlers/sweeper.ts');
  ({
    store,
    module: { handler: sweep },
  } = started);
  createJob = () => createJobVia(started.api);
});

/** ECS answers DescribeTasks with these task states (ARN -> lastStatus); others are MISSING. */
function describeTasks(states: Record<string, string>) {
  aws.ecs.on(DescribeTasksCommand).callsFake((input: DescribeTasksCommandInput) => {
    const arn = input.tasks?.[0] as string;
    const lastStatus = states[arn];
    return lastStatus
      ? {
          tasks: [
            { taskArn: arn, lastStatus, desiredStatus: lastStatus === 'RUNNING' ? 'RUNNING' : 'STOPPED' },
          ],
          failures: [],
        }
      : { tasks: [], failures: [{ arn, reason: 'MISSING' }] };
  });
}

/** Runs the sweeper and returns what it printed as EMF documents. */
async function sweepCapturingEmf(): Promise<{ outcome: Awaited<ReturnType<typeof sweep>>; emf: any[] }> {
  const { result: outcome, lines } = await stdoutLines(() => sweep());
  return { outcome, emf: lines.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l)) };
}

describe('sweeper', () => {
  it('fails a job past its deadline plus grace as a timeout, stops its task, then starts the next job', async () => {
    const late = await createJob();
    const next = await createJob();
    const last = await createJob();
    const lateTask = aws.tasks.get(late) as string;
    // Past the deadline by more than the 30 s grace.
    await store.update(late, ['running'], { deadline_at: new Date(Date.now() - 60_000).toISOString() });
    aws.ecs.on(StopTaskCommand).resolves({});
    describeTasks({ [lateTask]: 'STOPPED' });
    aws.ecs.resetHistory();

    const { outcome, emf } = await sweepCapturingEmf();

    expect(outcome).toEqual({
      timed_out: [late],
      lost: [],
      requeued: [],
      released: [late],
      queued: 1,
      running: 1,
    });
    expect(await store.get(late)).toMatchObject({
      status: 'failed',
      error: { type: 'timeout', message: 'the job ran past its timeout of 3600 s and was stopped' },
    });
    expect(aws.ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: CLUSTER_ARN, task: lateTask, reason: `notebook-jobs: job ${late} running` },
    ]);
    expect(aws.ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: CLUSTER_ARN, tasks: [lateTask] },
    ]);
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(next, 'acme'),
    ]);
    expect((await store.get(last))?.status).toBe('queued');
    expect(emf).toEqual([
      {
        _aws: {
          Timestamp: expect.any(Number),
          CloudWatchMetrics: [
            {
              Namespace: 'NotebookJobs',
              Dimensions: [[]],
              Metrics: [
                { Name: 'JobsQueued', Unit: 'Count' },
                { Name: 'JobsRunning', Unit: 'Count' },
              ],
            },
          ],
        },
        JobsQueued: 1,
        JobsRunning: 1,
      },
    ]);
  });

  it('fails a running job whose task ECS no longer knows, and keeps one whose task runs', async () => {
    const gone = await createJob();
    describeTasks({}); // every task MISSING

    const { outcome, emf } = await sweepCapturingEmf();

    expect(outcome.lost).toEqual([gone]);
    expect(await store.get(gone)).toMatchObject({
      status: 'failed',
      error: { type: 'infrastructure', message: expect.stringContaining('runner is gone') },
    });
    expect(emf.map((d) => [d.JobsQueued, d.JobsRunning])).toEqual([[0, 0]]);

    const alive = await createJob();
    describeTasks({ [aws.tasks.get(alive) as string]: 'RUNNING' });
    const second = await sweepCapturingEmf();
    expect(second.outcome).toEqual({
      timed_out: [],
      lost: [],
      requeued: [],
      released: [],
      queued: 0,
      running: 1,
    });
    expect((await store.get(alive))?.status).toBe('running');
  });
});

describe('a stopped task whose STOPPED event never arrived', () => {
  /** ECS answers DescribeTasks for `arn` with a STOPPED task carrying this stop code and reason. */
  function stoppedTask(arn: string, stopCode: TaskStopCode, stoppedReason: string, exitCode: number) {
    aws.ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        {
          taskArn: arn,
          lastStatus: 'STOPPED',
          desiredStatus: 'STOPPED',
          stopCode,
          stoppedReason,
          containers: [{ name: 'runner', exitCode, lastStatus: 'STOPPED' }],
        },
      ],
      failures: [],
    });
  }
  const describeCall = (task: string) => ({ cluster: CLUSTER_ARN, tasks: [task] });

  it.each<[TaskStopCode, string]>([
    ['SpotInterruption', 'Your Spot Task was interrupted.'],
    ['TaskFailedToStart', 'ResourceInitializationError: unable to pull secrets or registry auth'],
  ])(
    'requeues a job whose task stopped with %s as its next attempt, as the event would',
    async (stopCode, stoppedReason) => {
      const job = await createJob();
      const before = await store.get(job);
      const task = aws.tasks.get(job) as string;
      stoppedTask(task, stopCode, stoppedReason, 143);
      aws.ecs.resetHistory();

      const { outcome } = await sweepCapturingEmf();

      expect(outcome).toEqual({
        timed_out: [],
        lost: [],
        requeued: [job],
        released: [],
        queued: 0,
        running: 1,
      });
      const taskId = task.split('/').pop();
      expect(await store.get(job)).toMatchObject({
        status: 'running',
        attempt: 2,
        error: null,
        attempts: [
          {
            attempt: 1,
            started_at: before?.started_at,
            ended_at: expect.any(String),
            reason: `ECS task ${taskId} stopped (${stopCode}): ${stoppedReason}; container runner: exit code 143`,
          },
        ],
      });
      expect(aws.ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input)).toEqual([
        describeCall(task),
      ]);
      expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
        expectedRunTask(job, 'acme', { attempt: 2 }),
      ]);
      expect(await store.slotHolders()).toEqual([job]);
    },
  );

  it('fails a run lost to infrastructure on its last attempt, naming the attempt', async () => {
    const job = await createJob();
    await store.update(job, ['running'], { attempt: 3 });
    const task = aws.tasks.get(job) as string;
    stoppedTask(task, 'SpotInterruption', 'Your Spot Task was interrupted.', 143);
    aws.ecs.resetHistory();

    const { outcome } = await sweepCapturingEmf();

    expect(outcome).toMatchObject({ lost: [job], requeued: [], released: [job] });
    expect(await store.get(job)).toMatchObject({
      status: 'failed',
      attempt: 3,
      error: {
        type: 'infrastructure',
        message: `the job's run was lost to infrastructure on attempt 3 of at most 3: ECS task ${task.split('/').pop()} stopped (SpotInterruption): Your Spot Task was interrupted.; container runner: exit code 143`,
      },
    });
    // Once to settle the job, once more before freeing its slot (a saving runner keeps it).
    expect(aws.ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input)).toEqual([
      describeCall(task),
      describeCall(task),
    ]);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
    expect(await store.slotHolders()).toEqual([]);
  });

  it('fails a job whose runner exited (EssentialContainerExited) with the stop reason, without a requeue', async () => {
    const job = await createJob();
    const task = aws.tasks.get(job) as string;
    stoppedTask(task, 'EssentialContainerExited', 'Essential container in task exited', 137);
    aws.ecs.resetHistory();

    const { outcome } = await sweepCapturingEmf();

    expect(outcome).toMatchObject({ lost: [job], requeued: [], released: [job] });
    expect(await store.get(job)).toMatchObject({
      status: 'failed',
      attempt: 1,
      error: {
        type: 'infrastructure',
        message: `the job's runner stopped before reporting a result: ECS task ${task.split('/').pop()} stopped (EssentialContainerExited): Essential container in task exited; container runner: exit code 137`,
      },
    });
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });
});

describe('launches that meet no capacity, a quota or throttling', () => {
  const CAPACITY =
    'Capacity is unavailable at this time. Please try again later or in a different availability zone';
  const noCapacity = { tasks: [], failures: [{ reason: CAPACITY }] };
  const past = () => new Date(Date.now() - 1000).toISOString();

  /** The job's view through the api Lambda. */
  async function view(jobId: string): Promise<Record<string, any>> {
    const result = await api(proxyEvent({ method: 'GET', path: `/v1/jobs/${jobId}`, tenant: 'acme' }));
    return JSON.parse(result.body) as Record<string, any>;
  }

  let api: Awaited<ReturnType<typeof oneSlotColdStart>>['api'];
  beforeEach(async () => {
    const started = await oneSlotColdStart<SweeperModule>(db(), 'lambda/handlers/sweeper.ts');
    ({ store, api } = started);
    createJob = () => createJobVia(started.api);
  });

  it('keeps the job queued with its retry time, without retrying inside the request, and the sweep launches it once due', async () => {
    // (A call counter of our own: sinon's "once" answers count calls from the last resetHistory.)
    let calls = 0;
    aws.ecs
      .on(RunTaskCommand)
      .callsFake(() =>
        calls++ === 0
          ? noCapacity
          : { tasks: [{ taskArn: 'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/t1' }] },
      );
    const job = await createJob();

    // One RunTask in the request; the job waits queued, its slot free, and says why.
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme'),
    ]);
    const waiting = await store.get(job);
    expect(waiting).toMatchObject({
      status: 'queued',
      attempt: 0,
      started_at: null,
      runner_ref: null,
      launch_attempts: 1,
      launch_generation: 1,
      last_launch_error: `ECS RunTask started no task (FARGATE): ${CAPACITY}`,
    });
    const retryIn = Date.parse(waiting?.launch_retry_at as string) - Date.now();
    expect(retryIn).toBeGreaterThan(10_000);
    expect(retryIn).toBeLessThanOrEqual(15_000);
    const deadlineIn = Date.parse(waiting?.launch_deadline_at as string) - Date.now();
    expect(deadlineIn).toBeGreaterThan(890_000);
    expect(deadlineIn).toBeLessThanOrEqual(900_000);
    expect(await store.slotHolders()).toEqual([]);
    expect((await view(job)).launch).toEqual({
      attempts: 1,
      last_error: `ECS RunTask started no task (FARGATE): ${CAPACITY}`,
      retry_at: waiting?.launch_retry_at,
      deadline_at: waiting?.launch_deadline_at,
    });

    // Before its retry time the sweep leaves it alone.
    aws.ecs.resetHistory();
    describeTasks({});
    await sweepCapturingEmf();
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);

    // Once due, the sweep launches it with the next client token (nothing started before).
    await store.update(job, ['queued'], { launch_retry_at: past() });
    await sweepCapturingEmf();
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme', { generation: 1 }),
    ]);
    expect(await store.get(job)).toMatchObject({ status: 'running', attempt: 1, stage: 'provisioning' });
    expect((await view(job)).launch).toEqual({
      attempts: 1,
      last_error: `ECS RunTask started no task (FARGATE): ${CAPACITY}`,
      retry_at: null,
      deadline_at: null,
    });
  });

  it('reuses the client token after a thrown throttle (a task may have started), and lets the next job pass', async () => {
    const throttled = Object.assign(new Error('Rate exceeded'), {
      name: 'ThrottlingException',
      $metadata: { httpStatusCode: 400 },
    });
    aws.ecs
      .on(RunTaskCommand)
      .rejectsOnce(throttled)
      .callsFake((input: { startedBy: string }) => ({
        tasks: [{ taskArn: `arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/${input.startedBy}` }],
      }));
    const first = await createJob();
    expect(await store.get(first)).toMatchObject({
      status: 'queued',
      launch_generation: 0,
      last_launch_error: 'ECS RunTask failed (ThrottlingException): Rate exceeded',
    });
    // The next job is not held up by one waiting for its retry.
    const second = await createJob();
    expect((await store.get(second))?.status).toBe('running');
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input.clientToken)).toEqual([
      `${first}-1-0`,
      `${second}-1-0`,
    ]);
  });

  it('fails the job as infrastructure when a try fails after the launch deadline', async () => {
    aws.ecs.on(RunTaskCommand).resolves(noCapacity);
    const job = await createJob();
    await store.update(job, ['queued'], { launch_retry_at: past(), launch_deadline_at: past() });
    aws.ecs.resetHistory();
    describeTasks({});

    await sweepCapturingEmf();

    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme', { generation: 1 }),
    ]);
    const failed = await store.get(job);
    expect(failed?.status).toBe('failed');
    expect(failed?.error).toEqual({
      type: 'infrastructure',
      message: `the job could not be started: no capacity to start the job for 900 s (2 launch tries, launch deadline reached): ECS RunTask started no task (FARGATE): ${CAPACITY}`,
    });
    expect(await store.slotHolders()).toEqual([]);
  });

  it.each([
    ['a bad task definition', { name: 'ClientException', message: 'TaskDefinition is inactive' }],
    ['access denied', { name: 'AccessDeniedException', message: 'not authorized to perform: ecs:RunTask' }],
    ['an invalid parameter', { name: 'InvalidParameterException', message: 'subnet not in the VPC' }],
  ])('fails the job at once on %s, with the message', async (_name, { name, message }) => {
    aws.ecs
      .on(RunTaskCommand)
      .rejects(Object.assign(new Error(message), { name, $metadata: { httpStatusCode: 400 } }));
    const job = await createJob();
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
    expect(await store.get(job)).toMatchObject({
      status: 'failed',
      error: {
        type: 'infrastructure',
        message: `the job could not be started: ECS RunTask failed (${name}): ${message}`,
      },
    });
    expect(await store.slotHolders()).toEqual([]);
  });
});
