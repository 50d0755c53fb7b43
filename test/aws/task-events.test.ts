/**
 * The task-events Lambda driven by EventBridge "ECS Task State Change" events shaped like AWS's
 * documented example (STOPPED variants under test/fixtures/aws-events), against dynalite, with jobs
 * created through the api Lambda so each has a real task ARN from the (mocked) RunTask.
 */
import { RunTaskCommand } from '@aws-sdk/client-ecs';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Context } from 'aws-lambda';
import type { EcsTaskStateChangeEvent } from '../../lambda/handlers/task-events.ts';
import type { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { StateConflictError } from '../../lambda/core/errors.ts';
import type { JobRecord } from '../../lambda/core/job.ts';
import { Lifecycle, transitions } from '../../lambda/core/lifecycle.ts';
import {
  dynaliteForThisFile,
  oneSlotColdStart,
  createJobVia,
  expectedRunTask,
  fixture,
  handlerLogger,
  mockAws,
  stdoutLines,
} from './aws-harness.ts';

type TaskEventsModule = typeof import('../../lambda/handlers/task-events.ts');

const db = dynaliteForThisFile();
const aws = mockAws();
let store: DynamoDbJobStore;
let createJob: () => Promise<string>;
let onEvent: TaskEventsModule['handler'];

beforeEach(async () => {
  aws.reset();
  // One slot, so a second job waits in the queue until the first one's task is gone.
  const started = await oneSlotColdStart<TaskEventsModule>(db(), 'lambda/handlers/task-events.ts');
  ({
    store,
    module: { handler: onEvent },
  } = started);
  createJob = () => createJobVia(started.api);
});

/** A STOPPED event from a fixture, for this job and task. */
function stopped(name: string, jobId: string, taskArn: string): EcsTaskStateChangeEvent {
  const event = structuredClone(fixture<EcsTaskStateChangeEvent>(name));
  event.resources = [taskArn];
  event.detail.taskArn = taskArn;
  event.detail.startedBy = jobId;
  for (const container of event.detail.containers ?? []) Object.assign(container, { taskArn });
  return event;
}

describe('a STOPPED task of a running job', () => {
  it('fails the job with the stop reason and exit code, frees the slot and starts the next job', async () => {
    const first = await createJob();
    const second = await createJob();
    expect((await store.get(second))?.status).toBe('queued');
    const task = aws.tasks.get(first) as string;
    aws.ecs.resetHistory();

    const outcome = await onEvent(stopped('ecs-task-stopped-137-stoptask.json', first, task));

    expect(outcome).toEqual({ action: 'reconciled', job_id: first, tenant: 'acme' });
    const failed = await store.get(first);
    expect(failed?.status).toBe('failed');
    expect(failed?.error).toEqual({
      type: 'infrastructure',
      message:
        "the job's runner stopped before reporting a result: ECS task " +
        `${task.split('/').pop()} stopped (UserInitiated): Task stopped by user; container runner: exit code 137`,
    });
    expect(await store.slotHolders()).toEqual([second]);
    expect((await store.get(second))?.status).toBe('running');
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(second, 'acme'),
    ]);
  });

  it('requeues a job whose task never started (TaskFailedToStart) as attempt 2 and launches it again', async () => {
    const job = await createJob();
    const task = aws.tasks.get(job) as string;
    const before = await store.get(job);
    aws.ecs.resetHistory();

    const outcome = await onEvent(stopped('ecs-task-failed-to-start.json', job, task));

    expect(outcome).toEqual({ action: 'reconciled', job_id: job, tenant: 'acme' });
    const requeued = await store.get(job);
    // The freed slot went straight to it again: running, as its second attempt, on a new task.
    expect(requeued).toMatchObject({ status: 'running', attempt: 2, error: null });
    expect(requeued?.runner_ref).not.toBe(task);
    expect(requeued?.attempts).toEqual([
      {
        attempt: 1,
        started_at: before?.started_at,
        ended_at: expect.any(String),
        reason: expect.any(String),
      },
    ]);
    expect(requeued?.attempts?.[0]?.reason).toContain(
      'stopped (TaskFailedToStart): CannotPullContainerError: pull image manifest',
    );
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme', { attempt: 2 }),
    ]);
    expect(await store.slotHolders()).toEqual([job]);
  });

  it('requeues a Spot interruption up to the maximum of 3 attempts, then fails as infrastructure', async () => {
    const job = await createJob();
    aws.ecs.resetHistory();
    for (let attempt = 1; attempt <= 3; attempt++) {
      const task = (await store.get(job))?.runner_ref as string;
      const event = stopped('ecs-task-stopped-137-stoptask.json', job, task);
      Object.assign(event.detail, {
        stopCode: 'SpotInterruption',
        stoppedReason: 'Your Spot Task was interrupted.',
      });
      await onEvent(event);
    }
    const failed = await store.get(job);
    expect(failed?.status).toBe('failed');
    expect(failed?.attempt).toBe(3);
    expect(failed?.error?.type).toBe('infrastructure');
    expect(failed?.error?.message).toMatch(
      /^the job's run was lost to infrastructure on attempt 3 of at most 3: ECS task \w+ stopped \(SpotInterruption\): Your Spot Task was interrupted\./,
    );
    expect(failed?.attempts?.map((a) => a.attempt)).toEqual([1, 2]);
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme', { attempt: 2 }),
      expectedRunTask(job, 'acme', { attempt: 3 }),
    ]);
    expect(await store.slotHolders()).toEqual([]);
  });

  it("keeps a requeued job's earlier runner from writing over the new attempt", async () => {
    const job = await createJob();
    const firstRun = (await store.get(job)) as JobRecord;
    const event = stopped('ecs-task-stopped-137-stoptask.json', job, firstRun.runner_ref as string);
    Object.assign(event.detail, { stopCode: 'SpotInterruption' });
    await onEvent(event);
    expect((await store.get(job))?.attempt).toBe(2);

    // The first attempt's runner, still saving, writes its ending as it saw the job: refused.
    const lifecycle = new Lifecycle({ store });
    await expect(
      lifecycle.apply(firstRun, transitions.ended('completed', null, new Date(), { from: ['running'] })),
    ).rejects.toBeInstanceOf(StateConflictError);
    await expect(
      lifecycle.apply(firstRun, transitions.progress('executing', firstRun.progress, new Date())),
    ).rejects.toBeInstanceOf(StateConflictError);
    expect(await store.get(job)).toMatchObject({ status: 'running', attempt: 2, stage: 'provisioning' });
  });

  it("never lets a replayed STOPPED event of the earlier attempt's task end the new attempt", async () => {
    const job = await createJob();
    const firstTask = aws.tasks.get(job) as string;
    const spot = stopped('ecs-task-stopped-137-stoptask.json', job, firstTask);
    Object.assign(spot.detail, {
      stopCode: 'SpotInterruption',
      stoppedReason: 'Your Spot Task was interrupted.',
    });
    // Hold attempt 2's RunTask open: the window between its start and recording its task.
    let answerRunTask = (_: unknown) => {};
    const secondTask =
      'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/5ec0nd5ec0nd5ec0nd5ec0nd5ec0nd00';
    aws.ecs.on(RunTaskCommand).callsFake(
      () =>
        new Promise((resolve) => {
          answerRunTask = resolve;
        }),
    );
    aws.ecs.resetHistory();

    const first = onEvent(spot);
    await vi.waitFor(async () => expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1));
    const launching = await store.get(job);
    expect(launching).toMatchObject({ status: 'running', attempt: 2, runner_ref: null });

    // EventBridge delivers the same event again (at least once) while attempt 2 is being launched.
    // (Bounded: a replay that wrongly requeues attempt 2 would wait on the held launch.)
    const replayed = await Promise.race([
      onEvent(structuredClone(spot)),
      new Promise((resolve) => setTimeout(() => resolve('the replay is still dispatching the job'), 5000)),
    ]);
    expect(replayed).toEqual({
      action: 'ignored',
      reason: "the job's runner is not recorded yet",
      job_id: job,
      tenant: 'acme',
    });
    expect(await store.get(job)).toEqual(launching);
    expect(await store.slotHolders()).toEqual([job]);

    answerRunTask({
      tasks: [{ taskArn: secondTask, lastStatus: 'PROVISIONING', startedBy: job }],
      failures: [],
    });
    expect(await first).toEqual({ action: 'reconciled', job_id: job, tenant: 'acme' });
    const running = await store.get(job);
    expect(running).toMatchObject({ status: 'running', attempt: 2, runner_ref: secondTask });

    // And once more after attempt 2's task is recorded.
    expect(await onEvent(structuredClone(spot))).toEqual({
      action: 'ignored',
      reason: "task of an earlier attempt, not the job's runner",
      job_id: job,
      tenant: 'acme',
    });
    expect(await store.get(job)).toEqual(running);
    expect(await store.slotHolders()).toEqual([job]);
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job, 'acme', { attempt: 2 }),
    ]);
  });

  it('fails a job whose runner exited without a result (EssentialContainerExited is not requeued)', async () => {
    const job = await createJob();
    const event = stopped('ecs-task-stopped-137-stoptask.json', job, aws.tasks.get(job) as string);
    Object.assign(event.detail, { stopCode: 'EssentialContainerExited' });
    await onEvent(event);
    expect(await store.get(job)).toMatchObject({ status: 'failed', attempt: 1 });
  });
});

