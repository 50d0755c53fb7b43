/**
 * The hand-off of a started job to a warm runner (lambda/core/scheduling.ts over
 * lambda/adapters/dynamodb/warm-runners.ts), against dynalite, with the AWS wiring of the Lambdas
 * and ECS mocked: two dispatchers and one runner (exactly one job goes warm, the other gets exactly
 * one RunTask), a job cancelled while offered (never run, no RunTask, slot freed), an offer that
 * times out (withdrawn, then the exact RunTask), an offer left behind by a dispatcher that stopped
 * (the sweep launches it), and jobs a warm runner must not take. The runner here is the adapter's
 * runner side driven in-process; test/integration/runner-aws-mode.test.ts runs the real process.
 */
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { ECSClient, RunTaskCommand } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { beforeEach, describe, expect, it } from 'vitest';
import { DynamoDbWarmRunners, type WarmOffer } from '../../lambda/adapters/dynamodb/warm-runners.ts';
import { readAwsConfig } from '../../lambda/aws/config.ts';
import { createAwsDeps } from '../../lambda/aws/wiring.ts';
import { JobService } from '../../lambda/core/job-service.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import type { JobRecord } from '../../lambda/core/job.ts';
import { fitsWarmRunner } from '../../lambda/core/scheduling.ts';
import { jobRecord } from '../helpers/jobs.ts';
import {
  coldStart,
  dynaliteForThisFile,
  expectedRunTask,
  mockAws,
  REGION,
  stackEnv,
  stdoutLines,
} from './aws-harness.ts';

const db = dynaliteForThisFile();
const aws = mockAws();
const ids = new MonotonicJobIds();
const RUNNER = 'arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/0123456789abcdef0123456789abcdef';
let table: string;

beforeEach(async () => {
  aws.reset();
  table = await db().newTable();
});

/** A JobService as the api or sweeper Lambda wires it, with the warm pool of python3. */
async function dispatcher(config: { warmOfferMs?: number } = {}): Promise<JobService> {
  const awsConfig = readAwsConfig(
    stackEnv(table, db().endpoint, { NOTEBOOK_JOBS_WARM_KERNEL: 'python3' }),
    () => undefined,
  );
  const deps = await createAwsDeps(awsConfig, {
    dynamodb: db().client,
    ecs: new ECSClient({ region: REGION }),
    s3: new S3Client({ region: REGION }),
    logs: new CloudWatchLogsClient({ region: REGION }),
    events: new EventBridgeClient({ region: REGION }),
    secrets: new SecretsManagerClient({ region: REGION }),
  });
  return new JobService({ ...deps, config: { ...deps.config, ...config }, log: () => undefined });
}

const warm = () => new DynamoDbWarmRunners({ client: db().client, tableName: table, kernel: 'python3' });

async function queuedJob(overrides: Partial<JobRecord> = {}): Promise<JobRecord> {
  const job = jobRecord(ids.jobId(), { tenant: 'acme', ...overrides });
  await db().store(table).create(job);
  return job;
}

/** Polls the runner's item until it holds an offer (what the warm runner's loop does). */
async function offerSeen(runnerId: string, timeoutMs = 5000): Promise<WarmOffer> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const item = await warm().read(runnerId);
    if (item?.offer) return item.offer;
    if (Date.now() > end) throw new Error('no offer reached the runner');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const runTasks = () => aws.ecs.commandCalls(RunTaskCommand).map((call) => call.args[0].input);

