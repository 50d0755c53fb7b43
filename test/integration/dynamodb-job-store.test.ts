/**
 * DynamoDbJobStore against a real in-process dynalite: conditional writes, index upkeep, pagination,
 * idempotency claims and slots, as DynamoDB itself would evaluate them. Each test gets its own table.
 */
import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import {
  ConditionalCheckFailedException,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  StateConflictError,
} from '../../lambda/core/errors.ts';
import { sourcesOf, canTransition, type JobRecord, type JobStatus } from '../../lambda/core/job.ts';
import {
  DynamoDbJobStore,
  MAX_QUERY_PAGES_PER_LIST,
} from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { createJobTable, INDEXES, jobPartitionKey } from '../../lambda/adapters/dynamodb/table.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import { jobRecord } from '../helpers/jobs.ts';

// dynalite ships no type declarations; this is the one call the tests use.
const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;

const BASE_TIME = Date.parse('2026-01-01T00:00:00.000Z');
let sequence = 0;
// Real ids whose time part is created_at, as the service mints them.
const ids = new MonotonicJobIds(() => BASE_TIME + sequence * 1000);

/** A queued job; ids (and created_at) increase with every call, as real time-sortable ids do. */
function makeJob(overrides: Partial<JobRecord> = {}): JobRecord {
  sequence += 1;
  const jobId = ids.jobId();
  const createdAt = new Date(BASE_TIME + sequence * 1000).toISOString();
  return jobRecord(jobId, {
    tenant: 'acme',
    notebook: { name: 'train.ipynb', uri: `file:///data/inputs/${jobId}/train.ipynb` },
    parameters: { epochs: 10 },
    progress: { cells_total: 3, cells_executed: 0, percent: 0, current_cell: null },
    created_at: createdAt,
    updated_at: createdAt,
    output_uri: `file:///data/outputs/${jobId}/train.ipynb`,
    ...overrides,
  });
}

let server: Server;
let rawClient: DynamoDBClient;
let client: DynamoDBDocumentClient;
let tableCount = 0;

async function newTable(): Promise<string> {
  tableCount += 1;
  const tableName = `jobs-${process.pid}-${tableCount}`;
  await createJobTable(rawClient, tableName);
  return tableName;
}

beforeAll(async () => {
  server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  rawClient = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  client = DynamoDBDocumentClient.from(rawClient);
});

afterAll(async () => {
  client?.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

let tableName: string;
let store: DynamoDbJobStore;

beforeEach(async () => {
  tableName = await newTable();
  store = new DynamoDbJobStore({ client, tableName });
});

async function rawJobItem(jobId: string): Promise<Record<string, unknown> | undefined> {
  const result = await client.send(
    new GetCommand({
      TableName: tableName,
      Key: { pk: jobPartitionKey(jobId), sk: 'JOB' },
      ConsistentRead: true,
    }),
  );
  return result.Item;
}

async function start(job: JobRecord, runnerRef: string | null = null): Promise<JobRecord> {
  return store.update(job.job_id, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: '2026-01-02T00:00:00.000Z',
    runner_ref: runnerRef,
  });
}

async function complete(job: JobRecord, endedAt = '2026-01-03T00:00:00.000Z'): Promise<JobRecord> {
  return store.update(job.job_id, ['running'], { status: 'completed', stage: null, ended_at: endedAt });
}

/** Follows next_cursor to the end and returns every page's job ids. */
async function allPages(query: Parameters<DynamoDbJobStore['list']>[0]): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | undefined;
  for (let guard = 0; guard < 100; guard++) {
    const page = await store.list({ ...query, cursor });
    pages.push(page.items.map((job) => job.job_id));
    if (page.next_cursor === null) return pages;
    cursor = page.next_cursor;
  }
  throw new Error('pagination did not end');
}

describe('createJobTable', () => {
  it('is idempotent and creates every index', async () => {
    await createJobTable(rawClient, tableName);
    const { Table } = await rawClient.send(new DescribeTableCommand({ TableName: tableName }));
    expect(Table?.TableStatus).toBe('ACTIVE');
    expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect((Table?.GlobalSecondaryIndexes ?? []).map((index) => index.IndexName).sort()).toEqual(
      Object.values(INDEXES)
        .map((index) => index.name)
        .sort(),
    );
  });
});