describe('log lines', () => {
  it('carry job_id, tenant and the Lambda request id', async () => {
    const job = await createJob();
    const context = { awsRequestId: 'req-1234', functionName: 'task-events' } as Context;
    const { lines } = await stdoutLines(() =>
      onEvent(stopped('ecs-task-stopped-137-stoptask.json', job, aws.tasks.get(job) as string), context),
    );
    const logged = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(logged).toContainEqual(
      expect.objectContaining({
        message: 'reconciled a stopped task',
        job_id: job,
        tenant: 'acme',
        function_request_id: 'req-1234',
      }),
    );
  });
});

describe('a STOPPED task of a job that already ended', () => {
  it('leaves the job as the runner reported it and only releases the slot', async () => {
    const job = await createJob();
    const task = aws.tasks.get(job) as string;
    const now = new Date().toISOString();
    // The runner reports completion itself before its task stops.
    await store.update(job, ['running'], {
      status: 'completed',
      stage: null,
      ended_at: now,
      updated_at: now,
    });
    const before = await store.get(job);
    expect(await store.slotHolders()).toEqual([job]);

    const outcome = await onEvent(stopped('ecs-task-stopped-exit-0.json', job, task));

    expect(outcome).toEqual({ action: 'reconciled', job_id: job, tenant: 'acme' });
    expect(await store.get(job)).toEqual(before);
    expect(await store.slotHolders()).toEqual([]);
  });
});

