/**
 * The container entry point (container/runner/main.ts) in AWS mode, as ECS starts it: a separate
 * process configured by NOTEBOOK_JOBS_* variables, reading its notebook from S3 and writing the
 * executed notebook and its HTML copy back (a small S3-compatible server here), keeping its job
 * in DynamoDB (dynalite), logging JSON lines to stdout for the awslogs driver and as S3 log pages
 * the api's reader reads, and telling a
 * user's cancel from a platform SIGTERM (Spot interruption) by asking the store. Real kernel.
 * Every AWS call is made with the job-scoped session the runner gets from STS (a stand-in that
 * records the exact AssumeRole requests), never with the task's own credentials; the kernel gets no
 * AWS credentials, or only its tenant's notebook role when the tenant has one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { S3Client } from '@aws-sdk/client-s3';
import { parseLogLine } from '../../lambda/adapters/stdout-log-sink.ts';
import { S3LogPageReader } from '../../lambda/adapters/aws/s3-log-page-reader.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import type { JobRecord } from '../../lambda/core/job.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';
import { jobRecord } from '../helpers/jobs.ts';
import { startFakeS3, type FakeS3 } from '../helpers/fake-s3.ts';
import { startFakeAws, startRecordingProxy, type FakeAws } from '../helpers/fake-aws.ts';
import {
  runnerSessionPolicy,
  notebookBrokerPolicy,
  warmSessionPolicy,
} from '../../container/runner/job-credentials.ts';
import { DynamoDbTenantSettings } from '../../lambda/adapters/dynamodb/tenant-settings.ts';
import { DynamoDbWarmRunners, warmPartitionKey } from '../../lambda/adapters/dynamodb/warm-runners.ts';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { createServer, type Server } from 'node:http';

const BUCKET = 'nbj-test-artifacts';
const TABLE = 'runner-aws';
const db = dynalite({ createTableMs: 0 });
const ids = new MonotonicJobIds();
const scratch = mkdtempSync(join(tmpdir(), 'notebook-jobs-runner-aws-'));
let endpoint: string;
let store: DynamoDbJobStore;
let s3: FakeS3;
let aws: FakeAws;
let dynamo: Awaited<ReturnType<typeof startRecordingProxy>>;

const TASK_KEY = 'AKIAIOSFODNN7EXAMPLE'; // the task role's credentials: used for STS only
const RUNNER_ROLE = 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole';
const NOTEBOOK_ROLE = 'arn:aws:iam::444455556666:role/globex-notebooks';
/** Which session an AssumeRole call opens, by what it asks for. */
function sessionKey(params: Record<string, string>): string {
  if (params.RoleArn === NOTEBOOK_ROLE) return 'ASIANOTEBOOK';
  if (params.Policy?.includes('WARM#')) return 'ASIAWARM';
  return params.Policy?.includes('sts:AssumeRole') ? 'ASIABROKER' : 'ASIAJOBDATA';
}

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  endpoint = `http://127.0.0.1:${(db.address() as AddressInfo).port}`;
  const client = createDocumentClient({ endpoint });
  await createJobTable(client, TABLE);
  store = new DynamoDbJobStore({ client, tableName: TABLE });
  await new DynamoDbTenantSettings({ client, tableName: TABLE }).setNotebookRole('globex', NOTEBOOK_ROLE);
  s3 = await startFakeS3();
  aws = await startFakeAws(sessionKey);
  dynamo = await startRecordingProxy(endpoint);
});
afterAll(async () => {
  await s3?.close();
  await aws?.close();
  await dynamo?.close();
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(scratch, { recursive: true, force: true });
});

/**
 * A running job whose input notebook is in the bucket, as the api Lambda leaves it before RunTask
 * (with its task recorded as the runner), or as the dispatcher leaves it before a warm hand-off
 * (`runner: false`).
 */