describe('create and get', () => {
  it('round-trips a record exactly, nested objects and awkward JSON numbers included', async () => {
    const job = makeJob({
      status: 'failed',
      stage: null,
      tenant: 'team#1',
      parameters: {
        big: 1e20,
        huge: 1.5e300,
        tiny: 5e-324,
        list: [1, 'two', null, { three: [3] }],
        empty: '',
      },
      progress: {
        cells_total: 12,
        cells_executed: 5,
        percent: 41.7,
        current_cell: { index: 6, source_preview: 'model.fit(...' },
      },
      started_at: '2026-01-02T00:00:00.000Z',
      ended_at: '2026-01-02T00:01:00.000Z',
      deadline_at: '2026-01-02T01:00:00.000Z',
      cell_timeout_seconds: 60,
      priority: -7,
      tags: { team: 'ml', owner: 'a b' },
      attempt: 2,
      cpu: 1024,
      memory: 2048,
      error: {
        type: 'cell_error',
        message: 'boom',
        cell_index: 4,
        ename: 'ValueError',
        evalue: 'bad',
        traceback: ['line 1', 'line 2'],
      },
      runner_ref: 'pid:1234',
      idempotency_key: 'key-1',
      request_hash: 'abc',
    });
    await store.create(job);
    expect(await store.get(job.job_id)).toStrictEqual(job);
    expect(await store.get('job_missing')).toBeNull();
  });

  it('drops undefined optional members instead of failing to marshal them', async () => {
    const job = makeJob({ error: { type: 'timeout', message: 'too slow', cell_index: undefined } });
    await store.create(job);
    expect((await store.get(job.job_id))?.error).toStrictEqual({ type: 'timeout', message: 'too slow' });
  });

  it('stores maps whose keys the marshaller would misread as a class ("constructor"), and finds them', async () => {
    // The SDK's marshaller types an object by value.constructor.name: these were refused (a 500).
    const job = makeJob({
      tags: { constructor: 'x', team: 'ml' },
      parameters: {
        constructor: 1,
        spec: { constructor: { name: 'Set' } },
        flag: { constructor: { name: 'Boolean' } },
      },
      error: { type: 'cell_error', message: 'boom', ename: 'constructor' },
    });
    await store.create(job);
    // toEqual: toStrictEqual compares the two objects' .constructor, here the data itself.
    expect(await store.get(job.job_id)).toEqual(job);
    const found = await store.list({ tenant: job.tenant, tag: { key: 'constructor', value: 'x' }, limit: 5 });
    expect(found.items.map((j) => j.job_id)).toEqual([job.job_id]);
  });

  it('refuses a duplicate id with ConflictError and keeps the original', async () => {
    const job = makeJob();
    await store.create(job);
    await expect(store.create({ ...job, kernel: 'other' })).rejects.toBeInstanceOf(ConflictError);
    expect((await store.get(job.job_id))?.kernel).toBe('python3');
  });

  it('deletes, and deleting a missing job is fine', async () => {
    const job = makeJob();
    await store.create(job);
    await store.delete(job.job_id);
    expect(await store.get(job.job_id)).toBeNull();
    await expect(store.delete(job.job_id)).resolves.toBeUndefined();
  });
});