describe('a STOPPED task of the warm runner service', () => {
  it('reconciles the job that records the task as its runner (the job it claimed)', async () => {
    const first = await createJob();
    const second = await createJob();
    const task = aws.tasks.get(first) as string;
    const event = stopped('ecs-task-stopped-137-stoptask.json', first, task);
    event.detail.startedBy = 'ecs-svc/9223370545345641169'; // a service task, not RunTask's

    expect(await onEvent(event)).toEqual({ action: 'reconciled', job_id: first, tenant: 'acme' });
    expect((await store.get(first))?.status).toBe('failed');
    expect(await store.slotHolders()).toEqual([second]);
  });
});

describe('events that are not about a current job', () => {
  it('ignores a task not started for a job that no job names as its runner, with a log line', async () => {
    const job = await createJob();
    // A warm runner service task that stopped while idle: no job records it as its runner.
    const idleTask = 'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/ffffffffffffffffffffffffffffffff';
    const event = stopped('ecs-task-stopped-exit-0.json', job, idleTask);
    event.detail.startedBy = 'ecs-svc/9223370545345641169';
    const info = vi.spyOn(await handlerLogger(), 'info');

    const outcome = await onEvent(event);

    expect(outcome).toEqual({
      action: 'ignored',
      reason: 'task was not started for a job (startedBy "ecs-svc/9223370545345641169")',
    });
    expect(info).toHaveBeenCalledWith(
      'ignored task event: task was not started for a job (startedBy "ecs-svc/9223370545345641169")',
      expect.objectContaining({ taskArn: event.detail.taskArn }),
    );
    expect((await store.get(job))?.status).toBe('running');
    expect(await store.slotHolders()).toEqual([job]);
  });

  it('ignores a job id that does not exist', async () => {
    const ghost = 'job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX';
    await store.acquireSlot(ghost, 5); // a leaked holder: the sweep frees it, not this event
    const outcome = await onEvent(
      stopped(
        'ecs-task-stopped-exit-0.json',
        ghost,
        'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/0123456789abcdef0123456789abcdef',
      ),
    );
    expect(outcome).toEqual({ action: 'ignored', reason: 'no such job', job_id: ghost });
    expect(await store.slotHolders()).toEqual([ghost]);
  });

  it("ignores an earlier attempt's task while the job runs on another task", async () => {
    const job = await createJob();
    const current = aws.tasks.get(job) as string;
    const earlier = 'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld00';

    const outcome = await onEvent(stopped('ecs-task-stopped-137-stoptask.json', job, earlier));

    expect(outcome).toEqual({
      action: 'ignored',
      reason: "task of an earlier attempt, not the job's runner",
      job_id: job,
      tenant: 'acme',
    });
    expect(await store.get(job)).toMatchObject({ status: 'running', runner_ref: current, error: null });
    expect(await store.slotHolders()).toEqual([job]);
  });

  it('ignores tasks of another cluster and states other than STOPPED', async () => {
    const job = await createJob();
    const task = aws.tasks.get(job) as string;
    const otherCluster = stopped('ecs-task-stopped-137-stoptask.json', job, task);
    otherCluster.detail.clusterArn = 'arn:aws:ecs:us-west-2:111122223333:cluster/someone-else';
    const running = stopped('ecs-task-stopped-137-stoptask.json', job, task);
    running.detail.lastStatus = 'RUNNING';
    running.detail.desiredStatus = 'RUNNING';

    expect((await onEvent(otherCluster)).action).toBe('ignored');
    expect(await onEvent(running)).toEqual({ action: 'ignored', reason: 'task is RUNNING' });
    expect((await store.get(job))?.status).toBe('running');
  });
});
