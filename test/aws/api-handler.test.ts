/**
 * The api Lambda driven by REST proxy events shaped like API Gateway's (fixtures under
 * test/fixtures/aws-events), with the job table in dynalite and ECS/S3/CloudWatch/EventBridge/
 * Secrets Manager mocked: the exact commands sent are asserted.
 */
import { RunTaskCommand } from '@aws-sdk/client-ecs';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3LogPageSink } from '../../lambda/adapters/aws/s3-log-page-sink.ts';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  BUCKET,
  CURSOR_SECRET_ARN,
  dynaliteForThisFile,
  REGION,
  coldStart,
  createBody,
  expectedRunTask,
  fixture,
  handlerLogger,
  mockAws,
  proxyEvent,
  stackEnv,
  withTextBody,
} from './aws-harness.ts';
import { sizedBody } from '../helpers/sized-body.ts';
import {
  LAMBDA_PAYLOAD_BYTES,
  MAX_INLINE_NOTEBOOK_BYTES,
  MAX_REQUEST_BODY_BYTES,
} from '../../lambda/core/settings.ts';

type ApiModule = typeof import('../../lambda/handlers/api.ts');

const db = dynaliteForThisFile();
const aws = mockAws();
let table: string;
let api: ApiModule['handler'];

beforeEach(async () => {
  aws.reset();
  table = await db().newTable();
  ({ handler: api } = await coldStart<ApiModule>('lambda/handlers/api.ts', stackEnv(table, db().endpoint)));
});

function body(result: APIGatewayProxyResult): any {
  expect(result.isBase64Encoded).toBe(false);
  return JSON.parse(result.body);
}

async function createJob(tenant = 'acme'): Promise<any> {
  const result = await api(proxyEvent({ method: 'POST', path: '/v1/jobs', body: createBody(), tenant }));
  expect(result.statusCode, result.body).toBe(201);
  return body(result);
}

