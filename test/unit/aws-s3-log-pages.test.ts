/**
 * Job logs as S3 pages (AWS mode): the runner's S3LogPageSink and the Lambdas' S3LogPageReader over
 * a mocked S3 that keeps objects in a map (aws-sdk-client-mock: S3 cannot run here), with the
 * exact commands each read sends, and the same answers as the local FileLogReader gives for the
 * same lines: forward paging, tails, attempts, growing pages, huge lines.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandInput,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { S3LogPageReader, type PagedLogSource } from '../../lambda/adapters/aws/s3-log-page-reader.ts';
import { S3LogPageSink } from '../../lambda/adapters/aws/s3-log-page-sink.ts';
import { logPageKey, logPagesPrefix } from '../../lambda/adapters/aws/s3-log-pages.ts';
import { FileLogReader, FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import type { LogLine, LogPage } from '../../lambda/core/ports.ts';

const BUCKET = 'nbj-artifacts';
const JOB = `job_01JD${'0'.repeat(20)}PAGE01`;
const OTHER_JOB = `job_01JD${'0'.repeat(20)}PAGE02`;
const PREFIX = `outputs/acme/${JOB}/logs/`;

const s3 = mockClient(S3Client);
const objects = new Map<string, Buffer>();
const scratch = mkdtempSync(join(tmpdir(), 'nbj-s3-log-pages-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

beforeEach(() => {
  s3.reset();
  objects.clear();
  s3.on(PutObjectCommand).callsFake((input: PutObjectCommandInput) => {
    objects.set(input.Key as string, Buffer.from(input.Body as string));
    return {};
  });
  s3.on(GetObjectCommand).callsFake((input: { Key: string }) => {
    const body = objects.get(input.Key);
    if (!body) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
    return { Body: { transformToByteArray: async () => new Uint8Array(body) } };
  });
  s3.on(ListObjectsV2Command).callsFake((input: ListObjectsV2CommandInput) => {
    const keys = [...objects.keys()].filter((key) => key.startsWith(input.Prefix ?? '')).sort();
    const page = keys.slice(0, input.MaxKeys ?? 1000);
    return {
      Contents: page.map((Key) => ({ Key })),
      KeyCount: page.length,
      IsTruncated: page.length < keys.length,
    };
  });
  s3.on(DeleteObjectsCommand).callsFake((input: { Delete: { Objects: Array<{ Key: string }> } }) => {
    for (const { Key } of input.Delete.Objects) objects.delete(Key);
    return {};
  });
});

const client = () => new S3Client({ region: 'eu-west-1' });
const reader = () => new S3LogPageReader(client(), { bucket: BUCKET });
const job = (attempt = 1, tenant = 'acme', jobId = JOB): PagedLogSource => ({
  job_id: jobId,
  runner_ref: null,
  tenant,
  attempt,
});
const line = (i: number): LogLine => ({
  ts: '2026-12-01T10:00:00.000Z',
  stream: 'stdout',
  text: `line ${i}`,
});
const texts = (page: LogPage) => page.lines.map((l) => l.text);

/** Writes `count` lines (from `from`) as one attempt's runner does, then flushes. */
async function writeLines(count: number, { attempt = 1, from = 0, pageLines = 1000 } = {}) {
  const sink = new S3LogPageSink(client(), {
    bucket: BUCKET,
    tenant: 'acme',
    jobId: JOB,
    attempt,
    pageLines,
  });
  for (let i = from; i < from + count; i++) sink.write(line(i));
  await sink.flush();
  return sink;
}

const gets = () => s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input.Key);
const lists = () => s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input);

