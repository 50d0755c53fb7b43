/**
 * The container entry point (container/runner/main.ts) in AWS mode, as ECS starts it: a separate
 * process configured by NOTEBOOK_JOBS_* variables, reading its notebook from S3 and writing the
 * executed notebook and its HTML copy back (a small S3-compatible server here), keeping its job
 * in DynamoDB (dynalite), logging JSON lines to stdout for the awslogs driver, and telling a
 * user's cancel from a platform SIGTERM (Spot interruption) by asking the store. Real kernel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { parseLogLine } from '../../lambda/adapters/stdout-log-sink.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import type { JobRecord } from '../../lambda/core/job.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';
import { jobRecord } from '../helpers/jobs.ts';
import { startFakeS3, type FakeS3 } from '../helpers/fake-s3.ts';

const BUCKET = 'nbj-test-artifacts';
const TABLE = 'runner-aws';
const db = dynalite({ createTableMs: 0 });
const ids = new MonotonicJobIds();
const scratch = mkdtempSync(join(tmpdir(), 'notebook-jobs-runner-aws-'));
let endpoint: string;
let store: DynamoDbJobStore;
let s3: FakeS3;

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  endpoint = `http://127.0.0.1:${(db.address() as AddressInfo).port}`;
  const client = createDocumentClient({ endpoint });
  await createJobTable(client, TABLE);
  store = new DynamoDbJobStore({ client, tableName: TABLE });
  s3 = await startFakeS3();
});
afterAll(async () => {
  await s3?.close();
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(scratch, { recursive: true, force: true });
});

/** A running job whose input notebook is in the bucket, as the api Lambda leaves it before RunTask. */
async function runningJob(notebook: object): Promise<JobRecord> {
  const jobId = ids.jobId();
  s3.objects.set(`${BUCKET}/inputs/acme/${jobId}/nb.ipynb`, Buffer.from(JSON.stringify(notebook)));
  await store.create(
    jobRecord(jobId, {
      tenant: 'acme',
      notebook: { name: 'nb.ipynb', uri: `s3://${BUCKET}/inputs/acme/${jobId}/nb.ipynb` },
      output_uri: `s3://${BUCKET}/outputs/acme/${jobId}/nb.ipynb`,
      output_saved: false,
    }),
  );
  return store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: new Date().toISOString(),
    attempt: 1,
    runner_ref: `arn:aws:ecs:us-east-1:111122223333:task/nbj/${jobId.slice(-12).toLowerCase()}`,
  });
}

interface Runner {
  child: ChildProcess;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Starts the entry point the way the task definition does (environment only). */
function startRunner(jobId: string): Runner {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'container/runner/main.ts'], {
    env: {
      PATH: process.env.PATH,
      NOTEBOOK_JOBS_JOB_ID: jobId,
      NOTEBOOK_JOBS_TABLE: TABLE,
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: endpoint,
      NOTEBOOK_JOBS_ARTIFACTS: 's3',
      NOTEBOOK_JOBS_BUCKET: BUCKET,
      NOTEBOOK_JOBS_S3_ENDPOINT: s3.url,
      NOTEBOOK_JOBS_ENGINE: 'nbclient',
      NOTEBOOK_JOBS_PYTHON: TEST_PYTHON,
      NOTEBOOK_JOBS_DATA: scratch,
      NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS: '200',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, exited };
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const output = (jobId: string, name = 'nb.ipynb') =>
  s3.objects.get(`${BUCKET}/outputs/acme/${jobId}/${name}`);
const outputText = (jobId: string) =>
  JSON.parse(output(jobId)?.toString('utf8') ?? 'null')?.cells[0].outputs[0].text.join('');

describe('runner entry point in AWS mode', () => {
  it('runs a job from S3 to S3, logs JSON lines on stdout, saves an HTML copy, records the result', async () => {
    const job = await runningJob(makeNotebook([codeCell('print("hello from", 6 * 7)')]));
    const runner = startRunner(job.job_id);
    expect(await runner.exited).toBe(0);

    expect(await store.get(job.job_id)).toMatchObject({
      status: 'completed',
      output_saved: true,
      progress: { cells_executed: 1, percent: 100 },
    });
    expect(outputText(job.job_id)).toBe('hello from 42\n');
    expect(output(job.job_id, 'nb.html')?.toString('utf8')).toContain('hello from 42');

    const lines = runner.stdout().trim().split('\n');
    const parsed = lines.map(parseLogLine);
    expect(parsed.every((line) => line !== null)).toBe(true); // nothing else is printed to stdout
    expect(parsed).toContainEqual(expect.objectContaining({ stream: 'stdout', text: 'hello from 42' }));
    expect(parsed.at(-1)).toMatchObject({ stream: 'runner', text: 'job completed' });
  });

  it('fails the job on a SIGTERM the store does not explain (Spot interruption), keeping the partial notebook', async () => {
    const job = await runningJob(
      makeNotebook([codeCell('print("started", flush=True)'), codeCell('import time\ntime.sleep(120)')]),
    );
    const runner = startRunner(job.job_id);
    await waitUntil(async () => (await store.get(job.job_id))?.progress.cells_executed === 1, 'cell 0');
    runner.child.kill('SIGTERM');
    expect(await runner.exited).toBe(1);

    const ended = await store.get(job.job_id);
    expect(ended).toMatchObject({ status: 'failed', output_saved: true, error: { type: 'infrastructure' } });
    expect(ended?.error?.message).toMatch(/stopped \(SIGTERM\) without a cancel/);
    expect(outputText(job.job_id)).toBe('started\n');
  });

  it('keeps a cancel: SIGTERM after the store says cancelled ends the job as cancelled, notebook saved', async () => {
    const job = await runningJob(
      makeNotebook([codeCell('print("started", flush=True)'), codeCell('import time\ntime.sleep(120)')]),
    );
    const runner = startRunner(job.job_id);
    await waitUntil(async () => (await store.get(job.job_id))?.progress.cells_executed === 1, 'cell 0');
    // What JobService.cancel does before StopTask: the state first, then the signal.
    await store.update(job.job_id, ['running'], { status: 'cancelled', ended_at: new Date().toISOString() });
    runner.child.kill('SIGTERM');
    await runner.exited;

    expect(await store.get(job.job_id)).toMatchObject({
      status: 'cancelled',
      output_saved: true,
      error: null,
    });
    expect(outputText(job.job_id)).toBe('started\n');
    expect(runner.stdout()).toContain('job cancelled');
  });
});