describe('POST /v1/jobs with the base64 fixture, then GET', () => {
  it('stores the notebook in S3, launches the task with the exact RunTask input, and reads the job back', async () => {
    const event = fixture<APIGatewayProxyEvent>('apigw-post-jobs-base64.json');

    const created = await api(event);

    expect(created.statusCode, created.body).toBe(201);
    const job = body(created);
    expect(job).toMatchObject({
      status: 'running',
      stage: 'provisioning',
      kernel: 'python3',
      parameters: { name: 'Ada' },
      tags: { team: 'ml' },
      notebook: { name: 'hello.ipynb', uri: `s3://${BUCKET}/inputs/acme/${job.job_id}/hello.ipynb` },
      attempt: 1,
    });
    expect(aws.secrets.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input)).toEqual([
      { SecretId: CURSOR_SECRET_ARN },
    ]);
    const puts = aws.s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
    expect(puts).toHaveLength(1);
    expect(puts[0]).toMatchObject({
      Bucket: BUCKET,
      Key: `inputs/acme/${job.job_id}/hello.ipynb`,
      ContentType: 'application/x-ipynb+json',
    });
    const decoded = JSON.parse(Buffer.from(event.body as string, 'base64').toString('utf8'));
    // Stored as it will run: the submitted cells plus the injected parameters, nothing else changed.
    const runnable = JSON.parse(puts[0]?.Body as string);
    const injected = runnable.cells.filter((c: any) => c.metadata.tags?.includes('injected-parameters'));
    expect(injected.map((c: any) => [c.source].flat().join(''))).toEqual([
      expect.stringContaining('name = "Ada"'),
    ]);
    expect(runnable.cells.filter((c: any) => !injected.includes(c))).toEqual(decoded.notebook.content.cells);
    expect(aws.ecs.commandCalls(RunTaskCommand).map((c) => c.args[0].input)).toEqual([
      expectedRunTask(job.job_id, 'acme'),
    ]);
    // Published: created (queued), then started (running).
    const published = aws.events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries?.[0]);
    expect(
      published.map((e) => [e?.DetailType, e?.EventBusName, JSON.parse(e?.Detail ?? '{}').status]),
    ).toEqual([
      ['Notebook Job State Change', 'default', 'queued'],
      ['Notebook Job State Change', 'default', 'running'],
    ]);
    const stored = await db().store(table).get(job.job_id);
    expect(stored).toMatchObject({
      tenant: 'acme',
      runner_ref: aws.tasks.get(job.job_id),
      idempotency_key: 'nightly-2026-11-23',
      input_parameterized: true,
    });

    const got = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}` }));
    expect(got.statusCode).toBe(200);
    expect(body(got)).toMatchObject({ job_id: job.job_id, status: 'running', notebook: job.notebook });

    // The Idempotency-Key header made it through the translation: a replay is the same job.
    const replay = await api(fixture<APIGatewayProxyEvent>('apigw-post-jobs-base64.json'));
    expect(body(replay).job_id).toBe(job.job_id);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('reads the cursor secret once per cold start, not per request', async () => {
    await createJob();
    await createJob();
    await api(proxyEvent({ path: '/v1/jobs' }));
    expect(aws.secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it("takes ssm: secret references under the tenant's own path, storing only the reference", async () => {
    const created = await api(
      proxyEvent({
        method: 'POST',
        path: '/v1/jobs',
        body: createBody('hello.ipynb', { secrets: { API_KEY: 'ssm:/notebook-jobs/acme/api/key' } }),
      }),
    );
    expect(created.statusCode, created.body).toBe(201);
    const job = body(created);
    expect(job.secrets).toEqual({ API_KEY: 'ssm:/notebook-jobs/acme/api/key' });
    expect((await db().store(table).get(job.job_id))?.secrets).toEqual({
      API_KEY: 'ssm:/notebook-jobs/acme/api/key',
    });
  });

  it.each([
    ["another tenant's parameter", 'ssm:/notebook-jobs/globex/api/key', /only its own parameters/],
    ['a parameter outside notebook-jobs/', 'ssm:/prod/db/password', /only its own parameters/],
    ['a path climbing out', 'ssm:/notebook-jobs/acme/../globex/key', /only its own parameters/],
  ])('answers 400 for an ssm: reference to %s, and creates nothing', async (_what, reference, message) => {
    const result = await api(
      proxyEvent({
        method: 'POST',
        path: '/v1/jobs',
        body: createBody('hello.ipynb', { secrets: { API_KEY: reference } }),
      }),
    );
    expect(result.statusCode).toBe(400);
    expect(body(result).error.message).toMatch(message);
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });

  it('answers 400 naming the problem for a bad body, and creates nothing', async () => {
    const result = await api(
      proxyEvent({ method: 'POST', path: '/v1/jobs', body: { notebook: { content: {} } } }),
    );
    expect(result.statusCode).toBe(400);
    expect(body(result).error.code).toBe('invalid_request');
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });
});

describe('tenants and scopes', () => {
  it("never shows a tenant another tenant's job (404, as if it did not exist)", async () => {
    const job = await createJob('acme');

    const other = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}`, tenant: 'globex' }));
    const list = await api(proxyEvent({ path: '/v1/jobs', tenant: 'globex' }));

    expect(other.statusCode).toBe(404);
    expect(body(other).error).toMatchObject({ code: 'not_found', message: `job ${job.job_id} not found` });
    expect(body(list).jobs).toEqual([]);
    const own = await api(proxyEvent({ path: '/v1/jobs', tenant: 'acme' }));
    expect(body(own).jobs.map((j: any) => j.job_id)).toEqual([job.job_id]);
  });

  it("never reads another tenant's notebooks by URI: not its outputs, inputs or uploads (inspect and create)", async () => {
    // globex's executed notebook and upload, at the URIs globex's own job and upload show.
    const victim = await createJob('globex');
    const outputUri = `s3://${BUCKET}/outputs/globex/${victim.job_id}/hello.ipynb`;
    aws.objects.set(outputUri.slice(5), Buffer.from(JSON.stringify(createBody().notebook.content)));
    const upload = body(
      await api(
        proxyEvent({ method: 'POST', path: '/v1/uploads', body: { name: 'b.ipynb' }, tenant: 'globex' }),
      ),
    );
    expect(upload.notebook_uri).toMatch(new RegExp(`^s3://${BUCKET}/uploads/globex/[0-9a-f]{32}/b\\.ipynb$`));
    aws.objects.set(upload.notebook_uri.slice(5), Buffer.from(JSON.stringify(createBody().notebook.content)));
    // globex itself may submit its upload.
    const own = await api(
      proxyEvent({
        method: 'POST',
        path: '/v1/notebooks/inspect',
        body: { notebook: { uri: upload.notebook_uri } },
        tenant: 'globex',
      }),
    );
    expect(own.statusCode, own.body).toBe(200);
    aws.reset();

    for (const uri of [outputUri, victim.notebook.uri, upload.notebook_uri]) {
      for (const path of ['/v1/notebooks/inspect', '/v1/jobs']) {
        const result = await api(
          proxyEvent({ method: 'POST', path, body: { notebook: { uri } }, tenant: 'acme' }),
        );
        expect([400, 404], `${path} ${uri}: ${result.body}`).toContain(result.statusCode);
        expect(result.body).not.toContain('parameters'); // nothing of the notebook comes back
      }
    }
    // Nothing was read or written, no job was created for acme.
    expect(aws.s3.calls()).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
    expect(body(await api(proxyEvent({ path: '/v1/jobs', tenant: 'acme' }))).jobs).toEqual([]);
  });

  it('refuses a POST from a read-only token with 403 in the house format, and sends nothing', async () => {
    const result = await api(
      proxyEvent({ method: 'POST', path: '/v1/jobs', body: createBody(), scopes: 'read' }),
    );

    expect(result.statusCode).toBe(403);
    expect(body(result)).toEqual({
      error: {
        code: 'forbidden',
        message: expect.stringContaining('lacks the "write" scope that POST /v1/jobs needs'),
        details: { required_scope: 'write' },
      },
    });
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });

  it('lets a read-only token read', async () => {
    const job = await createJob();
    const result = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}`, scopes: 'read' }));
    expect(result.statusCode).toBe(200);
  });

  it('answers 401 when no authorizer ran, except on the open health route', async () => {
    const jobs = await api(proxyEvent({ path: '/v1/jobs', tenant: null }));
    const openapi = await api(proxyEvent({ path: '/openapi.json', tenant: null }));
    const health = await api(proxyEvent({ path: '/v1/health', tenant: null }));

    expect(jobs.statusCode).toBe(401);
    expect(openapi.statusCode).toBe(401); // as the stack and the local server: the token is needed
    expect(body(jobs).error.code).toBe('unauthorized');
    expect(health.statusCode).toBe(200);
    expect(body(health)).toMatchObject({
      status: 'ok',
      mode: 'aws',
      kernels: ['python3', '.net-csharp', '.net-fsharp', '.net-pwsh'],
      max_concurrent_jobs: 5,
    });
  });
});

describe('the executed notebook', () => {
  it('is handed out as a short-lived presigned S3 URL (302), and so is the HTML copy the runner saved', async () => {
    const job = await createJob();
    const store = db().store(table);
    const outputKey = `outputs/acme/${job.job_id}/hello.ipynb`;
    aws.objects.set(`${BUCKET}/${outputKey}`, Buffer.from('{"cells": []}'));
    await store.update(job.job_id, ['running'], {
      status: 'completed',
      ended_at: new Date().toISOString(),
      output_saved: true,
    });

    const shown = body(await api(proxyEvent({ path: `/v1/jobs/${job.job_id}` })));
    const signed = new URL(shown.output.download_url);
    expect(signed.host).toBe(`${BUCKET}.s3.us-west-2.amazonaws.com`);
    expect(signed.pathname).toBe(`/${outputKey}`);
    expect(signed.searchParams.get('X-Amz-Expires')).toBe('900');

    const output = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}/output` }));
    expect(output.statusCode).toBe(302);
    expect(new URL(output.headers?.location as string).pathname).toBe(`/${outputKey}`);

    const noHtml = await api(
      proxyEvent({ path: `/v1/jobs/${job.job_id}/output`, query: { format: ['html'] } }),
    );
    expect(noHtml.statusCode).toBe(400);
    expect(body(noHtml).error.message).toMatch(/no HTML copy of this notebook was saved/);

    aws.objects.set(`${BUCKET}/outputs/acme/${job.job_id}/hello.html`, Buffer.from('<html></html>'));
    const html = await api(
      proxyEvent({ path: `/v1/jobs/${job.job_id}/output`, query: { format: ['html'] } }),
    );
    expect(html.statusCode).toBe(302);
    expect(new URL(html.headers?.location as string).pathname).toBe(`/outputs/acme/${job.job_id}/hello.html`);
  });
});