async function runningJob(notebook: object, tenant = 'acme', { runner = true } = {}): Promise<JobRecord> {
  const jobId = ids.jobId();
  s3.objects.set(`${BUCKET}/inputs/${tenant}/${jobId}/nb.ipynb`, Buffer.from(JSON.stringify(notebook)));
  await store.create(
    jobRecord(jobId, {
      tenant,
      notebook: { name: 'nb.ipynb', uri: `s3://${BUCKET}/inputs/${tenant}/${jobId}/nb.ipynb` },
      output_uri: `s3://${BUCKET}/outputs/${tenant}/${jobId}/nb.ipynb`,
      output_saved: false,
    }),
  );
  return store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: new Date().toISOString(),
    attempt: 1,
    ...(runner && {
      runner_ref: `arn:aws:ecs:us-east-1:111122223333:task/nbj/${jobId.slice(-12).toLowerCase()}`,
    }),
  });
}

interface Runner {
  child: ChildProcess;
  stdout: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts the entry point the way the task definition and RunTask do (environment only); with
 * `warm`, the way the warm runner service does: no job, the pool's kernel and the task metadata
 * endpoint in the environment, and the image's engine setting (papermill).
 */
function startRunner(jobId: string, tenant = 'acme', warm?: { metadataUri: string }): Runner {
  let out = '';
  const job = warm
    ? {
        NOTEBOOK_JOBS_WARM_KERNEL: 'python3',
        ECS_CONTAINER_METADATA_URI_V4: warm.metadataUri,
        ECS_AGENT_URI: warm.metadataUri.replace('/v4/abc', '/agent'),
        NOTEBOOK_JOBS_ENGINE: 'papermill',
      }
    : { NOTEBOOK_JOBS_JOB_ID: jobId, NOTEBOOK_JOBS_TENANT: tenant, NOTEBOOK_JOBS_ENGINE: 'nbclient' };
  const child = spawn(process.execPath, ['--import', 'tsx', 'container/runner/main.ts'], {
    env: {
      PATH: process.env.PATH,
      NOTEBOOK_JOBS_TABLE: TABLE,
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: dynamo.url,
      NOTEBOOK_JOBS_ARTIFACTS: 's3',
      NOTEBOOK_JOBS_BUCKET: BUCKET,
      NOTEBOOK_JOBS_S3_ENDPOINT: s3.url,
      NOTEBOOK_JOBS_EVENT_BUS: 'default',
      NOTEBOOK_JOBS_RUNNER_ROLE_ARN: RUNNER_ROLE,
      ...job,
      AWS_ENDPOINT_URL_STS: aws.url,
      AWS_ENDPOINT_URL_EVENTBRIDGE: aws.url,
      NOTEBOOK_JOBS_PYTHON: TEST_PYTHON,
      NOTEBOOK_JOBS_DATA: scratch,
      NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS: '200',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: TASK_KEY,
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

const output = (jobId: string, name = 'nb.ipynb', tenant = 'acme') =>
  s3.objects.get(`${BUCKET}/outputs/${tenant}/${jobId}/${name}`);
const outputText = (jobId: string, cell = 0, tenant = 'acme') =>
  JSON.parse(output(jobId, 'nb.ipynb', tenant)?.toString('utf8') ?? 'null')?.cells[cell].outputs[0].text.join(
    '',
  );

/** The api Lambdas' log reader, against the S3 stand-in. */
const pageReader = () =>
  new S3LogPageReader(
    new S3Client({
      region: 'us-east-1',
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIAAPILAMBDA', secretAccessKey: 'x' },
    }),
    { bucket: BUCKET },
  );

/** Requests of one job to the S3 stand-in. */
const s3RequestsOf = (jobId: string) => s3.requests.filter((r) => r.path.includes(jobId));
/** What the kernel sees of AWS: its AWS_* variables, and the credentials file they name (if any). */
const AWS_PROBE = [
  'import os, json',
  "aws = {k: v for k, v in os.environ.items() if k.startswith('AWS')}",
  "path = aws.get('AWS_SHARED_CREDENTIALS_FILE')",
  "print(json.dumps({'env': aws, 'file': open(path).read() if path else None, 'home_aws': os.path.exists(os.path.expanduser('~/.aws'))}))",
].join('\n');

describe('runner entry point in AWS mode', () => {
  it('runs a job from S3 to S3, logs JSON lines on stdout, saves an HTML copy, records the result', async () => {
    const job = await runningJob(makeNotebook([codeCell('print("hello from", 6 * 7)'), codeCell(AWS_PROBE)]));
    const runner = startRunner(job.job_id);
    expect(await runner.exited).toBe(0);

    // One STS call, with the task's credentials, for a session naming only this job.
    const calls = aws.assumeRoleCalls.filter((call) => call.params.RoleSessionName === job.job_id);
    expect(calls).toEqual([
      {
        signedBy: TASK_KEY,
        params: {
          Action: 'AssumeRole',
          Version: '2011-06-15',
          RoleArn: RUNNER_ROLE,
          RoleSessionName: job.job_id,
          DurationSeconds: '3600',
          Policy: JSON.stringify(
            runnerSessionPolicy({
              runnerRoleArn: RUNNER_ROLE,
              region: 'us-east-1',
              table: TABLE,
              bucket: BUCKET,
              eventBus: 'default',
              jobId: job.job_id,
              tenant: 'acme',
            }),
          ),
        },
      },
    ]);
    // Everything else was signed with that session: S3, DynamoDB, EventBridge.
    const logPages = `${BUCKET}/outputs/acme/${job.job_id}/logs/`;
    const isPage = (r: { path: string }) => r.path.startsWith(logPages);
    expect(
      s3RequestsOf(job.job_id)
        .filter((r) => !isPage(r))
        .map((r) => [r.method, r.path, r.signedBy]),
    ).toEqual([
      ['GET', `${BUCKET}/inputs/acme/${job.job_id}/nb.ipynb`, 'ASIAJOBDATA'],
      ['PUT', `${BUCKET}/outputs/acme/${job.job_id}/nb.ipynb`, 'ASIAJOBDATA'],
      ['PUT', `${BUCKET}/outputs/acme/${job.job_id}/nb.html`, 'ASIAJOBDATA'],
      ['PUT', `${BUCKET}/outputs/acme/${job.job_id}/files.json`, 'ASIAJOBDATA'],
    ]);
    // Its log pages: written (the open page rewritten as it grows) in its own output folder, with
    // the same session, and read back by the api's reader exactly as stdout carried them.
    const pageWrites = s3RequestsOf(job.job_id).filter(isPage);
    expect(new Set(pageWrites.map((r) => [r.method, r.path, r.signedBy].join(' ')))).toEqual(
      new Set([`PUT ${logPages}998-9999999999.jsonl ASIAJOBDATA`]),
    );
    expect(new Set(dynamo.signers)).toEqual(new Set(['ASIAJOBDATA']));
    const published = aws.putEvents.filter((call) =>
      call.entries[0]?.Detail?.toString().includes(job.job_id),
    );
    expect(published).toHaveLength(1);
    expect(published[0]).toMatchObject({
      signedBy: 'ASIAJOBDATA',
      entries: [
        { Source: 'notebook-jobs', DetailType: 'Notebook Job State Change', EventBusName: 'default' },
      ],
    });
    expect(JSON.parse(String(published[0]?.entries[0]?.Detail))).toMatchObject({
      job_id: job.job_id,
      status: 'completed',
    });
    // No notebook role for acme: the kernel has no AWS variable, no credentials file, no ~/.aws.
    expect(JSON.parse(outputText(job.job_id, 1))).toEqual({ env: {}, file: null, home_aws: false });
    expect(runner.stdout()).toContain('no notebook role for this tenant: the kernel has no AWS credentials');

    expect(await store.get(job.job_id)).toMatchObject({
      status: 'completed',
      output_saved: true,
      progress: { cells_executed: 2, percent: 100 },
    });
    expect(outputText(job.job_id)).toBe('hello from 42\n');
    expect(output(job.job_id, 'nb.html')?.toString('utf8')).toContain('hello from 42');

    const lines = runner.stdout().trim().split('\n');
    const parsed = lines.map(parseLogLine);
    expect(parsed.every((line) => line !== null)).toBe(true); // nothing else is printed to stdout
    expect(parsed).toContainEqual(expect.objectContaining({ stream: 'stdout', text: 'hello from 42' }));
    expect(parsed.at(-1)).toMatchObject({ stream: 'runner', text: 'job completed' });
    const ended = (await store.get(job.job_id)) as JobRecord;
    const read = await pageReader().read(ended, { limit: 5000 });
    expect(read).toMatchObject({ at_end: true });
    expect(read.lines).toEqual(parsed);
    expect((await pageReader().read(ended, { limit: 5000, tail: 1 })).lines).toEqual([parsed.at(-1)]);
  });

  it('cuts a huge printed line to 64 KiB in the log pages, marked truncated, as in local mode', async () => {
    const job = await runningJob(makeNotebook([codeCell("print('z' * 200_000)\nprint('after')")]));
    const runner = startRunner(job.job_id);
    expect(await runner.exited).toBe(0);
    const read = await pageReader().read((await store.get(job.job_id)) as JobRecord, { limit: 5000 });
    const huge = read.lines.find((line) => line.text.startsWith('zzz'));
    expect(huge).toMatchObject({ stream: 'stdout', truncated: true });
    expect(huge?.text).toBe('z'.repeat(64 * 1024));
    expect(read.lines).toContainEqual(expect.objectContaining({ stream: 'stdout', text: 'after' }));
  });

  it("gives the kernel its tenant's notebook role, and only that, through a credentials file", async () => {
    const job = await runningJob(makeNotebook([codeCell(AWS_PROBE)]), 'globex');
    const runner = startRunner(job.job_id, 'globex');
    expect(await runner.exited).toBe(0);
    expect(await store.get(job.job_id)).toMatchObject({ status: 'completed', output_saved: true });

    const calls = aws.assumeRoleCalls.filter((call) => call.params.RoleSessionName === job.job_id);
    expect(calls.map((call) => [call.signedBy, call.params.RoleArn, call.params.ExternalId])).toEqual([
      [TASK_KEY, RUNNER_ROLE, undefined], // the data session
      [TASK_KEY, RUNNER_ROLE, undefined], // the broker session
      ['ASIABROKER', NOTEBOOK_ROLE, 'notebook-jobs:globex'],
    ]);
    expect(calls[1]?.params.Policy).toBe(JSON.stringify(notebookBrokerPolicy(NOTEBOOK_ROLE)));
    expect(calls[2]?.params).toEqual({
      Action: 'AssumeRole',
      Version: '2011-06-15',
      RoleArn: NOTEBOOK_ROLE,
      RoleSessionName: job.job_id,
      DurationSeconds: '3600',
      ExternalId: 'notebook-jobs:globex',
    });

    const seen = JSON.parse(outputText(job.job_id, 0, 'globex')) as {
      env: Record<string, string>;
      file: string;
    };
    expect(seen.env).toEqual({
      AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'work', `${job.job_id}.aws`, 'credentials'),
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
    });
    expect(seen.file).toBe(
      '[default]\naws_access_key_id = ASIANOTEBOOK\naws_secret_access_key = secret-ASIANOTEBOOK\naws_session_token = token-ASIANOTEBOOK\n',
    );
    // The file is gone with the job.
    expect(existsSync(join(scratch, 'work', `${job.job_id}.aws`))).toBe(false);
  });

  it('leaves a job to reconciliation on a SIGTERM the store does not explain (Spot interruption), keeping the partial notebook', async () => {
    const job = await runningJob(
      makeNotebook([codeCell('print("started", flush=True)'), codeCell('import time\ntime.sleep(120)')]),
    );
    const runner = startRunner(job.job_id);
    await waitUntil(async () => (await store.get(job.job_id))?.progress.cells_executed === 1, 'cell 0');
    runner.child.kill('SIGTERM');
    expect(await runner.exited).toBe(0);

    // The task-events handler requeues it (or fails it) from the task's stop code; the runner
    // writes no ending of its own.
    expect(await store.get(job.job_id)).toMatchObject({ status: 'running', error: null });
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

describe('warm runner in AWS mode (a task of the warm runner service)', () => {
  const TASK_ARN = 'arn:aws:ecs:us-east-1:111122223333:task/nbj/0123456789abcdef0123456789abcdef';
  let metadata: Server;
  let metadataUri: string;
  const protections: unknown[] = [];
  let dispatcher: DynamoDbWarmRunners;
  let documents: ReturnType<typeof createDocumentClient>;
  beforeAll(async () => {
    // The ECS task metadata endpoint (v4) a Fargate container finds in ECS_CONTAINER_METADATA_URI_V4.
    // ... and the agent endpoint (ECS_AGENT_URI) a warm task asks for scale-in protection.
    metadata = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (req.method === 'PUT' && req.url === '/agent/task-protection/v1/state') {
          protections.push(JSON.parse(body) as unknown);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ protection: { ProtectionEnabled: true, TaskArn: TASK_ARN } }));
          return;
        }
        res.writeHead(req.url === '/v4/abc/task' ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ TaskARN: TASK_ARN, Cluster: 'nbj' }));
      });
    });
    await new Promise<void>((r) => metadata.listen(0, '127.0.0.1', () => r()));
    metadataUri = `http://127.0.0.1:${(metadata.address() as AddressInfo).port}/v4/abc`;
    documents = createDocumentClient({ endpoint });
    dispatcher = new DynamoDbWarmRunners({ client: documents, tableName: TABLE, kernel: 'python3' });
  });
  afterAll(() => new Promise<void>((r) => metadata.close(() => r())));