describe('handing a started job to a warm runner', () => {
  it('two dispatchers, one idle runner: exactly one job goes to the runner, the other gets one RunTask', async () => {
    await warm().register(RUNNER, new Date());
    const [x, y] = [await queuedJob(), await queuedJob()];
    const [a, b] = [await dispatcher(), await dispatcher()];
    // The runner claims whatever it is offered, as the real one does after reading its item.
    const claimed = offerSeen(RUNNER).then(async (offer) => {
      expect(await warm().claim(offer, RUNNER)).toBe(true);
      await warm().remove(RUNNER);
      return offer.job_id;
    });
    await Promise.all([a.dispatch(), b.dispatch()]);
    const warmJob = await claimed;

    const store = db().store(table);
    const [jx, jy] = [await store.get(x.job_id), await store.get(y.job_id)];
    const cold = warmJob === x.job_id ? jy : jx;
    expect([jx?.status, jy?.status]).toEqual(['running', 'running']);
    expect((await store.get(warmJob))?.runner_ref).toBe(RUNNER);
    expect(runTasks()).toEqual([expectedRunTask(cold?.job_id as string, 'acme')]);
    expect(cold?.runner_ref).toBe(aws.tasks.get(cold?.job_id as string));
    expect((await store.slotHolders()).sort()).toEqual([x.job_id, y.job_id].sort());
  });

  it('two offers racing for the one idle runner: exactly one reserves it, the other job is left unoffered', async () => {
    await warm().register(RUNNER, new Date());
    const store = db().store(table);
    const started = await Promise.all(
      [await queuedJob(), await queuedJob()].map((job) =>
        store.update(job.job_id, ['queued'], {
          status: 'running',
          stage: 'provisioning',
          started_at: new Date().toISOString(),
          attempt: 1,
        }),
      ),
    );
    const deadline = new Date(Date.now() + 5000);
    const results = await Promise.all(started.map((job) => warm().offer(job, deadline, new Date())));
    expect(results.filter((r) => r === RUNNER)).toHaveLength(1);
    expect(results.filter((r) => r === null)).toHaveLength(1);
    const offer = (await warm().read(RUNNER))?.offer as WarmOffer;
    const [won, lost] = results[0] === RUNNER ? started : [...started].reverse();
    expect(offer.job_id).toBe(won?.job_id);
    // The loser's mark was withdrawn: even a runner that somehow read its id could not claim it.
    expect(await warm().claim({ ...offer, job_id: lost?.job_id as string }, RUNNER)).toBe(false);
    expect(await warm().claim(offer, RUNNER)).toBe(true);
  });

  it('never runs a job cancelled while it is offered: the claim fails, no RunTask, the slot is freed', async () => {
    await warm().register(RUNNER, new Date());
    const job = await queuedJob();
    const service = await dispatcher({ warmOfferMs: 2000 });
    const dispatched = service.dispatch();
    const offer = await offerSeen(RUNNER);
    expect(offer).toMatchObject({ job_id: job.job_id, tenant: 'acme', attempt: 1 });

    await service.cancel('acme', job.job_id);
    expect(await warm().claim(offer, RUNNER)).toBe(false);
    expect(await warm().release(RUNNER, job.job_id, new Date())).toBe(true); // back to idle
    await dispatched;

    const store = db().store(table);
    expect(await store.get(job.job_id)).toMatchObject({ status: 'cancelled', runner_ref: null });
    expect(runTasks()).toEqual([]);
    expect(await store.slotHolders()).toEqual([]);
    expect(await service.idleWarmRunners()).toBe(1);
  });

  it('withdraws an offer not taken in time and launches the job with RunTask; the late claim fails', async () => {
    await warm().register(RUNNER, new Date());
    const job = await queuedJob();
    const service = await dispatcher({ warmOfferMs: 300 });
    const started = Date.now();
    const dispatched = service.dispatch();
    const offer = await offerSeen(RUNNER); // seen, but the runner is too slow to claim
    await dispatched;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);

    expect(runTasks()).toEqual([expectedRunTask(job.job_id, 'acme')]);
    const launched = await db().store(table).get(job.job_id);
    expect(launched).toMatchObject({ status: 'running', runner_ref: aws.tasks.get(job.job_id) });
    expect(await warm().claim(offer, RUNNER)).toBe(false);
    expect(await warm().release(RUNNER, job.job_id, new Date())).toBe(true);
    expect(await service.idleWarmRunners()).toBe(1);
  });

  it('launches a job whose offer a stopped dispatcher left behind at the next sweep, even if its runner died', async () => {
    await warm().register(RUNNER, new Date());
    const job = await queuedJob();
    const store = db().store(table);
    await store.acquireSlot(job.job_id, 5);
    const started = await store.update(job.job_id, ['queued'], {
      status: 'running',
      stage: 'provisioning',
      started_at: new Date().toISOString(),
      attempt: 1,
    });
    // The dispatcher offered it and was frozen before its deadline came; the runner died too (its
    // heartbeat is stale): the offer must still be found.
    expect(await warm().offer(started, new Date(Date.now() - 1), new Date())).toBe(RUNNER);
    expect(await warm().heartbeat(RUNNER, new Date(Date.now() - 60_000))).toBe(true);

    await (await dispatcher()).sweep();
    expect(runTasks()).toEqual([expectedRunTask(job.job_id, 'acme')]);
    expect((await store.get(job.job_id))?.runner_ref).toBe(aws.tasks.get(job.job_id));
    expect(await warm().claim((await warm().read(RUNNER))?.offer as WarmOffer, RUNNER)).toBe(false);
  });

  it('offers nothing to a runner whose heartbeat is stale: the job is launched at once', async () => {
    await warm().register(RUNNER, new Date(Date.now() - 60_000));
    const job = await queuedJob();
    const service = await dispatcher();
    await service.dispatch();
    expect(runTasks()).toEqual([expectedRunTask(job.job_id, 'acme')]);
    expect((await warm().read(RUNNER))?.state).toBe('idle');
    expect(await service.idleWarmRunners()).toBe(0);
  });

  it.each([
    ['another kernel', { kernel: '.net-csharp' }],
    ['secrets', { secrets: { TOKEN: 'secretsmanager:notebook-jobs/acme/token' } }],
    ['input files', { input_files: { count: 1, bytes: 10 } }],
    ['its own task size', { cpu: 2048, memory: 8192 }],
  ] as const)('starts a job with %s cold, leaving the runner idle', async (_what, overrides) => {
    expect(fitsWarmRunner(jobRecord('job_x', overrides as Partial<JobRecord>), 'python3')).toBe(false);
    await warm().register(RUNNER, new Date());
    const job = await queuedJob(overrides as Partial<JobRecord>);
    await (await dispatcher()).dispatch();
    expect(runTasks()).toEqual([
      expect.objectContaining({ startedBy: job.job_id, clientToken: `${job.job_id}-1-0` }),
    ]);
    expect((await warm().read(RUNNER))?.state).toBe('idle');
  });

  it('fits a plain job of the kernel', () => {
    expect(fitsWarmRunner(jobRecord('job_x'), 'python3')).toBe(true);
  });
});