describe('GET /v1/jobs/{id}/logs', () => {
  /** What the runner of a job's first attempt writes (the S3 mock keeps it in aws.objects). */
  async function runnerWrites(job: { job_id: string }, texts: string[], tenant = 'acme'): Promise<void> {
    const sink = new S3LogPageSink(new S3Client({ region: REGION }), {
      bucket: BUCKET,
      tenant,
      jobId: job.job_id,
      attempt: 1,
    });
    for (const [i, text] of texts.entries())
      sink.write({ ts: `2026-11-23T13:45:1${i}.000Z`, stream: i === 0 ? 'runner' : 'stdout', text });
    await sink.flush();
  }

  it("reads the runner's S3 log pages, never CloudWatch Logs, with the exact S3 requests", async () => {
    const job = await createJob();
    await runnerWrites(job, ['starting kernel python3', 'hello Ada']);
    aws.s3.resetHistory();
    // The fixture repeats limit (?limit=100&limit=50): the last value counts, as in local mode.
    const event = proxyEvent({ path: `/v1/jobs/${job.job_id}/logs`, query: { limit: ['100', '50'] } });

    const result = await api(event);

    expect(result.statusCode, result.body).toBe(200);
    const page = body(result);
    expect(page.lines).toEqual([
      { ts: '2026-11-23T13:45:10.000Z', stream: 'runner', text: 'starting kernel python3' },
      { ts: '2026-11-23T13:45:11.000Z', stream: 'stdout', text: 'hello Ada' },
    ]);
    expect(page.at_end).toBe(true);
    const folder = `outputs/acme/${job.job_id}/logs/`;
    expect(aws.s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: BUCKET, Key: `${folder}998-9999999999.jsonl` },
      { Bucket: BUCKET, Key: `${folder}998-9999999998.jsonl` },
    ]);
    expect(aws.logs.calls()).toEqual([]);

    // The next page resumes after the last line (the cursor is signed by the service: opaque).
    await runnerWrites(job, ['starting kernel python3', 'hello Ada', 'bye']);
    const next = await api(
      proxyEvent({ path: `/v1/jobs/${job.job_id}/logs`, query: { cursor: [page.next_cursor] } }),
    );
    expect(body(next).lines).toEqual([{ ts: '2026-11-23T13:45:12.000Z', stream: 'stdout', text: 'bye' }]);
    // A tail: one LIST for the newest page, then its GET.
    aws.s3.resetHistory();
    const tail = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}/logs`, query: { tail: ['1'] } }));
    expect(body(tail).lines.map((l: { text: string }) => l.text)).toEqual(['bye']);
    expect(aws.s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([
      { Bucket: BUCKET, Prefix: folder, MaxKeys: 1 },
    ]);
    expect(aws.logs.calls()).toEqual([]);
  });

  it("never reads another tenant's pages: its job id is a 404, another job's cursor a 400", async () => {
    const mine = await createJob('acme');
    const theirs = await createJob('globex');
    await runnerWrites(theirs, ['globex secret'], 'globex');
    await runnerWrites(mine, ['acme line']);
    aws.s3.resetHistory();

    const byId = await api(proxyEvent({ path: `/v1/jobs/${theirs.job_id}/logs`, tenant: 'acme' }));
    expect(byId.statusCode).toBe(404);
    const theirPage = body(
      await api(proxyEvent({ path: `/v1/jobs/${theirs.job_id}/logs`, tenant: 'globex' })),
    );
    aws.s3.resetHistory();
    const byCursor = await api(
      proxyEvent({
        path: `/v1/jobs/${mine.job_id}/logs`,
        tenant: 'acme',
        query: { cursor: [theirPage.next_cursor] },
      }),
    );
    expect(byCursor.statusCode).toBe(400);
    expect(body(byCursor).error.code).toBe('invalid_request');
    // Neither request read a page.
    expect(aws.s3.commandCalls(GetObjectCommand)).toEqual([]);
    expect(aws.s3.commandCalls(ListObjectsV2Command)).toEqual([]);
  });
});

describe('cold start configuration', () => {
  it('answers a generic 500 for a missing variable and logs the variable name', async () => {
    const env = stackEnv(table, db().endpoint);
    delete (env as Record<string, string | undefined>).NOTEBOOK_JOBS_BUCKET;
    const broken = await coldStart<ApiModule>('lambda/handlers/api.ts', env);
    const logError = vi.spyOn(await handlerLogger(), 'error').mockImplementation(() => undefined);

    const result = await broken.handler(proxyEvent({ path: '/v1/jobs' }));

    // The error goes to the structured logger whole, as the `error` field (Powertools formats it).
    const logged = logError.mock.calls
      .map((c) => `${String(c[0])} ${String((c[1] as { error?: Error } | undefined)?.error?.message)}`)
      .join('\n');

    expect(result.statusCode).toBe(500);
    expect(JSON.parse(result.body)).toEqual({
      error: { code: 'internal', message: 'internal error; the server log has the details' },
    });
    expect(result.body).not.toContain('NOTEBOOK_JOBS_BUCKET');
    expect(logged).toContain('missing required environment variable NOTEBOOK_JOBS_BUCKET');
  });
});

describe('request size limits (Lambda payload 6 MB, bodies escaped inside the event)', () => {
  const post = (text: string) =>
    withTextBody(proxyEvent({ method: 'POST', path: '/v1/jobs', body: {} }), text);
  const create = (notebookBytes: number, bodyBytes: number) =>
    sizedBody(notebookBytes, bodyBytes, (content) => ({ notebook: { content, name: 'big.ipynb' } }));

  it('accepts a body of exactly the limit carrying a notebook of exactly the inline limit', async () => {
    const response = await api(post(create(MAX_INLINE_NOTEBOOK_BYTES, MAX_REQUEST_BODY_BYTES)));
    expect(response.statusCode, response.body.slice(0, 300)).toBe(201);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('answers one byte over the body limit with 413 pointing at POST /v1/uploads, and creates nothing', async () => {
    const response = await api(post(create(MAX_INLINE_NOTEBOOK_BYTES, MAX_REQUEST_BODY_BYTES + 1)));
    expect(response.statusCode).toBe(413);
    expect(body(response)).toEqual({
      error: {
        code: 'payload_too_large',
        message: `request body is over ${MAX_REQUEST_BODY_BYTES} bytes; send larger notebooks with POST /v1/uploads and submit the notebook_uri`,
        details: { size: MAX_REQUEST_BODY_BYTES + 1, limit: MAX_REQUEST_BODY_BYTES },
      },
    });
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });

  it('answers a notebook one byte over the inline limit (in a body under its limit) with 413 and the upload hint', async () => {
    const response = await api(post(create(MAX_INLINE_NOTEBOOK_BYTES + 1, MAX_REQUEST_BODY_BYTES)));
    expect(response.statusCode).toBe(413);
    expect(body(response).error.message).toBe(
      `notebook is ${MAX_INLINE_NOTEBOOK_BYTES + 1} bytes; the limit is ${MAX_INLINE_NOTEBOOK_BYTES} bytes (send larger notebooks with POST /v1/uploads and submit the notebook_uri)`,
    );
    expect(aws.ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
  });

  it("keeps a worst-case body at the limit within Lambda's payload once escaped into the event", () => {
    // Every byte of this (valid JSON) body escapes to two, and the headers fill API Gateway's 10 KiB.
    const text = `"${'\\'.repeat(MAX_REQUEST_BODY_BYTES - 2)}"`;
    expect(text.length).toBe(MAX_REQUEST_BODY_BYTES);
    const event = post(text);
    const big = 'h'.repeat(10 * 1024);
    event.headers['X-Padding'] = big;
    event.multiValueHeaders['X-Padding'] = [big];
    const payload = Buffer.byteLength(JSON.stringify(event));
    expect(payload).toBeGreaterThan(2 * MAX_REQUEST_BODY_BYTES);
    expect(payload).toBeLessThanOrEqual(LAMBDA_PAYLOAD_BYTES);
  });
});

describe('inspect with files from an s3:// source prefix', () => {
  it("lists the notebook's folder under the tenant's source with one prefix listing; another tenant is refused without one", async () => {
    const sources = JSON.stringify({ acme: ['s3://acme-data/notebooks/'] });
    const { handler } = await coldStart<ApiModule>(
      'lambda/handlers/api.ts',
      stackEnv(table, db().endpoint, { NOTEBOOK_JOBS_TENANT_SOURCES: sources }),
    );
    const content = JSON.parse(JSON.stringify(createBody().notebook.content));
    aws.objects.set('acme-data/notebooks/proj/nb.ipynb', Buffer.from(JSON.stringify(content)));
    aws.objects.set('acme-data/notebooks/proj/data/a.csv', Buffer.from('x\n1\n'));
    aws.objects.set('acme-data/notebooks/other/b.csv', Buffer.from('not this folder'));
    const request = (tenant: string) =>
      handler(
        proxyEvent({
          method: 'POST',
          path: '/v1/notebooks/inspect',
          tenant,
          body: { notebook: { uri: 's3://acme-data/notebooks/proj/nb.ipynb' }, files: { paths: ['data/*'] } },
        }),
      );

    const inspected = await request('acme');

    expect(inspected.statusCode, inspected.body).toBe(200);
    expect(body(inspected).files).toMatchObject({
      source: 's3://acme-data/notebooks/proj/',
      files: [{ path: 'data/a.csv', size: 4 }],
      refused: [],
      accepted: true,
    });
    expect(aws.s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'acme-data', Prefix: 'notebooks/proj/', ContinuationToken: undefined },
    ]);
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);

    aws.s3.resetHistory();
    const refused = await request('globex');
    expect(refused.statusCode).toBe(400);
    expect(body(refused).error.message).toMatch(/may not be submitted by this tenant/);
    expect(aws.s3.commandCalls(ListObjectsV2Command)).toHaveLength(0);
  });
});

describe('job files', () => {
  async function completedWithFiles(): Promise<any> {
    const job = await createJob();
    const prefix = `outputs/acme/${job.job_id}`;
    aws.objects.set(`${BUCKET}/${prefix}/files/plots/loss.png`, Buffer.from('png bytes'));
    aws.objects.set(
      `${BUCKET}/${prefix}/files.json`,
      Buffer.from(
        JSON.stringify({
          files: [{ path: 'plots/loss.png', size: 9, sha256: 'a'.repeat(64), media_type: 'image/png' }],
          note: null,
        }),
      ),
    );
    await db()
      .store(table)
      .update(job.job_id, ['running'], { status: 'completed', ended_at: new Date().toISOString() });
    return job;
  }

  it('lists the output files and hands each out as a presigned S3 URL (302)', async () => {
    const job = await completedWithFiles();
    const listed = body(await api(proxyEvent({ path: `/v1/jobs/${job.job_id}/files` })));
    expect(listed.files).toEqual([
      {
        path: 'plots/loss.png',
        size: 9,
        sha256: 'a'.repeat(64),
        media_type: 'image/png',
        download: `/v1/jobs/${job.job_id}/files/plots/loss.png`,
      },
    ]);
    const file = await api(proxyEvent({ path: `/v1/jobs/${job.job_id}/files/plots/loss.png` }));
    expect(file.statusCode).toBe(302);
    expect(new URL(file.headers?.location as string).pathname).toBe(
      `/outputs/acme/${job.job_id}/files/plots/loss.png`,
    );
  });

  it("never shows another tenant a job's files: the list and each file are 404", async () => {
    const job = await completedWithFiles();
    for (const path of [`/v1/jobs/${job.job_id}/files`, `/v1/jobs/${job.job_id}/files/plots/loss.png`]) {
      const other = await api(proxyEvent({ path, tenant: 'globex' }));
      expect(other.statusCode).toBe(404);
      expect(other.body).not.toContain('loss.png');
    }
  });

  it("refuses an archive with a zip-slip entry with 400 and writes nothing; another tenant's archive is 404", async () => {
    const { pack } = await import('tar-stream');
    const { gzipSync } = await import('node:zlib');
    const p = pack();
    p.entry({ name: '../escape.txt' }, 'x');
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of p) chunks.push(chunk as Buffer);
    const key = 'uploads/acme/0123456789abcdef0123456789abcdef/files.tar.gz';
    aws.objects.set(`${BUCKET}/${key}`, gzipSync(Buffer.concat(chunks)));
    const uri = `s3://${BUCKET}/${key}`;
    const notebook = createBody().notebook;

    const refused = await api(
      proxyEvent({ method: 'POST', path: '/v1/jobs', body: { notebook, files: { uri } } }),
    );
    expect(refused.statusCode).toBe(400);
    expect(body(refused).error.message).toContain('contains ".."');
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);

    const foreign = await api(
      proxyEvent({
        method: 'POST',
        path: '/v1/jobs',
        body: { notebook, files: { uri } },
        tenant: 'globex',
      }),
    );
    expect(foreign.statusCode).toBe(404);
    expect(aws.s3.commandCalls(PutObjectCommand)).toHaveLength(0);
  });
});
