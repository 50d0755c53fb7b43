/**
 * The embedded store must not keep a LevelDB iterator per Query: dynalite on disk (as the local
 * server runs it), the job store's own queries, and a count of the iterators closed.
 */
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo, Server } from 'node:net';
import { AbstractValueIterator } from 'abstract-level';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import { closeLevelIteratorsWithTheirStreams } from '../../lambda/local/level-iterator-close.ts';
import { jobRecord } from '../helpers/jobs.ts';

// dynalite ships no type declarations; this is the one call this test uses.
const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: { path?: string; createTableMs?: number }) => Server;

let dir: string;
let server: Server;
let store: DynamoDbJobStore;

beforeAll(async () => {
  closeLevelIteratorsWithTheirStreams();
  dir = mkdtempSync(join(tmpdir(), 'level-iterators-'));
  server = dynalite({ path: join(dir, 'db'), createTableMs: 0 });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const client = createDocumentClient({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  });
  await createJobTable(client, 'iterators');
  store = new DynamoDbJobStore({ client, tableName: 'iterators' });
  const ids = new MonotonicJobIds();
  for (let i = 0; i < 3; i++) await store.create(jobRecord(ids.jobId(), { tenant: 'acme' }));
});

afterAll(async () => {
  vi.restoreAllMocks();
  await new Promise<void>((done) => server.close(() => done()));
  rmSync(dir, { recursive: true, force: true });
});

it('closes the LevelDB iterator of every query, whether read to the end or cut by a limit', async () => {
  const close = vi.spyOn(AbstractValueIterator.prototype, 'close');

  for (let i = 0; i < 10; i++) {
    await store.listQueued(1); // stops after one item
    await store.listRunning(); // reads to the end
  }

  await vi.waitFor(() => expect(close.mock.calls.length).toBeGreaterThanOrEqual(20));
});
