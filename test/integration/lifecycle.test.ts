/**
 * The lifecycle: each transition builder (what it writes, from which states), and applying them
 * through the real DynamoDB store on dynalite: a terminal state is never overwritten, the executed
 * notebook's flag only lands on an ended job, and each status change is published once.
 */
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { StateConflictError } from '../../lambda/core/errors.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import {
  TERMINAL_STATUSES,
  type JobError,
  type JobRecord,
  type JobStateChange,
  type JobStatus,
} from '../../lambda/core/job.ts';
import { Lifecycle, transitions, type Transition } from '../../lambda/core/lifecycle.ts';
import { jobRecord } from '../helpers/jobs.ts';

const NOW = new Date('2026-01-02T03:04:05.000Z');
const AT = NOW.toISOString();
const progress = { cells_total: 4, cells_executed: 2, percent: 50, current_cell: null };

/** What every ending of a running job by reconciliation writes. */
const failedWhileRunning = (error: JobError): Transition => ({
  from: ['running'],
  changes: { status: 'failed', stage: null, ended_at: AT, updated_at: AT, error },
});

describe('transition builders', () => {
  it('submitted: a queued job whose stored input is parameterized, with its cell count', () => {
    const {
      status,
      stage,
      progress: p,
      created_at,
      updated_at,
      attempt,
      output_saved,
      input_parameterized,
    } = transitions.submitted({ ...jobRecord('job_x') }, 3, NOW);
    expect({ status, stage, p, created_at, updated_at, attempt, output_saved, input_parameterized }).toEqual({
      status: 'queued',
      stage: null,
      p: { cells_total: 3, cells_executed: 0, percent: 0, current_cell: null },
      created_at: AT,
      updated_at: AT,
      attempt: 0,
      output_saved: false,
      input_parameterized: true,
    });
  });

  it.each<[string, Transition, Transition]>([
    [
      'started',
      transitions.started({ timeout_seconds: 60, attempt: 1 }, NOW),
      {
        from: ['queued'],
        changes: {
          status: 'running',
          stage: 'provisioning',
          started_at: AT,
          updated_at: AT,
          deadline_at: '2026-01-02T03:05:05.000Z',
          attempt: 2,
        },
      },
    ],
    [
      'runnerAssigned',
      transitions.runnerAssigned('pid:7'),
      { from: ['running'], changes: { runner_ref: 'pid:7' } },
    ],
    [
      'progress',
      transitions.progress('executing', progress, NOW),
      { from: ['running'], changes: { stage: 'executing', progress, updated_at: AT } },
    ],
    [
      'ended (sources from TRANSITIONS)',
      transitions.ended('failed', { type: 'cell_error', message: 'boom' }, NOW),
      {
        from: ['queued', 'running'],
        changes: {
          status: 'failed',
          stage: null,
          ended_at: AT,
          updated_at: AT,
          error: { type: 'cell_error', message: 'boom' },
        },
      },
    ],
    [
      'ended by the runner, with progress and the saved notebook in the same write',
      transitions.ended('completed', null, NOW, { from: ['running'], progress, outputSaved: true }),
      {
        from: ['running'],
        changes: {
          status: 'completed',
          stage: null,
          ended_at: AT,
          updated_at: AT,
          error: null,
          progress,
          output_saved: true,
        },
      },
    ],
    [
      'cancelled',
      transitions.cancelled('queued', NOW),
      {
        from: ['queued'],
        changes: { status: 'cancelled', stage: null, ended_at: AT, updated_at: AT, error: null },
      },
    ],
    [
      'runnerLost',
      transitions.runnerLost('exit code 137', NOW),
      failedWhileRunning({ type: 'infrastructure', message: 'exit code 137' }),
    ],
    [
      'launchFailed',
      transitions.launchFailed('no capacity', NOW),
      failedWhileRunning({ type: 'infrastructure', message: 'the job could not be started: no capacity' }),
    ],
    [
      'timedOut',
      transitions.timedOut({ timeout_seconds: 60 }, NOW),
      failedWhileRunning({
        type: 'timeout',
        message: 'the job ran past its timeout of 60 s and was stopped',
      }),
    ],
    ['outputSaved', transitions.outputSaved(), { from: TERMINAL_STATUSES, changes: { output_saved: true } }],
  ])('%s', (_name, built, expected) => {
    expect(built).toEqual(expected);
  });

  it('never starts from a terminal state', () => {
    const built = [
      transitions.started({ timeout_seconds: 1, attempt: 0 }, NOW),
      transitions.progress('executing', progress, NOW),
      transitions.runnerAssigned('x'),
      ...TERMINAL_STATUSES.map((status) => transitions.ended(status, null, NOW)),
      transitions.runnerLost('x', NOW),
    ];
    for (const { from } of built) expect(from.filter((s) => TERMINAL_STATUSES.includes(s))).toEqual([]);
  });

  it('refuses an ending that is not terminal, and sources that TRANSITIONS does not allow', () => {
    expect(() => transitions.ended('running', null, NOW)).toThrow('running is not an ending');
    expect(() => transitions.ended('completed', null, NOW, { from: ['queued'] })).toThrow(
      'no transition queued -> completed',
    );
    expect(() => transitions.cancelled('completed', NOW)).toThrow('no transition completed -> cancelled');
  });
});