describe('conditional updates', () => {
  it('follows queued -> running -> completed and returns the updated job', async () => {
    const job = makeJob();
    await store.create(job);
    const running = await start(job);
    expect(running).toStrictEqual({
      ...job,
      status: 'running',
      stage: 'provisioning',
      started_at: '2026-01-02T00:00:00.000Z',
    });
    const done = await complete(running);
    expect(done.status).toBe('completed');
    expect(await store.get(job.job_id)).toStrictEqual(done);
  });

  it('never changes a completed job: StateConflictError carries the current job', async () => {
    const job = makeJob();
    await store.create(job);
    const done = await complete(await start(job));
    for (const target of ['running', 'completed', 'failed', 'cancelled'] as const) {
      const attempt = store.update(job.job_id, sourcesOf(target), { status: target, updated_at: 'x' });
      const error = await attempt.then(
        () => null,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(StateConflictError);
      expect((error as StateConflictError).current.status).toBe('completed');
      expect((error as StateConflictError).current).toStrictEqual(done);
    }
    expect(await store.get(job.job_id)).toStrictEqual(done);
  });

  it('throws NotFoundError for a missing job and creates nothing', async () => {
    await expect(store.update('job_nope', ['queued'], { status: 'running' })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await rawJobItem('job_nope')).toBeUndefined();
  });

  it('applies non-status changes under the same condition', async () => {
    const job = makeJob();
    await store.create(job);
    await start(job);
    const progress = { cells_total: 3, cells_executed: 2, percent: 66.7, current_cell: null };
    expect((await store.update(job.job_id, ['running'], { progress })).progress).toStrictEqual(progress);
    await expect(store.update(job.job_id, ['queued'], { progress })).rejects.toBeInstanceOf(
      StateConflictError,
    );
  });

  it('with nothing to change, still checks the state', async () => {
    const job = makeJob();
    await store.create(job);
    expect(await store.update(job.job_id, ['queued'], {})).toStrictEqual(job);
    await expect(store.update(job.job_id, ['running'], {})).rejects.toBeInstanceOf(StateConflictError);
    await expect(store.update('job_nope', ['running'], {})).rejects.toBeInstanceOf(NotFoundError);
  });

  it('uses the item returned with a failed condition, without reading it again', async () => {
    const job = makeJob({ status: 'cancelled', ended_at: '2026-01-02T00:00:00.000Z' });
    await store.create(job);
    // dynalite does not return ALL_OLD items, so hand the store what DynamoDB would send.
    const raw = await rawClient.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { pk: { S: jobPartitionKey(job.job_id) }, sk: { S: 'JOB' } },
      }),
    );
    const sent: string[] = [];
    const fake = {
      send: async (command: object) => {
        sent.push(command.constructor.name);
        throw new ConditionalCheckFailedException({
          message: 'The conditional request failed',
          $metadata: {},
          Item: raw.Item as Record<string, AttributeValue>,
        });
      },
    } as unknown as DynamoDBDocumentClient;
    const fakeStore = new DynamoDbJobStore({ client: fake, tableName });
    const error = await fakeStore
      .update(job.job_id, ['running'], { status: 'completed' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateConflictError);
    expect((error as StateConflictError).current).toStrictEqual(job);
    expect(sent).toEqual(['UpdateCommand']);
  });

  it('lets errors other than a failed condition propagate', async () => {
    const broken = new DynamoDbJobStore({ client, tableName: 'no-such-table' });
    const error = await broken.update('job_x', ['queued'], { status: 'running' }).catch((e: unknown) => e);
    expect((error as Error).name).toBe('ResourceNotFoundException');
    await expect(broken.create(makeJob())).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });

  it('sets expires_at = ended_at + retention on terminal updates only', async () => {
    const job = makeJob();
    await store.create(job);
    await start(job);
    expect((await rawJobItem(job.job_id))?.expires_at).toBeUndefined();
    await complete(job, '2026-03-01T12:00:00.500Z');
    const endedSeconds = Math.floor(Date.parse('2026-03-01T12:00:00.500Z') / 1000);
    expect((await rawJobItem(job.job_id))?.expires_at).toBe(endedSeconds + 30 * 86_400);

    const shortStore = new DynamoDbJobStore({ client, tableName, retentionDays: 2 });
    const other = makeJob();
    await shortStore.create(other);
    await shortStore.update(other.job_id, ['queued'], {
      status: 'cancelled',
      ended_at: '2026-03-01T00:00:00.000Z',
    });
    expect((await rawJobItem(other.job_id))?.expires_at).toBe(
      Date.parse('2026-03-01T00:00:00Z') / 1000 + 2 * 86_400,
    );
  });
});

