/**
 * What the AWS handler tests share: a real dynalite for the table, aws-sdk-client-mock for the
 * services that cannot run here (ECS, S3, CloudWatch Logs, EventBridge, Secrets Manager), the
 * environment the CDK stack would set, fixtures, and a fresh import of a handler module per test
 * (each import is a cold start: it reads the environment and wires itself again).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient, RunTaskCommand, type RunTaskCommandInput } from '@aws-sdk/client-ecs';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, vi } from 'vitest';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';

const require = createRequire(import.meta.url);
// dynalite ships no type declarations; this is the one call the tests use.
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const REGION = 'us-west-2';
export const CLUSTER_ARN = 'arn:aws:ecs:us-west-2:111122223333:cluster/notebook-jobs';
export const TASK_DEFINITION_ARN =
  'arn:aws:ecs:us-west-2:111122223333:task-definition/notebook-jobs-runner:7';
export const BUCKET = 'notebook-jobs-artifacts-111122223333';
export const LOG_GROUP = '/notebook-jobs/runner';
export const CURSOR_SECRET_ARN =
  'arn:aws:secretsmanager:us-west-2:111122223333:secret:notebook-jobs-cursor-AbCdEf';

export function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(join(ROOT, 'test/fixtures/aws-events', name), 'utf8')) as T;
}

/** A running dynalite and a fresh job table per call of `newTable`. */
export class Dynalite {
  private count = 0;

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
    readonly client: DynamoDBDocumentClient,
  ) {}

  static async start(): Promise<Dynalite> {
    const server = dynalite({ createTableMs: 0 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const raw = new DynamoDBClient({
      endpoint,
      region: REGION,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    return new Dynalite(server, endpoint, DynamoDBDocumentClient.from(raw));
  }

  async newTable(): Promise<string> {
    this.count += 1;
    const name = `aws-${process.pid}-${this.count}`;
    await createJobTable(this.client, name);
    return name;
  }

  store(tableName: string): DynamoDbJobStore {
    return new DynamoDbJobStore({ client: this.client, tableName });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** One dynalite for the whole test file (started before its tests, closed after them). */
export function dynaliteForThisFile(): () => Dynalite {
  let db: Dynalite | undefined;
  beforeAll(async () => {
    db = await Dynalite.start();
  });
  afterAll(async () => {
    await db?.close();
  });
  return () => {
    if (!db) throw new Error('dynalite is not started yet: use it inside tests or hooks');
    return db;
  };
}

/** The environment the CDK stack sets for the Lambdas, pointing the table at dynalite. */
export function stackEnv(
  table: string,
  endpoint: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    NOTEBOOK_JOBS_TABLE: table,
    NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: endpoint,
    NOTEBOOK_JOBS_BUCKET: BUCKET,
    NOTEBOOK_JOBS_CLUSTER: CLUSTER_ARN,
    NOTEBOOK_JOBS_TASK_DEFINITION: TASK_DEFINITION_ARN,
    NOTEBOOK_JOBS_CONTAINER: 'runner',
    NOTEBOOK_JOBS_SUBNETS: 'subnet-0abc1234def567890,subnet-0def5678abc123456',
    NOTEBOOK_JOBS_SECURITY_GROUPS: 'sg-0123456789abcdef0',
    NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP: 'DISABLED',
    NOTEBOOK_JOBS_CAPACITY: 'FARGATE',
    NOTEBOOK_JOBS_LOG_GROUP: LOG_GROUP,
    NOTEBOOK_JOBS_LOG_STREAM_PREFIX: 'runner',
    NOTEBOOK_JOBS_EVENT_BUS: 'default',
    NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS: '5',
    NOTEBOOK_JOBS_CURSOR_SECRET_ARN: CURSOR_SECRET_ARN,
    NOTEBOOK_JOBS_RETENTION_DAYS: '30',
    ...extra,
  };
}

/** Mocks of every AWS service but DynamoDB, with S3 kept in a map and RunTask minting task ARNs. */
export function mockAws() {
  const ecs = mockClient(ECSClient);
  const s3 = mockClient(S3Client);
  const logs = mockClient(CloudWatchLogsClient);
  const events = mockClient(EventBridgeClient);
  const secrets = mockClient(SecretsManagerClient);
  const objects = new Map<string, Buffer>();
  /** job id -> the task ARN RunTask answered for it */
  const tasks = new Map<string, string>();

  const reset = () => {
    for (const mock of [ecs, s3, logs, events, secrets]) mock.reset();
    objects.clear();
    tasks.clear();
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'test-cursor-key-0123456789abcdef' });
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    s3.on(PutObjectCommand).callsFake((input: PutObjectCommandInput) => {
      objects.set(`${input.Bucket}/${input.Key}`, Buffer.from(input.Body as string | Buffer));
      return {};
    });
    s3.on(HeadObjectCommand).callsFake((input: { Bucket: string; Key: string }) => {
      if (objects.has(`${input.Bucket}/${input.Key}`)) return {};
      throw Object.assign(new Error('NotFound'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
    });
    s3.on(GetObjectCommand).callsFake((input: { Bucket: string; Key: string }) => {
      const body = objects.get(`${input.Bucket}/${input.Key}`);
      if (!body) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
      return { Body: { transformToByteArray: async () => new Uint8Array(body) } };
    });
    s3.on(ListObjectsV2Command).callsFake((input: { Bucket: string; Prefix?: string; MaxKeys?: number }) => {
      const keys = [...objects.keys()]
        .filter((path) => path.startsWith(`${input.Bucket}/${input.Prefix ?? ''}`))
        .map((path) => path.slice(input.Bucket.length + 1))
        .sort();
      const page = keys.slice(0, input.MaxKeys ?? 1000);
      return { Contents: page.map((Key) => ({ Key })), KeyCount: page.length, IsTruncated: false };
    });
    ecs.on(RunTaskCommand).callsFake((input: RunTaskCommandInput) => {
      const jobId = input.startedBy as string;
      const taskArn = `arn:aws:ecs:us-west-2:111122223333:task/notebook-jobs/${(tasks.size + 1).toString(16).padStart(32, 'a')}`;
      tasks.set(jobId, taskArn);
      return { tasks: [{ taskArn, lastStatus: 'PROVISIONING', startedBy: jobId }], failures: [] };
    });
  };
  reset();
  return { ecs, s3, logs, events, secrets, objects, tasks, reset };
}

/**
 * The RunTask input the launcher sends for a job with this test stack's settings: its first
 * attempt and first launch token unless told otherwise.
 */
export function expectedRunTask(
  jobId: string,
  tenant: string,
  { attempt = 1, generation = 0 }: { attempt?: number; generation?: number } = {},
): RunTaskCommandInput {
  return {
    cluster: CLUSTER_ARN,
    taskDefinition: TASK_DEFINITION_ARN,
    launchType: 'FARGATE',
    count: 1,
    startedBy: jobId,
    clientToken: `${jobId}-${attempt}-${generation}`,
    networkConfiguration: {
      awsvpcConfiguration: {
        subnets: ['subnet-0abc1234def567890', 'subnet-0def5678abc123456'],
        securityGroups: ['sg-0123456789abcdef0'],
        assignPublicIp: 'DISABLED',
      },
    },
    overrides: {
      containerOverrides: [
        {
          name: 'runner',
          environment: [
            { name: 'NOTEBOOK_JOBS_JOB_ID', value: jobId },
            { name: 'NOTEBOOK_JOBS_TENANT', value: tenant },
          ],
        },
      ],
    },
    tags: [
      { key: 'notebook-jobs:job-id', value: jobId },
      { key: 'notebook-jobs:tenant', value: tenant },
    ],
    propagateTags: 'TASK_DEFINITION',
  };
}

/** Sets `env` for one test (restored by vi.unstubAllEnvs) and imports a handler module afresh. */
export async function coldStart<T>(modulePath: string, env: Record<string, string>): Promise<T> {
  vi.unstubAllEnvs();
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  vi.resetModules();
  return (await import(join(ROOT, modulePath))) as T;
}

/** What `run` writes to stdout (the handlers' log lines and EMF), kept off the test output. */
export async function stdoutLines<T>(run: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    return { result: await run(), lines };
  } finally {
    write.mockRestore();
  }
}

/** The structured logger of the handler modules imported by the last `coldStart`. */
export async function handlerLogger(): Promise<(typeof import('../../lambda/aws/wiring.ts'))['logger']> {
  return ((await import(join(ROOT, 'lambda/aws/wiring.ts'))) as typeof import('../../lambda/aws/wiring.ts'))
    .logger;
}

type ProxyOverrides = {
  method?: string;
  path: string;
  query?: Record<string, string[]>;
  body?: unknown;
  tenant?: string | null;
  scopes?: string;
};

/**
 * A REST proxy event for a request, derived from the documented-shape fixtures (POSTs from the
 * base64-body one, everything else from the GET one) and routed through the stack's resources.
 */
export function proxyEvent(overrides: ProxyOverrides): APIGatewayProxyEvent {
  const method = overrides.method ?? 'GET';
  const event = structuredClone(
    fixture<APIGatewayProxyEvent>(method === 'GET' ? 'apigw-get-proxy.json' : 'apigw-post-jobs-base64.json'),
  );
  event.httpMethod = method;
  event.path = overrides.path;
  // The stack's layout (lib/rest-api.ts): /v1/{proxy+}, plus explicit /v1/health and /openapi.json.
  const greedy = overrides.path.startsWith('/v1/') && overrides.path !== '/v1/health';
  event.resource = greedy ? '/v1/{proxy+}' : overrides.path;
  event.pathParameters = greedy ? { proxy: overrides.path.slice('/v1/'.length) } : null;
  event.requestContext.resourcePath = event.resource;
  event.requestContext.httpMethod = method;
  event.requestContext.path = `/prod${overrides.path}`;
  const query = overrides.query ?? null;
  event.multiValueQueryStringParameters = query;
  event.queryStringParameters = query
    ? Object.fromEntries(Object.entries(query).map(([k, v]) => [k, v[v.length - 1] as string]))
    : null;
  if (method !== 'GET') {
    const body = overrides.body === undefined ? null : JSON.stringify(overrides.body);
    event.body = body === null ? null : Buffer.from(body).toString('base64');
    event.isBase64Encoded = body !== null;
    for (const headers of [event.headers, event.multiValueHeaders]) {
      delete headers['Idempotency-Key'];
      delete headers['Content-Length'];
    }
  }
  if (overrides.tenant === null) event.requestContext.authorizer = null;
  else {
    const tenant = overrides.tenant ?? 'acme';
    event.requestContext.authorizer = {
      principalId: tenant,
      tenant,
      scopes: overrides.scopes ?? 'read,write',
      token_id: 'tok_3f9a1c0e7b2d4a68',
      integrationLatency: 18,
    };
  }
  return event;
}

/** A small nbformat 4 notebook with a parameters cell, as a create request body. */
export function createBody(name = 'hello.ipynb', extra: Record<string, unknown> = {}) {
  const post = fixture<APIGatewayProxyEvent>('apigw-post-jobs-base64.json');
  const body = JSON.parse(Buffer.from(post.body as string, 'base64').toString('utf8')) as {
    notebook: { content: unknown; name: string };
  };
  return { ...body, notebook: { ...body.notebook, name }, ...extra };
}

/** Creates a job through the api handler (POST /v1/jobs with the fixture notebook); returns its id. */
export async function createJobVia(
  api: (event: APIGatewayProxyEvent) => Promise<{ statusCode: number; body: string }>,
  tenant = 'acme',
): Promise<string> {
  const result = await api(proxyEvent({ method: 'POST', path: '/v1/jobs', body: createBody(), tenant }));
  if (result.statusCode !== 201) throw new Error(`create failed: ${result.statusCode} ${result.body}`);
  return (JSON.parse(result.body) as { job_id: string }).job_id;
}

type ApiHandler = (typeof import('../../lambda/handlers/api.ts'))['handler'];

/**
 * One cold start of a stack with a single concurrency slot (a second job waits queued): a fresh
 * table, the api handler to create jobs through, and the handler module under test.
 */
export async function oneSlotColdStart<T>(
  db: Dynalite,
  modulePath: string,
): Promise<{ store: DynamoDbJobStore; api: ApiHandler; module: T }> {
  const table = await db.newTable();
  const env = stackEnv(table, db.endpoint, { NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS: '1' });
  const { handler: api } = await coldStart<{ handler: ApiHandler }>('lambda/handlers/api.ts', env);
  const module = (await import(join(ROOT, modulePath))) as T;
  return { store: db.store(table), api, module };
}

/** The event with `text` as its body, as API Gateway sends a JSON body (no binary media type). */
export function withTextBody(event: APIGatewayProxyEvent, text: string): APIGatewayProxyEvent {
  return { ...event, body: text, isBase64Encoded: false };
}