describe('the runner writes pages', () => {
  it('one object per 1,000 lines in its output folder, named newest first, JSON lines as the local file holds them', async () => {
    await writeLines(2500);
    expect([...objects.keys()].sort()).toEqual([
      `${PREFIX}998-9999999997.jsonl`, // attempt 1, page 2
      `${PREFIX}998-9999999998.jsonl`,
      `${PREFIX}998-9999999999.jsonl`, // attempt 1, page 0
    ]);
    expect(logPageKey(PREFIX, { attempt: 1, seq: 0 })).toBe(`${PREFIX}998-9999999999.jsonl`);
    const first = objects.get(`${PREFIX}998-9999999999.jsonl`)!.toString('utf8').split('\n');
    expect(first).toHaveLength(1001); // 1,000 lines, each ending with a newline
    expect(first[0]).toBe(JSON.stringify(line(0)));
    expect(s3.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({
      Bucket: BUCKET,
      Key: `${PREFIX}998-9999999999.jsonl`,
      ContentType: 'application/x-ndjson; charset=utf-8',
    });
    // Closed pages are uploaded once each; the open page once on flush.
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(3);
  });

  it('uploads the open page after flushMs, rewriting it whole as it grows', async () => {
    const sink = new S3LogPageSink(client(), {
      bucket: BUCKET,
      tenant: 'acme',
      jobId: JOB,
      attempt: 1,
      flushMs: 20,
    });
    sink.write(line(0));
    sink.write(line(1));
    await new Promise((r) => setTimeout(r, 100));
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(1);
    sink.write(line(2));
    await sink.flush();
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(2);
    const page = await reader().read(job(), { limit: 10 });
    expect(texts(page)).toEqual(['line 0', 'line 1', 'line 2']);
  });

  it('never throws from flush when S3 keeps failing: the pages stop, said once on stderr', async () => {
    s3.on(PutObjectCommand).rejects(Object.assign(new Error('Access Denied'), { name: 'AccessDenied' }));
    const warnings: string[] = [];
    const sink = new S3LogPageSink(client(), {
      bucket: BUCKET,
      tenant: 'acme',
      jobId: JOB,
      attempt: 1,
      retryMs: 1,
      warn: (message) => warnings.push(message),
    });
    sink.write(line(0));
    await expect(sink.flush()).resolves.toBeUndefined();
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(3);
    sink.write(line(1));
    await sink.flush();
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(3);
    expect(warnings).toEqual([
      `cannot upload the job's log page ${PREFIX}998-9999999999.jsonl: Access Denied; the job's log is no longer written to S3 (API and MCP reads end here), the lines still go to CloudWatch Logs`,
    ]);
  });

  it('is behind while more than 4 MiB wait for S3, and drains once they are uploaded', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    s3.on(PutObjectCommand).callsFake(async () => {
      await gate;
      return {};
    });
    const sink = new S3LogPageSink(client(), { bucket: BUCKET, tenant: 'acme', jobId: JOB, attempt: 1 });
    const big = 'x'.repeat(60_000);
    for (let i = 0; i < 80; i++) sink.write({ ...line(i), text: big });
    expect(sink.backlogged).toBe(true);
    const drained = sink.drained();
    release();
    await drained;
    expect(sink.backlogged).toBe(false);
    await sink.flush();
  });
});

