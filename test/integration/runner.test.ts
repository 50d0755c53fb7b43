/**
 * The runner on its own (no server): a real kernel, the DynamoDB store on dynalite wrapped to
 * count writes, file artifacts and logs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import {
  emptyProgress,
  inputKey,
  outputKey,
  type JobChanges,
  type JobRecord,
  type JobStatus,
} from '../../lambda/core/job.ts';
import { runJob } from '../../container/runner/runner.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';

const db = dynalite({ createTableMs: 0 });
const work = mkdtempSync(join(tmpdir(), 'notebook-jobs-runner-'));
const ids = new MonotonicJobIds();
let store: DynamoDbJobStore;
const artifacts = new FileArtifacts({ root: join(work, 'artifacts'), workspace: work });

/** Records every update the runner makes. */
class CountingStore extends DynamoDbJobStore {
  updates: JobChanges[] = [];
  override async update(jobId: string, from: readonly JobStatus[], changes: JobChanges): Promise<JobRecord> {
    this.updates.push(changes);
    return super.update(jobId, from, changes);
  }
}

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  const client = createDocumentClient({ endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}` });
  await createJobTable(client, 'runner');
  store = new CountingStore({ client, tableName: 'runner' });
});
afterAll(async () => {
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

async function runningJob(notebook: object, parameters: Record<string, unknown> = {}): Promise<JobRecord> {
  const jobId = ids.jobId();
  const now = new Date().toISOString();
  const job: JobRecord = {
    job_id: jobId,
    tenant: 'local',
    status: 'queued',
    stage: null,
    notebook: {
      name: 'nb.ipynb',
      uri: await artifacts.put(inputKey(jobId, 'nb.ipynb'), JSON.stringify(notebook)),
    },
    parameters,
    kernel: 'python3',
    language: 'python',
    progress: emptyProgress(0),
    created_at: now,
    started_at: null,
    updated_at: now,
    ended_at: null,
    timeout_seconds: 600,
    cell_timeout_seconds: null,
    deadline_at: null,
    priority: 0,
    tags: {},
    attempt: 0,
    cpu: null,
    memory: null,
    output_uri: artifacts.uriFor(outputKey(jobId, 'nb.ipynb')),
    error: null,
    runner_ref: null,
    idempotency_key: null,
    request_hash: null,
  };
  await store.create(job);
  return store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: now,
    attempt: 1,
  });
}

describe('runner', () => {
  it('writes progress at most every interval however many cells run, and every stage change', async () => {
    const cells = Array.from({ length: 400 }, (_, i) => codeCell(`v = ${i}`));
    const job = await runningJob(makeNotebook([...cells, codeCell('import time\ntime.sleep(0.6)')]));
    const counting = store as CountingStore;
    counting.updates = [];
    const logs = new FileLogSink(jobLogPath(join(work, 'logs'), job.job_id));
    const started = Date.now();
    const outcome = await runJob(job.job_id, {
      store,
      artifacts,
      logs,
      python: TEST_PYTHON,
      engine: 'nbclient',
      workDir: join(work, 'w', job.job_id),
      progressIntervalMs: 250,
    });
    await logs.close();
    const seconds = (Date.now() - started) / 1000;
    expect(outcome.status).toBe('completed');

    const stages = counting.updates.filter((u) => u.stage && u.status === undefined).map((u) => u.stage);
    expect([...new Set(stages)]).toEqual(['starting_kernel', 'executing', 'saving']);
    // 401 cells, but writes are bounded by time: at most one per interval plus the stage changes.
    const progressWrites = counting.updates.filter((u) => u.progress && u.status === undefined).length;
    expect(progressWrites).toBeLessThanOrEqual(Math.ceil(seconds / 0.25) + 4);
    expect(progressWrites).toBeLessThan(40);

    const final = await store.get(job.job_id);
    expect(final?.progress).toMatchObject({ cells_total: 401, cells_executed: 401, percent: 100 });
    expect(final?.stage).toBeNull();
    const saved = JSON.parse(readFileSync(new URL(final?.output_uri as string), 'utf8'));
    expect(saved.cells[399].execution_count).not.toBeNull();
  });

  it('does nothing for a job that is no longer running', async () => {
    const job = await runningJob(makeNotebook([codeCell('x = 1')]));
    await store.update(job.job_id, ['running'], { status: 'cancelled' });
    const logs = new FileLogSink(jobLogPath(join(work, 'logs'), job.job_id));
    const outcome = await runJob(job.job_id, {
      store,
      artifacts,
      logs,
      python: TEST_PYTHON,
      engine: 'nbclient',
      workDir: join(work, 'w', job.job_id),
    });
    await logs.close();
    expect(outcome.status).toBe('skipped');
    expect((await store.get(job.job_id))?.status).toBe('cancelled');
    expect(await artifacts.exists(job.output_uri)).toBe(false);
  });
});