describe('the idle-runner gauge', () => {
  it('is published by the sweeper as WarmRunnersIdle, counting idle runners with a fresh heartbeat', async () => {
    const { handler: sweep } = await coldStart<typeof import('../../lambda/handlers/sweeper.ts')>(
      'lambda/handlers/sweeper.ts',
      stackEnv(table, db().endpoint, { NOTEBOOK_JOBS_WARM_KERNEL: 'python3' }),
    );
    await warm().register(RUNNER, new Date());
    await warm().register(`${RUNNER.slice(0, -1)}0`, new Date());
    await warm().register(`${RUNNER.slice(0, -1)}1`, new Date(Date.now() - 60_000)); // gone quiet
    const { lines } = await stdoutLines(() => sweep());
    const emf = lines.filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line));
    expect(emf).toEqual([
      expect.objectContaining({
        _aws: expect.objectContaining({
          CloudWatchMetrics: [
            {
              Namespace: 'NotebookJobs',
              Dimensions: [[]],
              Metrics: [
                { Name: 'JobsQueued', Unit: 'Count' },
                { Name: 'JobsRunning', Unit: 'Count' },
                { Name: 'WarmRunnersIdle', Unit: 'Count' },
              ],
            },
          ],
        }),
        WarmRunnersIdle: 2,
      }),
    ]);
  });
});
