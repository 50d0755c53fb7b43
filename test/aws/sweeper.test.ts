/**
 * The scheduled sweeper Lambda against dynalite with ECS mocked: a job past its deadline plus grace
 * is failed as a timeout and its task stopped (exact StopTask input), its slot is freed once ECS
 * reports the task stopped, the next job starts, and the queue/running gauges are emitted as EMF.
 */
import {
  DescribeTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type DescribeTasksCommandInput,
} from '@aws-sdk/client-ecs';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import {
  CLUSTER_ARN,
  dynaliteForThisFile,
  oneSlotColdStart,
  createJobVia,
  expectedRunTask,
  mockAws,
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
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    const outcome = await sweep();
    return { outcome, emf: lines.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l)) };
  } finally {
    write.mockRestore();
  }
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

    expect(outcome).toEqual({ timed_out: [late], lost: [], released: [late], queued: 1, running: 1 });
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
    expect(second.outcome).toEqual({ timed_out: [], lost: [], released: [], queued: 0, running: 1 });
    expect((await store.get(alive))?.status).toBe('running');
  });
});