describe('Lifecycle on the store', () => {
  const db = dynalite({ createTableMs: 0 });
  const ids = new MonotonicJobIds();
  let store: DynamoDbJobStore;
  let published: JobStateChange[];
  let lifecycle: Lifecycle;
  let table = 0;

  beforeAll(async () => {
    await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  });
  afterAll(async () => {
    await new Promise<void>((r) => db.close(() => r()));
  });
  beforeEach(async () => {
    const client = createDocumentClient({
      endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}`,
    });
    const name = `lifecycle-${++table}`;
    await createJobTable(client, name);
    store = new DynamoDbJobStore({ client, tableName: name });
    published = [];
    lifecycle = new Lifecycle({ store, events: { publish: async (change) => void published.push(change) } });
  });

  /** A job created through the lifecycle and moved to `status`. */
  async function jobIn(status: JobStatus): Promise<JobRecord> {
    const job = transitions.submitted(jobRecord(ids.jobId()), 2, NOW);
    await lifecycle.create(job);
    if (status === 'queued') return job;
    const running = await lifecycle.apply(job, transitions.started(job, NOW));
    if (status === 'running') return running;
    return lifecycle.apply(running, transitions.ended(status, null, NOW));
  }

  it('publishes each status change once, with the previous status; progress publishes nothing', async () => {
    const job = await jobIn('running');
    await lifecycle.apply(job, transitions.progress('executing', progress, NOW));
    await lifecycle.apply(job, transitions.ended('completed', null, NOW, { from: ['running'] }));
    expect(published.map((p) => [p.previous_status, p.status])).toEqual([
      [null, 'queued'],
      ['queued', 'running'],
      ['running', 'completed'],
    ]);
  });

  describe.each(TERMINAL_STATUSES)('a %s job', (status) => {
    it.each(TERMINAL_STATUSES)('is never overwritten as %s', async (other) => {
      const job = await jobIn(status);
      const before = await store.get(job.job_id);
      published = [];
      await expect(lifecycle.apply(job, transitions.ended(other, null, NOW))).rejects.toBeInstanceOf(
        StateConflictError,
      );
      expect(await lifecycle.applyIfCurrent(job, transitions.runnerLost('late', NOW))).toBeNull();
      expect(await lifecycle.applyIfCurrent(job, transitions.progress('saving', progress, NOW))).toBeNull();
      expect(await store.get(job.job_id)).toEqual(before);
      expect(published).toEqual([]);
    });

    it('takes the saved-notebook flag', async () => {
      const job = await jobIn(status);
      expect(await lifecycle.applyIfCurrent(job, transitions.outputSaved())).toMatchObject({
        status,
        output_saved: true,
      });
    });
  });

  it.each<JobStatus>(['queued', 'running'])('does not set output_saved on a %s job', async (status) => {
    const job = await jobIn(status);
    expect(await lifecycle.applyIfCurrent(job, transitions.outputSaved())).toBeNull();
    expect(await store.get(job.job_id)).toMatchObject({ status, output_saved: false });
  });

  it('cancels from the status it saw, and not once the job moved on', async () => {
    const queued = await jobIn('queued');
    await lifecycle.apply(queued, transitions.started(queued, NOW));
    // Seen queued, but it started meanwhile: the caller must decide again (stop its runner).
    const conflict = await lifecycle.apply(queued, transitions.cancelled('queued', NOW)).catch((e) => e);
    expect(conflict).toMatchObject({ current: { status: 'running', attempt: 1 } });
    // Deciding again on the job as it now is (as JobService.cancel does) works; the stale view of
    // it does not, even for the right status: it is another attempt now.
    await expect(lifecycle.apply(queued, transitions.cancelled('running', NOW))).rejects.toMatchObject({
      current: { status: 'running', attempt: 1 },
    });
    expect(
      await lifecycle.apply((conflict as StateConflictError).current, transitions.cancelled('running', NOW)),
    ).toMatchObject({ status: 'cancelled' });
  });

  it('requeues a running job as a new attempt, keeping its history, and moves it back into the queue', async () => {
    const queued = await jobIn('queued');
    const running = await lifecycle.apply(queued, transitions.started(queued, NOW));
    const later = new Date(NOW.getTime() + 60_000);
    const requeued = await lifecycle.apply(running, transitions.requeued(running, 'SpotInterruption', later));
    expect(requeued).toMatchObject({
      status: 'queued',
      attempt: 1,
      started_at: null,
      deadline_at: null,
      runner_ref: null,
      attempts: [
        {
          attempt: 1,
          started_at: NOW.toISOString(),
          ended_at: later.toISOString(),
          reason: 'SpotInterruption',
        },
      ],
    });
    expect((await store.listQueued(10)).map((j) => j.job_id)).toContain(queued.job_id);
    const again = await lifecycle.apply(requeued, transitions.started(requeued, later));
    expect(again).toMatchObject({ status: 'running', attempt: 2 });
    // The first attempt's writer is refused.
    await expect(
      lifecycle.apply(running, transitions.progress('executing', running.progress, later)),
    ).rejects.toBeInstanceOf(StateConflictError);
  });
});
