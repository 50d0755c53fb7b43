/**
 * Job logs read from the runner's S3 log pages (s3-log-pages.ts): the api and mcp Lambdas' LogReader,
 * with the contract of the local FileLogReader. The continuation is `<attempt>:<page>:<line>`, the
 * next line to read; the service signs it into an opaque cursor scoped to the job. A page costs one
 * GET, a tail one LIST plus the GETs of the pages it takes lines from, whatever the log's length.
 *
 * Keys are made from the job record the service loaded for the caller's tenant, never from the
 * cursor: a cursor only says where to resume inside that job's pages.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { InvalidRequestError } from '../../core/errors.ts';
import type { JobRecord } from '../../core/job.ts';
import type { LogLine, LogPage, LogReadOptions, LogReader, LogSource } from '../../core/ports.ts';
import { MAX_LINE_BYTES, parseLine } from '../file-logs.ts';
import {
  attemptPrefix,
  logPageAddress,
  logPageKey,
  logPagesPrefix,
  type PageAddress,
} from './s3-log-pages.ts';

/** What this reader needs of a job: the service passes the whole (tenant-checked) record. */
export type PagedLogSource = LogSource & Pick<JobRecord, 'tenant' | 'attempt'>;

/** Page GETs one read may make (a page holds up to 1,000 lines; a read asks for at most 5,000). */
export const MAX_PAGE_READS = 8;
const CONTINUATION = /^(\d{1,3}):(\d{1,10}):(\d{1,7})$/;
const NEWLINE = 0x0a;

interface AwsErrorShape {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

/** One page's lines as raw bytes, in order (a page ends with a newline; a torn end is a line too). */
function rawLines(page: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let from = 0;
  while (from < page.length) {
    const newline = page.indexOf(NEWLINE, from);
    const end = newline < 0 ? page.length : newline;
    lines.push(page.subarray(from, end));
    from = end + 1;
  }
  return lines;
}

/** A stored line read back as the local reader reads it: over MAX_LINE_BYTES, its head, truncated. */
function toLogLine(raw: Buffer): LogLine {
  return raw.length > MAX_LINE_BYTES ? parseLine(raw.subarray(0, MAX_LINE_BYTES), true) : parseLine(raw);
}

/** Where a read resumes: a page, and the index of the next line in it. */
interface Position extends PageAddress {
  index: number;
}

export class S3LogPageReader implements LogReader {
  constructor(
    private readonly s3: S3Client,
    private readonly config: { bucket: string },
  ) {}

  async read(job: PagedLogSource, options: LogReadOptions): Promise<LogPage> {
    const prefix = logPagesPrefix(job.tenant, job.job_id);
    const start = parseContinuation(options.cursor);
    return options.tail !== undefined
      ? this.readTail(prefix, options.tail)
      : this.readForward(prefix, Math.max(1, job.attempt), start, options.limit);
  }