describe('index keys follow the job', () => {
  it('moves between status listings, the queue and the active index', async () => {
    const job = makeJob();
    await store.create(job);
    const idsWith = async (status: JobStatus) =>
      (await store.list({ tenant: 'acme', status, limit: 10 })).items.map((j) => j.job_id);

    expect(await idsWith('queued')).toEqual([job.job_id]);
    expect((await store.listQueued(10)).map((j) => j.job_id)).toEqual([job.job_id]);
    expect(await store.listRunning()).toEqual([]);

    await start(job);
    expect(await idsWith('queued')).toEqual([]);
    expect(await idsWith('running')).toEqual([job.job_id]);
    expect(await store.listQueued(10)).toEqual([]);
    expect((await store.listRunning()).map((j) => j.job_id)).toEqual([job.job_id]);

    await complete(job);
    expect(await idsWith('running')).toEqual([]);
    expect(await idsWith('completed')).toEqual([job.job_id]);
    expect(await store.listRunning()).toEqual([]);
    const item = await rawJobItem(job.job_id);
    expect(item).not.toHaveProperty('queue_pk');
    expect(item).not.toHaveProperty('active_pk');
  });

  it('keeps the runner index in step with runner_ref', async () => {
    const job = makeJob();
    await store.create(job);
    const arn = 'arn:aws:ecs:eu-west-1:123456789012:task/cluster/abc';
    await start(job, arn);
    expect((await store.findByRunnerRef(arn))?.job_id).toBe(job.job_id);
    await store.update(job.job_id, ['running'], { runner_ref: null });
    expect(await store.findByRunnerRef(arn)).toBeNull();
    expect(await rawJobItem(job.job_id)).not.toHaveProperty('runner_pk');
  });
});