  /** A started job without a runner, as the dispatcher leaves it before its hand-off. */
  const startedJob = (notebook: object) => runningJob(notebook, 'acme', { runner: false });
  const idle = async () => (await dispatcher.read(TASK_ARN))?.state === 'idle';

  it('starts its kernel, registers idle, claims an offered job with that job session and runs it warm', async () => {
    const runner = startRunner('', 'acme', { metadataUri });
    await waitUntil(idle, 'the warm runner to register');
    const job = await startedJob(makeNotebook([codeCell('print("warm hello", 6 * 7)')]));
    const signersBefore = dynamo.signers.length;
    protections.length = 0;
    expect(await dispatcher.offer(job, new Date(Date.now() + 5000), new Date())).toBe(TASK_ARN);
    expect(await runner.exited).toBe(0);
    // Protected from scale-in once it had the job (not while idle).
    expect(protections).toEqual([{ ProtectionEnabled: true, ExpiresInMinutes: 2880 }]);

    expect(await store.get(job.job_id)).toMatchObject({
      status: 'completed',
      runner_ref: TASK_ARN,
      output_saved: true,
    });
    expect(outputText(job.job_id)).toBe('warm hello 42\n');
    expect(runner.stdout()).toContain('using a warm kernel');
    expect(await dispatcher.read(TASK_ARN)).toBeNull(); // deregistered once it had its job
    // Waiting: a session allowed only the warm runner items; the job: its own data session.
    const warmCalls = aws.assumeRoleCalls.filter(
      (call) => call.params.RoleSessionName === 'warm-0123456789abcdef0123456789abcdef',
    );
    expect(warmCalls).toEqual([
      {
        signedBy: TASK_KEY,
        params: {
          Action: 'AssumeRole',
          Version: '2011-06-15',
          RoleArn: RUNNER_ROLE,
          RoleSessionName: 'warm-0123456789abcdef0123456789abcdef',
          DurationSeconds: '3600',
          Policy: JSON.stringify(
            warmSessionPolicy({
              runnerRoleArn: RUNNER_ROLE,
              region: 'us-east-1',
              table: TABLE,
              kernel: 'python3',
              sessionName: 'warm-0123456789abcdef0123456789abcdef',
            }),
          ),
        },
      },
    ]);
    const jobCalls = aws.assumeRoleCalls.filter((call) => call.params.RoleSessionName === job.job_id);
    expect(jobCalls.map((call) => [call.signedBy, call.params.Policy])).toEqual([
      [
        TASK_KEY,
        JSON.stringify(
          runnerSessionPolicy({
            runnerRoleArn: RUNNER_ROLE,
            region: 'us-east-1',
            table: TABLE,
            bucket: BUCKET,
            eventBus: 'default',
            jobId: job.job_id,
            tenant: 'acme',
          }),
        ),
      ],
    ]);
    expect(new Set(dynamo.signers.slice(signersBefore))).toEqual(new Set(['ASIAWARM', 'ASIAJOBDATA']));
    expect(s3RequestsOf(job.job_id).every((r) => r.signedBy === 'ASIAJOBDATA')).toBe(true);
  });