describe('reading pages', () => {
  it('pages forward across objects with one GET per page, never skipping or repeating a line', async () => {
    await writeLines(2500);
    s3.resetHistory();
    const first = await reader().read(job(), { limit: 1000 });
    expect(texts(first)).toEqual(Array.from({ length: 1000 }, (_, i) => `line ${i}`));
    // The page ended exactly at the end of an object: the next object is looked at to tell at_end.
    expect(first.at_end).toBe(false);
    expect(gets()).toEqual([`${PREFIX}998-9999999999.jsonl`, `${PREFIX}998-9999999998.jsonl`]);
    expect(lists()).toEqual([]);

    const seen = [...texts(first)];
    let page = first;
    while (!page.at_end) {
      page = await reader().read(job(), { limit: 700, cursor: page.next_cursor });
      seen.push(...texts(page));
    }
    expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => `line ${i}`));
    // At the end: nothing new, and the same cursor back.
    const again = await reader().read(job(), { limit: 700, cursor: page.next_cursor });
    expect(again).toEqual({ lines: [], next_cursor: page.next_cursor, at_end: true });
  });

  it('reads an empty log (no page yet) as the local reader does: no lines, at the end', async () => {
    const page = await reader().read(job(), { limit: 10 });
    expect(page).toEqual({ lines: [], next_cursor: '1:0:0', at_end: true });
    expect(await reader().read(job(), { limit: 10, tail: 5 })).toMatchObject({ lines: [], at_end: true });
  });

  it('resumes at the end of a growing page and gets only what was added', async () => {
    const sink = await writeLines(3);
    const start = await reader().read(job(), { limit: 100 });
    expect(start).toMatchObject({ at_end: true });
    sink.write(line(3));
    sink.write(line(4));
    await sink.flush();
    const more = await reader().read(job(), { limit: 100, cursor: start.next_cursor });
    expect(texts(more)).toEqual(['line 3', 'line 4']);
    expect(more.at_end).toBe(true);
  });

  it('tails with one LIST and the GETs of the pages the lines are on, whatever the length of the log', async () => {
    const sink = await writeLines(2500);
    s3.resetHistory();
    const tail = await reader().read(job(), { limit: 500, tail: 600 });
    expect(texts(tail)).toEqual(Array.from({ length: 600 }, (_, i) => `line ${1900 + i}`));
    expect(tail.at_end).toBe(true);
    expect(lists()).toEqual([{ Bucket: BUCKET, Prefix: PREFIX, MaxKeys: 1 }]);
    expect(gets()).toEqual([`${PREFIX}998-9999999997.jsonl`, `${PREFIX}998-9999999998.jsonl`]);
    // The tail's cursor continues right after its last line.
    sink.write(line(2500));
    await sink.flush();
    expect(texts(await reader().read(job(), { limit: 10, cursor: tail.next_cursor }))).toEqual(['line 2500']);
  });

  it('reads the runs of every attempt in order, and tails across them', async () => {
    await writeLines(3, { attempt: 1 });
    // Attempt 2 (a requeued job) starts its own run: nothing of attempt 1 is overwritten.
    await writeLines(2, { attempt: 2, from: 3 });
    const all = await reader().read(job(2), { limit: 100 });
    expect(texts(all)).toEqual(['line 0', 'line 1', 'line 2', 'line 3', 'line 4']);
    expect(all.at_end).toBe(true);
    const tail = await reader().read(job(2), { limit: 100, tail: 4 });
    expect(texts(tail)).toEqual(['line 1', 'line 2', 'line 3', 'line 4']);
    // A reader that had reached the end of attempt 1 goes on into attempt 2.
    const one = await reader().read(job(1), { limit: 100 });
    expect(texts(await reader().read(job(2), { limit: 100, cursor: one.next_cursor }))).toEqual([
      'line 3',
      'line 4',
    ]);
  });

  it('cuts a huge line to its first 64 KiB, marked truncated, exactly as the local reader does', async () => {
    const lines = [
      JSON.stringify(line(0)),
      JSON.stringify({ ts: '2026-12-01T10:00:01.000Z', stream: 'stdout', text: 'y'.repeat(2_000_000) }),
      JSON.stringify(line(2)),
    ];
    const bytes = `${lines.join('\n')}\n`;
    objects.set(logPageKey(PREFIX, { attempt: 1, seq: 0 }), Buffer.from(bytes));
    writeFileSync(jobLogPath(scratch, JOB), bytes);
    const local = new FileLogReader(scratch);

    const fromS3 = await reader().read(job(), { limit: 10 });
    const fromFile = await local.read(job(), { limit: 10 });
    expect(fromS3.lines).toEqual(fromFile.lines);
    expect(fromS3.lines[1]).toEqual({
      ts: '2026-12-01T10:00:01.000Z',
      stream: 'stdout',
      text: 'y'.repeat(64 * 1024),
      truncated: true,
    });
    expect((await reader().read(job(), { limit: 10, tail: 2 })).lines).toEqual(
      (await local.read(job(), { limit: 10, tail: 2 })).lines,
    );
  });

  it('gives the same lines as the local reader for the same log, page by page', async () => {
    const sink = new FileLogSink(jobLogPath(scratch, OTHER_JOB));
    for (let i = 0; i < 1234; i++) sink.write(line(i));
    await sink.close();
    await writeLines(1234, { pageLines: 100 });
    const local = new FileLogReader(scratch);
    let [a, b] = [
      await reader().read(job(), { limit: 250 }),
      await local.read(job(1, 'acme', OTHER_JOB), { limit: 250 }),
    ];
    expect(a.lines).toEqual(b.lines);
    while (!b.at_end) {
      [a, b] = [
        await reader().read(job(), { limit: 250, cursor: a.next_cursor }),
        await local.read(job(1, 'acme', OTHER_JOB), { limit: 250, cursor: b.next_cursor }),
      ];
      expect(a.lines).toEqual(b.lines);
      expect(a.at_end).toBe(b.at_end);
    }
  });

  it("refuses a malformed continuation, and reads only the pages of the job it is given, in that job's tenant", async () => {
    await writeLines(3);
    await expect(reader().read(job(), { limit: 10, cursor: '../x' })).rejects.toThrow(InvalidRequestError);
    await expect(reader().read(job(), { limit: 10, cursor: '0:0:0' })).rejects.toThrow(InvalidRequestError);
    s3.resetHistory();
    // The same job id in another tenant (a record that cannot exist) names another folder: nothing.
    const elsewhere = await reader().read(job(1, 'globex'), { limit: 10, cursor: '1:0:0' });
    expect(elsewhere.lines).toEqual([]);
    expect(gets()).toEqual([`outputs/globex/${JOB}/logs/998-9999999999.jsonl`]);
    expect(() => logPagesPrefix('../acme', JOB)).toThrow();
    expect(() => logPagesPrefix('acme', 'job_*')).toThrow();
  });

  it('deletes every page of the job', async () => {
    await writeLines(2500);
    await reader().delete(job());
    expect(objects.size).toBe(0);
    expect(lists()).toContainEqual({ Bucket: BUCKET, Prefix: PREFIX, ContinuationToken: undefined });
  });
});