describe('list', () => {
  it('pages newest first, every job exactly once, never another tenant', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 25; i++) {
      const job = makeJob();
      mine.push(job.job_id);
      await store.create(job);
      // Interleave another tenant's jobs (including a prefix-alike name) between ours.
      if (i % 3 === 0) await store.create(makeJob({ tenant: 'acme2' }));
      if (i % 4 === 0) await store.create(makeJob({ tenant: 'other' }));
    }
    const pages = await allPages({ tenant: 'acme', limit: 7 });
    expect(pages.map((page) => page.length)).toEqual([7, 7, 7, 4]);
    expect(pages.flat()).toEqual([...mine].reverse());
  });

  it('gives a null cursor when the last page is exactly full', async () => {
    for (let i = 0; i < 6; i++) await store.create(makeJob());
    const first = await store.list({ tenant: 'acme', limit: 3 });
    expect(first.next_cursor).not.toBeNull();
    const second = await store.list({ tenant: 'acme', limit: 3, cursor: first.next_cursor ?? undefined });
    expect(second.items).toHaveLength(3);
    expect(second.next_cursor).toBeNull();
  });

  it('filters by status, with pagination', async () => {
    const running: string[] = [];
    for (let i = 0; i < 12; i++) {
      const job = makeJob();
      await store.create(job);
      if (i % 2 === 0) {
        await start(job);
        running.push(job.job_id);
      }
    }
    await store.create(makeJob({ tenant: 'other', status: 'running' }));
    const pages = await allPages({ tenant: 'acme', status: 'running', limit: 4 });
    expect(pages.flat()).toEqual([...running].reverse());
    for (const page of pages) expect(page.length).toBeLessThanOrEqual(4);
  });

  it('filters by tag, with pagination and no duplicates', async () => {
    const tagged: string[] = [];
    for (let i = 0; i < 40; i++) {
      const job = makeJob({ tags: i % 5 === 0 ? { team: 'ml' } : { team: 'web' } });
      if (i % 5 === 0) tagged.push(job.job_id);
      await store.create(job);
    }
    await store.create(makeJob({ tenant: 'other', tags: { team: 'ml' } }));
    const pages = await allPages({ tenant: 'acme', tag: { key: 'team', value: 'ml' }, limit: 3 });
    expect(pages.flat()).toEqual([...tagged].reverse());
    expect((await store.list({ tenant: 'acme', tag: { key: 'nope', value: 'ml' }, limit: 3 })).items).toEqual(
      [],
    );
  });

  it('bounds the Query pages one filtered call reads and resumes with the cursor', async () => {
    const rare = makeJob({ tags: { rare: 'yes' } });
    await store.create(rare);
    const fillers = Array.from({ length: MAX_QUERY_PAGES_PER_LIST * 100 + 20 }, () => makeJob());
    for (let i = 0; i < fillers.length; i += 25) {
      await Promise.all(fillers.slice(i, i + 25).map((job) => store.create(job)));
    }
    let queries = 0;
    const counting = {
      send: (command: Parameters<DynamoDBDocumentClient['send']>[0]) => {
        if (command instanceof QueryCommand) queries += 1;
        return client.send(command);
      },
    } as unknown as DynamoDBDocumentClient;
    const countingStore = new DynamoDbJobStore({ client: counting, tableName });

    const first = await countingStore.list({ tenant: 'acme', tag: { key: 'rare', value: 'yes' }, limit: 5 });
    expect(queries).toBe(MAX_QUERY_PAGES_PER_LIST);
    expect(first.items).toEqual([]);
    expect(first.next_cursor).not.toBeNull();
    const second = await countingStore.list({
      tenant: 'acme',
      tag: { key: 'rare', value: 'yes' },
      limit: 5,
      cursor: first.next_cursor ?? undefined,
    });
    expect(second.items.map((job) => job.job_id)).toEqual([rare.job_id]);
    expect(second.next_cursor).toBeNull();
  });

  it('keeps only jobs created strictly before created_before', async () => {
    const jobs = Array.from({ length: 10 }, () => makeJob());
    for (const job of jobs) await store.create(job);
    const bound = jobs[4]?.created_at ?? '';
    const pages = await allPages({ tenant: 'acme', created_before: bound, limit: 3 });
    expect(pages.flat()).toEqual(
      jobs
        .slice(0, 4)
        .map((job) => job.job_id)
        .reverse(),
    );
  });

  it('refuses malformed cursors and cursors from another listing', async () => {
    for (let i = 0; i < 3; i++) await store.create(makeJob());
    for (let i = 0; i < 3; i++) await store.create(makeJob({ tenant: 'other' }));
    const page = await store.list({ tenant: 'acme', limit: 1 });
    const cursor = page.next_cursor ?? '';
    expect(cursor).not.toBe('');
    for (const bad of ['%%%', 'bm90IGpzb24', Buffer.from('[1]').toString('base64url')]) {
      await expect(store.list({ tenant: 'acme', limit: 1, cursor: bad })).rejects.toThrow(
        new InvalidRequestError('cursor is malformed'),
      );
    }
    await expect(store.list({ tenant: 'other', limit: 1, cursor })).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    await expect(store.list({ tenant: 'acme', status: 'queued', limit: 1, cursor })).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    await expect(store.list({ tenant: 'acme', limit: 0 })).rejects.toBeInstanceOf(InvalidRequestError);
  });
});