  it('never runs a job cancelled while offered to it: the claim fails, it goes idle and takes the next job', async () => {
    const runner = startRunner('', 'acme', { metadataUri });
    await waitUntil(idle, 'the warm runner to register');
    // Offered, then cancelled before the runner's next poll: the offer still names the job.
    const cancelled = await startedJob(makeNotebook([codeCell('print("must not run")')]));
    await store.update(cancelled.job_id, ['running'], {
      status: 'cancelled',
      ended_at: new Date().toISOString(),
    });
    await documents.send(
      new UpdateCommand({
        TableName: TABLE,
        Key: { pk: warmPartitionKey('python3'), sk: TASK_ARN },
        UpdateExpression: 'SET #s = :o, job_id = :j, tenant = :t, attempt = :a, offer_deadline = :d',
        ExpressionAttributeNames: { '#s': 'state' },
        ExpressionAttributeValues: {
          ':o': 'offered',
          ':j': cancelled.job_id,
          ':t': 'acme',
          ':a': 1,
          ':d': Date.now() + 5000,
        },
      }),
    );
    await waitUntil(idle, 'the runner to give the offer up');
    expect(runner.stdout()).toContain(`job ${cancelled.job_id} was no longer ours to take`);
    expect(await store.get(cancelled.job_id)).toMatchObject({ status: 'cancelled', runner_ref: null });
    expect(s3RequestsOf(cancelled.job_id)).toEqual([]); // its notebook was never even read

    const next = await startedJob(makeNotebook([codeCell('print("next")')]));
    expect(await dispatcher.offer(next, new Date(Date.now() + 5000), new Date())).toBe(TASK_ARN);
    expect(await runner.exited).toBe(0);
    expect(await store.get(next.job_id)).toMatchObject({ status: 'completed', runner_ref: TASK_ARN });
    expect(await store.get(cancelled.job_id)).toMatchObject({ status: 'cancelled', output_saved: false });
  });

  it('deregisters and exits 0 on a SIGTERM while idle (scale-in, deploy)', async () => {
    const runner = startRunner('', 'acme', { metadataUri });
    await waitUntil(idle, 'the warm runner to register');
    protections.length = 0;
    runner.child.kill('SIGTERM');
    expect(await runner.exited).toBe(0);
    expect(await dispatcher.read(TASK_ARN)).toBeNull();
    expect(protections).toEqual([]);
  });
});
