/**
 * The runner's log lines as S3 log pages (layout: s3-log-pages.ts), beside stdout (CloudWatch, for
 * the console). A page closed by size is uploaded at once; the open page is uploaded (rewritten
 * whole) at most every `flushMs` while lines arrive, and on `flush`. One upload at a time, oldest
 * page first, so page seq + 1 never exists before page seq is complete.
 *
 * The pages are those of the job's current attempt (known once the runner has read its job), so a
 * requeued job's runner never overwrites what an earlier attempt wrote. Logs are not worth failing
 * a job for: an upload that keeps failing is retried a few times, then the pages stop (said once on
 * stderr; the lines still reach CloudWatch) and `flush` never throws.
 */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { errorMessage } from '../../core/errors.ts';
import type { LogLine, LogSink } from '../../core/ports.ts';
import { logPageKey, logPagesPrefix, PAGE_BYTES, PAGE_LINES } from './s3-log-pages.ts';

/** Pages held but not uploaded past this many bytes: the sink says it is behind. */
const MAX_HELD_BYTES = 4 * 1024 * 1024;
/** Attempts of one upload (each with the SDK's own retries) before the pages stop. */
const MAX_ATTEMPTS = 3;

export interface S3LogPageSinkOptions {
  bucket: string;
  tenant: string;
  jobId: string;
  /** The job's attempt (from 1): its pages are this attempt's run. */
  attempt: number | Promise<number>;
  /** Longest wait before lines of the open page are uploaded (default 2 s). */
  flushMs?: number;
  pageLines?: number;
  pageBytes?: number;
  /** Where the sink says it gave up (default: stderr; stdout carries only log lines). */
  warn?: (message: string) => void;
  /** Wait between attempts of a failed upload (default 1 s, doubling). */
  retryMs?: number;
}

interface Page {
  /** The page number in this attempt's run. */
  seq: number;
  lines: string[];
  bytes: number;
  /** Lines the last successful upload of this page held. */
  uploaded: number;
}

export class S3LogPageSink implements LogSink {
  private readonly prefix: string;
  private readonly flushMs: number;
  private readonly pageLines: number;
  private readonly pageBytes: number;
  private readonly warn: (message: string) => void;
  private readonly retryMs: number;
  private readonly attempt: Promise<number>;
  /** Pages not yet uploaded as they stand, oldest first; the last one is open. */
  private pages: Page[] = [];
  private nextSeq = 0;
  private held = 0;
  /** The open page is due for upload (its timer fired, or a flush asked). */
  private openDue = false;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private stopped = false;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly s3: S3Client,
    private readonly options: S3LogPageSinkOptions,
  ) {
    this.prefix = logPagesPrefix(options.tenant, options.jobId);
    this.flushMs = options.flushMs ?? 2000;
    this.pageLines = options.pageLines ?? PAGE_LINES;
    this.pageBytes = options.pageBytes ?? PAGE_BYTES;
    this.warn = options.warn ?? ((message) => process.stderr.write(`${message}\n`));
    this.retryMs = options.retryMs ?? 1000;
    this.attempt = Promise.resolve(options.attempt);
    // A failure is handled where it is awaited (the pages stop); never an unhandled rejection.
    this.attempt.catch(() => undefined);
  }

  write(line: LogLine): void {
    if (this.stopped) return;
    const text = `${JSON.stringify(line)}\n`;
    const bytes = Buffer.byteLength(text);
    let page = this.pages.at(-1);
    if (!page || this.isFull(page)) {
      page = { seq: this.nextSeq++, lines: [], bytes: 0, uploaded: 0 };
      this.pages.push(page);
    }
    page.lines.push(text);
    page.bytes += bytes;
    this.held += bytes;
    if (this.isFull(page)) this.startWriting();
    else
      this.timer ??= setTimeout(() => {
        this.timer = null;
        this.openDue = true;
        this.startWriting();
      }, this.flushMs);
  }

  /** Held pages are past MAX_HELD_BYTES: the producer should wait for `drained()`. */
  get backlogged(): boolean {
    return this.held > MAX_HELD_BYTES;
  }

  drained(): Promise<void> {
    if (!this.backlogged) return Promise.resolve();
    this.startWriting();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Uploads everything written so far; never throws (see the module comment). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.openDue = true;
      this.startWriting();
      while (this.writing) await this.writing;
      if (this.stopped || !this.pages.some((page) => page.lines.length > page.uploaded)) return;
    }
  }

  private isFull(page: Page): boolean {
    return page.lines.length >= this.pageLines || page.bytes >= this.pageBytes;
  }

  private startWriting(): void {
    if (this.writing || this.stopped) return;
    this.writing = this.uploadAll().finally(() => {
      this.writing = null;
      this.release();
    });
  }

  /** The next page to upload: a closed one not uploaded whole, else the open one when it is due. */
  private nextUpload(): Page | undefined {
    const closed = this.pages.slice(0, -1).find((page) => page.lines.length > page.uploaded);
    if (closed) return closed;
    const open = this.pages.at(-1);
    if (open && open.lines.length > open.uploaded && (this.openDue || this.isFull(open))) return open;
    return undefined;
  }

  private async uploadAll(): Promise<void> {
    let attempt: number;
    try {
      attempt = await this.attempt;
      logPageKey(this.prefix, { attempt, seq: 0 });
    } catch (error) {
      this.stop(`cannot tell which attempt of the job this is: ${errorMessage(error)}`);
      return;
    }
    for (let page = this.nextUpload(); page && !this.stopped; page = this.nextUpload()) {
      if (page === this.pages.at(-1)) this.openDue = false;
      const count = page.lines.length;
      const body = page.lines.join('');
      const key = logPageKey(this.prefix, { attempt, seq: page.seq });
      if (!(await this.put(key, body))) return;
      page.uploaded = count;
      // Closed pages uploaded whole are done with.
      while (this.pages.length > 1 && this.pages[0]!.uploaded === this.pages[0]!.lines.length) {
        this.held -= this.pages.shift()!.bytes;
      }
      this.release();
    }
  }

  private async put(key: string, body: string): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.s3.send(
          new PutObjectCommand({
            Bucket: this.options.bucket,
            Key: key,
            Body: body,
            ContentType: 'application/x-ndjson; charset=utf-8',
          }),
        );
        return true;
      } catch (error) {
        if (attempt >= MAX_ATTEMPTS) {
          this.stop(`cannot upload the job's log page ${key}: ${errorMessage(error)}`);
          return false;
        }
        await new Promise((resolve) => setTimeout(resolve, this.retryMs * 2 ** (attempt - 1)));
      }
    }
  }

  private stop(reason: string): void {
    this.stopped = true;
    this.pages = [];
    this.held = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.warn(
      `${reason}; the job's log is no longer written to S3 (API and MCP reads end here), the lines still go to CloudWatch Logs`,
    );
    this.release();
  }

  /** Wakes producers waiting in `drained` once the sink is not behind (or has stopped). */
  private release(): void {
    if (this.backlogged && !this.stopped) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