describe('queue and running jobs', () => {
  it('lists queued jobs highest priority first, FIFO within a priority', async () => {
    const priorities = [0, 5, 0, -3, 5, 1000, -1000, 0];
    const jobs = priorities.map((priority, i) => makeJob({ priority, tenant: i % 2 ? 'a' : 'b' }));
    for (const job of jobs) await store.create(job);
    const expected = [...jobs]
      .sort((x, y) => y.priority - x.priority || (x.job_id < y.job_id ? -1 : 1))
      .map((job) => job.job_id);
    expect((await store.listQueued(100)).map((job) => job.job_id)).toEqual(expected);
    expect((await store.listQueued(3)).map((job) => job.job_id)).toEqual(expected.slice(0, 3));
    expect(await store.listQueued(0)).toEqual([]);

    const head = jobs[5];
    if (!head) throw new Error('fixture');
    await start(head);
    expect((await store.listQueued(100)).map((job) => job.job_id)).toEqual(expected.slice(1));
  });

  it('orders any priorities like the model (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 12 }),
        async (ps) => {
          const own = new DynamoDbJobStore({ client, tableName: await newTable() });
          const jobs = ps.map((priority) => makeJob({ priority }));
          for (const job of jobs) await own.create(job);
          const expected = [...jobs]
            .sort((x, y) => y.priority - x.priority || (x.job_id < y.job_id ? -1 : 1))
            .map((job) => job.job_id);
          expect((await own.listQueued(100)).map((job) => job.job_id)).toEqual(expected);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('refuses a priority the queue key cannot order', async () => {
    await expect(store.create(makeJob({ priority: 1001 }))).rejects.toBeInstanceOf(RangeError);
  });

  it('lists every running job across tenants', async () => {
    const running: string[] = [];
    for (let i = 0; i < 9; i++) {
      const job = makeJob({ tenant: `t${i % 3}` });
      await store.create(job);
      if (i % 3 !== 2) {
        await start(job);
        running.push(job.job_id);
        if (i % 3 === 1) {
          await complete(job);
          running.pop();
        }
      }
    }
    expect((await store.listRunning()).map((job) => job.job_id).sort()).toEqual(running.sort());
  });
});

describe('queue position', () => {
  it('counts the queued jobs, and those that start before a job: higher priority first, then older', async () => {
    const low1 = makeJob({ priority: 0 });
    const high = makeJob({ priority: 5 });
    const low2 = makeJob({ priority: 0 });
    for (const job of [low1, high, low2]) await store.create(job);
    expect(await store.countQueued()).toBe(3);
    expect(await store.countQueuedAhead(high)).toBe(0);
    expect(await store.countQueuedAhead(low1)).toBe(1);
    expect(await store.countQueuedAhead(low2)).toBe(2);
    await store.update(high.job_id, ['queued'], { status: 'running' });
    expect(await store.countQueuedAhead(low2)).toBe(1);
    expect(await store.countQueued()).toBe(2);
  });
});

describe('idempotency keys', () => {
  it('claims, reports the existing claim, replaces a stale one and releases', async () => {
    const first = await store.claimIdempotencyKey('acme', 'k1', 'job_a', 'h1');
    expect(first).toEqual({
      job_id: 'job_a',
      request_hash: 'h1',
      created_at: expect.any(String),
      created: true,
    });
    expect(await store.claimIdempotencyKey('acme', 'k1', 'job_b', 'h2')).toEqual({
      job_id: 'job_a',
      request_hash: 'h1',
      created_at: first.created_at,
      created: false,
    });
    // Keys are per tenant, and '#' in a tenant cannot alias another tenant's key.
    expect((await store.claimIdempotencyKey('other', 'k1', 'job_c', 'h3')).created).toBe(true);
    expect((await store.claimIdempotencyKey('x#y', 'z', 'job_d', 'h4')).created).toBe(true);
    expect((await store.claimIdempotencyKey('x', 'y#z', 'job_e', 'h5')).created).toBe(true);

    expect(await store.replaceIdempotencyKey('acme', 'k1', 'job_wrong', 'job_b', 'h2')).toBe(false);
    expect(await store.replaceIdempotencyKey('acme', 'k1', 'job_a', 'job_b', 'h2')).toBe(true);
    expect(await store.claimIdempotencyKey('acme', 'k1', 'job_f', 'h6')).toMatchObject({
      job_id: 'job_b',
      request_hash: 'h2',
      created: false,
    });
    expect(await store.replaceIdempotencyKey('acme', 'missing', 'job_a', 'job_b', 'h2')).toBe(false);

    // Release removes only the caller's own claim (job_b holds it now), and is idempotent.
    await store.releaseIdempotencyKey('acme', 'k1', 'job_a');
    expect((await store.claimIdempotencyKey('acme', 'k1', 'job_x', 'h9')).created).toBe(false);
    await store.releaseIdempotencyKey('acme', 'k1', 'job_b');
    await store.releaseIdempotencyKey('acme', 'k1', 'job_b');
    expect(await store.claimIdempotencyKey('acme', 'k1', 'job_g', 'h7')).toMatchObject({
      job_id: 'job_g',
      created: true,
    });
  });

  it('treats a claim past its expiry as free even before TTL removes it', async () => {
    await store.claimIdempotencyKey('acme', 'old', 'job_a', 'h1');
    const key = { pk: 'IDEMP#acme#old', sk: 'IDEMP' };
    await client.send(
      new UpdateCommand({
        TableName: tableName,
        Key: key,
        UpdateExpression: 'SET expires_at = :past',
        ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 10 },
      }),
    );
    expect(await store.claimIdempotencyKey('acme', 'old', 'job_b', 'h2')).toMatchObject({
      job_id: 'job_b',
      created: true,
    });
  });
});

describe('concurrency slots', () => {
  it('grants exactly `limit` of many concurrent acquires; acquire and release are idempotent', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `job_slot_${String(i).padStart(2, '0')}`);
    const results = await Promise.all(ids.map((id) => store.acquireSlot(id, 3)));
    const winners = ids.filter((_, i) => results[i]);
    expect(winners).toHaveLength(3);
    expect(await store.slotHolders()).toEqual([...winners].sort());

    const [holder] = winners;
    if (!holder) throw new Error('no winner');
    expect(await store.acquireSlot(holder, 3)).toBe(true);
    expect(await store.slotHolders()).toHaveLength(3);
    const loser = ids.find((id) => !winners.includes(id)) ?? '';
    expect(await store.acquireSlot(loser, 3)).toBe(false);

    await store.releaseSlot(holder);
    await store.releaseSlot(holder);
    expect(await store.slotHolders()).toHaveLength(2);
    expect(await store.acquireSlot(loser, 3)).toBe(true);
    expect(await store.slotHolders()).toEqual(
      winners
        .filter((id) => id !== holder)
        .concat(loser)
        .sort(),
    );
  });

  it('starts empty, survives releasing everything, and grants nothing at limit 0', async () => {
    expect(await store.slotHolders()).toEqual([]);
    await store.releaseSlot('job_never');
    expect(await store.acquireSlot('job_a', 0)).toBe(false);
    expect(await store.acquireSlot('job_a', 1)).toBe(true);
    await store.releaseSlot('job_a');
    expect(await store.slotHolders()).toEqual([]);
    expect(await store.acquireSlot('job_b', 1)).toBe(true);
  });
});