  /**
   * Deletes every page of the job (a LIST and a DeleteObjects per 1,000 pages). Deleting the job's
   * artifacts removes them too (they are in its output folder); this keeps the reader whole.
   */
  async delete(job: PagedLogSource): Promise<void> {
    const prefix = logPagesPrefix(job.tenant, job.job_id);
    let token: string | undefined;
    do {
      const listed = await this.s3.send(
        new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      const keys = (listed.Contents ?? []).flatMap((object) => (object.Key ? [{ Key: object.Key }] : []));
      if (keys.length > 0)
        await this.s3.send(
          new DeleteObjectsCommand({ Bucket: this.config.bucket, Delete: { Objects: keys, Quiet: true } }),
        );
      token = listed.IsTruncated ? listed.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Lines from `start` on: the rest of its page, then the next pages of its attempt, then the runs
   * of later attempts (up to the job's current one), at most MAX_PAGE_READS GETs.
   */
  private async readForward(
    prefix: string,
    lastAttempt: number,
    start: Position,
    limit: number,
  ): Promise<LogPage> {
    const lines: LogLine[] = [];
    let reads = 0;
    /** The first of `candidates` that exists, within the GETs one read may make. */
    const firstPage = async (candidates: Position[]) => {
      for (const at of candidates) {
        if (reads >= MAX_PAGE_READS) return null;
        reads += 1;
        const page = await this.page(prefix, at);
        if (page) return { at, page };
      }
      return null;
    };
    /** Where the log may go on after page `from`: its run's next page, then later attempts' first. */
    const after = (from: PageAddress, nextInRun: boolean): Position[] => {
      const runs: Position[] = [];
      for (let attempt = from.attempt + 1; attempt <= lastAttempt; attempt++)
        runs.push({ attempt, seq: 0, index: 0 });
      return nextInRun ? [{ attempt: from.attempt, seq: from.seq + 1, index: 0 }, ...runs] : runs;
    };
    let at = start;
    let found = await firstPage([start, ...after(start, false)]);
    while (found) {
      const { page } = found;
      const taken = page.slice(found.at.index, found.at.index + limit - lines.length);
      lines.push(...taken.map(toLogLine));
      at = { ...found.at, index: Math.min(found.at.index + taken.length, page.length) };
      if (at.index < page.length) return { lines, next_cursor: continuation(at), at_end: false };
      // This page is read to its end: the log goes on only if a later page exists.
      found = await firstPage(after(at, true));
      if (found && lines.length >= limit)
        return { lines, next_cursor: continuation(found.at), at_end: false };
    }
    // No later page, unless the GETs ran out before one could be looked for.
    return { lines, next_cursor: continuation(at), at_end: reads < MAX_PAGE_READS };
  }

  /**
   * The last `count` lines: the newest page (one LIST names it), then older pages while lines are
   * missing (an earlier attempt's newest page takes one more LIST). The page continues right after
   * the newest line read, as a forward page would.
   */
  private async readTail(prefix: string, count: number): Promise<LogPage> {
    const newest = await this.newestPage(prefix, prefix);
    if (!newest)
      return { lines: [], next_cursor: continuation({ attempt: 1, seq: 0, index: 0 }), at_end: true };
    const first = await this.page(prefix, newest);
    if (!first) return { lines: [], next_cursor: continuation({ ...newest, index: 0 }), at_end: true };
    const pages: Buffer[][] = [first.slice(-count)];
    let have = pages[0]!.length;
    let at: PageAddress | null = newest;
    for (let reads = 1; have < count && at && reads < MAX_PAGE_READS; reads++) {
      at =
        at.seq > 0
          ? { attempt: at.attempt, seq: at.seq - 1 }
          : at.attempt > 1
            ? await this.newestPage(prefix, attemptPrefix(prefix, at.attempt - 1))
            : null;
      const older = at && (await this.page(prefix, at));
      if (!older) break; // expired or deleted meanwhile: the log starts after it
      const taken = older.slice(-(count - have));
      pages.unshift(taken);
      have += taken.length;
    }
    return {
      lines: pages.flat().map(toLogLine),
      next_cursor: continuation({ ...newest, index: first.length }),
      at_end: true,
    };
  }

  /** The newest page whose key starts with `listPrefix` (inside the job's folder `prefix`). */
  private async newestPage(prefix: string, listPrefix: string): Promise<PageAddress | null> {
    const listed = await this.s3.send(
      new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: listPrefix, MaxKeys: 1 }),
    );
    const key = listed.Contents?.[0]?.Key;
    return key === undefined ? null : logPageAddress(prefix, key);
  }

  /** A page's raw lines, or null when the page does not exist (yet). */
  private async page(prefix: string, address: PageAddress): Promise<Buffer[] | null> {
    try {
      const out = await this.s3.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: logPageKey(prefix, address) }),
      );
      const body = out.Body ? Buffer.from(await out.Body.transformToByteArray()) : Buffer.alloc(0);
      return rawLines(body);
    } catch (error) {
      const { name, $metadata } = error as AwsErrorShape;
      // The Lambdas hold s3:ListBucket, so a missing page is a 404 (NoSuchKey), never a 403.
      if (name === 'NoSuchKey' || $metadata?.httpStatusCode === 404) return null;
      throw error;
    }
  }
}

function continuation({ attempt, seq, index }: Position): string {
  return `${attempt}:${seq}:${index}`;
}

function parseContinuation(cursor: string | undefined): Position {
  if (cursor === undefined) return { attempt: 1, seq: 0, index: 0 };
  const match = CONTINUATION.exec(cursor);
  const position = match && { attempt: Number(match[1]), seq: Number(match[2]), index: Number(match[3]) };
  if (!position || position.attempt < 1) throw new InvalidRequestError('cursor is invalid for this log');
  return position;
}
