/**
 * Job logs as one JSON-lines file per job (local mode). The continuation is a byte offset just past
 * the last complete line returned, so paging never skips or repeats a line, and a page costs what it
 * reads, not the size of the log. The service signs offsets into opaque cursors.
 */
import { mkdirSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogLine, LogPage, LogReader, LogReadOptions, LogSink, LogSource } from '../core/ports.ts';
import { InvalidRequestError } from '../core/errors.ts';

const CHUNK = 64 * 1024;
const NEWLINE = 0x0a;

export function jobLogPath(folder: string, jobId: string): string {
  return join(folder, `${jobId}.log`);
}

export class FileLogReader implements LogReader {
  constructor(private readonly folder: string) {}

  async read({ job_id }: LogSource, options: LogReadOptions): Promise<LogPage> {
    const path = jobLogPath(this.folder, job_id);
    const start = parseOffset(options.cursor);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return { lines: [], next_cursor: String(start), at_end: true };
    }
    try {
      const { size } = await handle.stat();
      return options.tail !== undefined
        ? await readTail(handle, size, options.tail)
        : await readForward(handle, size, start, options.limit);
    } finally {
      await handle.close();
    }
  }

  async delete({ job_id }: LogSource): Promise<void> {
    await rm(jobLogPath(this.folder, job_id), { force: true });
  }
}

function parseOffset(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  if (!/^\d{1,15}$/.test(cursor)) throw new InvalidRequestError('cursor is invalid for this log');
  return Number(cursor);
}

async function readForward(handle: FileHandle, size: number, start: number, limit: number): Promise<LogPage> {
  const lines: LogLine[] = [];
  let offset = Math.min(start, size);
  let carry = Buffer.alloc(0);
  let position = offset;
  while (lines.length < limit && position < size) {
    const { buffer, bytesRead } = await handle.read(
      Buffer.alloc(Math.min(CHUNK, size - position)),
      0,
      Math.min(CHUNK, size - position),
      position,
    );
    if (bytesRead === 0) break;
    position += bytesRead;
    let data = Buffer.concat([carry, buffer.subarray(0, bytesRead)]);
    let newline: number;
    while (lines.length < limit && (newline = data.indexOf(NEWLINE)) >= 0) {
      lines.push(parseLine(data.subarray(0, newline)));
      offset += newline + 1;
      data = data.subarray(newline + 1);
    }
    carry = data;
  }
  // At the end when no complete line remains past the offset (a half-written last line waits).
  const atEnd = lines.length < limit || !(await hasNewline(handle, offset, size));
  return { lines, next_cursor: String(offset), at_end: atEnd };
}

async function hasNewline(handle: FileHandle, from: number, size: number): Promise<boolean> {
  for (let position = from; position < size; position += CHUNK) {
    const length = Math.min(CHUNK, size - position);
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(length), 0, length, position);
    if (buffer.subarray(0, bytesRead).includes(NEWLINE)) return true;
  }
  return false;
}

async function readTail(handle: FileHandle, size: number, count: number): Promise<LogPage> {
  // Find the end of the last complete line, then walk back `count` newlines from there.
  let end = size;
  let data = Buffer.alloc(0);
  let position = size;
  let endFound = false;
  while (position > 0) {
    const length = Math.min(CHUNK, position);
    position -= length;
    const { buffer } = await handle.read(Buffer.alloc(length), 0, length, position);
    data = Buffer.concat([buffer, data]);
    if (!endFound) {
      const last = data.lastIndexOf(NEWLINE);
      if (last < 0) continue;
      end = position + last + 1;
      endFound = true;
    }
    if (countNewlines(data, end - position) > count) break;
  }
  if (!endFound) return { lines: [], next_cursor: '0', at_end: true };
  const text = data.subarray(0, end - position);
  const all = splitLines(text);
  return { lines: all.slice(-count).map(parseLine), next_cursor: String(end), at_end: end === size };
}

function countNewlines(data: Buffer, length: number): number {
  let n = 0;
  for (let i = 0; i < length; i++) if (data[i] === NEWLINE) n++;
  return n;
}

function splitLines(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  let i: number;
  while ((i = data.indexOf(NEWLINE, start)) >= 0) {
    out.push(data.subarray(start, i));
    start = i + 1;
  }
  return out;
}

function parseLine(raw: Buffer): LogLine {
  try {
    return JSON.parse(raw.toString('utf8')) as LogLine;
  } catch {
    // A line the runner did not write as JSON (e.g. cut by a crash): keep its text.
    return { ts: '', stream: 'runner', text: raw.toString('utf8') };
  }
}

/** Appends log lines to a job's file, batching writes; `flush` makes them durable in order. */
export class FileLogSink implements LogSink {
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private handle: Promise<FileHandle>;

  constructor(
    path: string,
    private readonly flushMs = 100,
  ) {
    mkdirSync(join(path, '..'), { recursive: true });
    this.handle = open(path, 'a');
  }

  write(line: LogLine): void {
    const text = `${JSON.stringify(line)}\n`;
    this.pending.push(text);
    this.pendingBytes += text.length;
    if (this.pendingBytes > 256 * 1024) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.flushMs);
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    if (batch)
      this.writing = this.writing.then(async () => void (await (await this.handle).appendFile(batch)));
    return this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    await (await this.handle).close();
  }
}