describe('state machine property', () => {
  it('any sequence of service-style updates follows the state machine; terminal jobs never change', async () => {
    const targets: JobStatus[] = ['running', 'completed', 'failed', 'cancelled'];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...targets), { maxLength: 8 }), async (steps) => {
        const job = makeJob({ tenant: 'prop' });
        await store.create(job);
        let model: JobStatus = 'queued';
        for (const [i, target] of steps.entries()) {
          const before = await store.get(job.job_id);
          const stamp = `2026-02-01T00:00:0${i}.000Z`;
          const outcome = await store
            .update(job.job_id, sourcesOf(target), { status: target, updated_at: stamp, ended_at: stamp })
            .then(
              () => 'ok',
              (error: unknown) => (error instanceof StateConflictError ? 'conflict' : error),
            );
          if (canTransition(model, target)) {
            expect(outcome).toBe('ok');
            model = target;
          } else {
            expect(outcome).toBe('conflict');
            expect(await store.get(job.job_id)).toStrictEqual(before);
          }
        }
        expect((await store.get(job.job_id))?.status).toBe(model);
        // The indexes agree with the item.
        const inQueue = (await store.listQueued(1000)).some((j) => j.job_id === job.job_id);
        const inRunning = (await store.listRunning()).some((j) => j.job_id === job.job_id);
        const byStatus = await store.list({ tenant: 'prop', status: model, limit: 1000 });
        expect(inQueue).toBe(model === 'queued');
        expect(inRunning).toBe(model === 'running');
        expect(byStatus.items.some((j) => j.job_id === job.job_id)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });
});
