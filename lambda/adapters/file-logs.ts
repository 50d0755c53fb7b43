/**
 * Job logs as one JSON-lines file per job (local mode). The continuation is a byte offset just past
 * the last complete line returned, so paging never skips or repeats a line, and a page costs what it
 * reads, not the size of the log. The service signs offsets into opaque cursors.
 *
 * Reading is linear: each byte is scanned a bounded number of times and a line is never re-joined
 * with what came before it. A line longer than MAX_LINE_BYTES (only a log written without the
 * runner's caps has one) is crossed without being buffered and comes back cut, marked `truncated`.
 */
import { mkdirSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogLine, LogPage, LogReader, LogReadOptions, LogSink, LogSource } from '../core/ports.ts';
import { InvalidRequestError } from '../core/errors.ts';
import { parseLogLine, PLAIN_JSON } from './stdout-log-sink.ts';

const CHUNK = 64 * 1024;
/** Reads grow up to this while crossing a long line, so a 50 MB line costs 50 reads, not 800. */
const MAX_CHUNK = 1024 * 1024;
/**
 * A line up to this many bytes comes back whole. The runner caps the text of a line (64 KiB by
 * default), which JSON escaping can grow at most six-fold, so every line it writes fits.
 */
export const MAX_LINE_BYTES = 1024 * 1024;
/** How much text a longer line keeps (the runner's default line cap). */
export const TRUNCATED_LINE_CHARS = 64 * 1024;
/** One read of whole lines in a tail stays under this. */
const MAX_RUN_BYTES = 8 * 1024 * 1024;
const NEWLINE = 0x0a;
const QUOTE = 0x22;
const CLOSE_BRACE = 0x7d;

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

/** `length` bytes from `position` (fewer at the end of the file), in a buffer of their own. */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const { buffer, bytesRead } = await handle.read(Buffer.allocUnsafe(length), 0, length, position);
  return buffer.subarray(0, bytesRead);
}

/** The bytes of the line being read: its pieces as they come, at most MAX_LINE_BYTES of them. */
class LineBytes {
  private parts: Buffer[] = [];
  private bytes = 0;
  /** The line is longer than MAX_LINE_BYTES: the rest of it is skipped. */
  overLong = false;

  add(piece: Buffer): void {
    if (this.overLong || piece.length === 0) return;
    const room = MAX_LINE_BYTES - this.bytes;
    if (piece.length > room) {
      this.overLong = true;
      piece = piece.subarray(0, room);
    }
    this.parts.push(piece);
    this.bytes += piece.length;
  }

  take(): LogLine {
    const raw = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.bytes);
    const line = parseLine(raw, this.overLong);
    this.parts = [];
    this.bytes = 0;
    this.overLong = false;
    return line;
  }
}

async function readForward(handle: FileHandle, size: number, start: number, limit: number): Promise<LogPage> {
  const lines: LogLine[] = [];
  let offset = Math.min(start, size); // just past the last line returned
  let position = offset; // the next byte to read
  let rest: Buffer = Buffer.alloc(0); // what was read past the last line of a full page
  const line = new LineBytes();
  while (lines.length < limit && position < size) {
    const chunk = await readAt(
      handle,
      position,
      Math.min(line.overLong ? MAX_CHUNK : CHUNK, size - position),
    );
    if (chunk.length === 0) break;
    let from = 0;
    let newline: number;
    while (lines.length < limit && (newline = chunk.indexOf(NEWLINE, from)) >= 0) {
      line.add(chunk.subarray(from, newline));
      lines.push(line.take());
      offset = position + newline + 1;
      from = newline + 1;
    }
    if (lines.length < limit) line.add(chunk.subarray(from));
    else rest = chunk.subarray(from);
    position += chunk.length;
  }
  // At the end when no complete line remains past the offset (a half-written last line waits).
  const atEnd =
    lines.length < limit || !(rest.includes(NEWLINE) || (await hasNewline(handle, position, size)));
  return { lines, next_cursor: String(offset), at_end: atEnd };
}

async function hasNewline(handle: FileHandle, from: number, size: number): Promise<boolean> {
  let length = CHUNK;
  for (let position = from; position < size; position += length) {
    length = Math.min(length * 2, MAX_CHUNK, size - position);
    if ((await readAt(handle, position, length)).includes(NEWLINE)) return true;
  }
  return false;
}

async function readTail(handle: FileHandle, size: number, count: number): Promise<LogPage> {
  // Walk back from the end noting newline offsets only: the last one ends the last complete line,
  // and count + 1 of them bound the last `count` lines. Each byte is scanned once.
  const newlines: number[] = []; // descending
  let position = size;
  let chunkSize = CHUNK;
  while (position > 0 && newlines.length <= count) {
    const length = Math.min(chunkSize, position);
    position -= length;
    const chunk = await readAt(handle, position, length);
    let found = false;
    for (let i = chunk.length - 1; newlines.length <= count && i >= 0;) {
      const newline = chunk.lastIndexOf(NEWLINE, i);
      if (newline < 0) break;
      newlines.push(position + newline);
      found = true;
      i = newline - 1;
    }
    chunkSize = found ? CHUNK : Math.min(chunkSize * 2, MAX_CHUNK);
  }
  const last = newlines[0];
  if (last === undefined) return { lines: [], next_cursor: '0', at_end: true };
  const bounds: Array<{ start: number; stop: number }> = [];
  for (let k = Math.min(count, newlines.length) - 1; k >= 0; k--) {
    const before = newlines[k + 1];
    bounds.push({ start: before === undefined ? 0 : before + 1, stop: newlines[k] as number });
  }
  // Then read just those lines: runs of ordinary lines in one read each, a long line's head only.
  const lines: LogLine[] = [];
  const isLong = (i: number) => bounds[i]!.stop - bounds[i]!.start > MAX_LINE_BYTES;
  for (let i = 0; i < bounds.length;) {
    const { start } = bounds[i]!;
    if (isLong(i)) {
      lines.push(parseLine(await readAt(handle, start, MAX_LINE_BYTES), true));
      i++;
      continue;
    }
    let j = i;
    while (j + 1 < bounds.length && !isLong(j + 1) && bounds[j + 1]!.stop - start <= MAX_RUN_BYTES) j++;
    const data = await readAt(handle, start, bounds[j]!.stop - start);
    for (; i <= j; i++)
      lines.push(parseLine(data.subarray(bounds[i]!.start - start, bounds[i]!.stop - start)));
  }
  // No complete line follows the last one, so the page is at the end, as a forward page would be
  // (a half-written last line waits).
  return { lines, next_cursor: String(last + 1), at_end: true };
}

/**
 * One line of the file (or of an S3 log page, which holds the same lines). A line the runner did
 * not write as a log line (cut by a crash, or from another writer) keeps its text. `cut` says `raw`
 * is only the head of a longer line.
 */
export function parseLine(raw: Buffer, cut = false): LogLine {
  if (cut) return parseHead(raw);
  const text = raw.toString('utf8');
  return parseLogLine(text) ?? { ts: '', stream: 'runner', text: text.replace(/\r$/, '') };
}

/** `"ts":"...","stream":"...","text":"` at the start of a line the sinks wrote. */
const LINE_HEAD = /^\{"ts":("(?:[^"\\]|\\.)*"),"stream":"(stdout|stderr|output|runner)","text":"/;

/** The head of an over-long line: its time and stream, and the first TRUNCATED_LINE_CHARS of text. */
function parseHead(raw: Buffer): LogLine {
  const text = utf8Head(raw);
  const match = LINE_HEAD.exec(text);
  const body =
    match && jsonStringPrefix(text.slice(match[0].length, match[0].length + 6 * TRUNCATED_LINE_CHARS));
  if (match && body !== null) {
    const ts = JSON.parse(match[1] as string) as string;
    return { ts, stream: match[2] as LogLine['stream'], text: cutText(body), truncated: true };
  }
  return { ts: '', stream: 'runner', text: cutText(text), truncated: true };
}

/** Decodes bytes cut anywhere, leaving out a character the cut split. */
function utf8Head(raw: Buffer): string {
  let lead = raw.length - 1;
  while (lead > 0 && lead > raw.length - 4 && ((raw[lead] as number) & 0xc0) === 0x80) lead--;
  const byte = raw[lead];
  if (byte === undefined) return '';
  const size = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
  return raw.subarray(0, lead + size <= raw.length ? raw.length : lead).toString('utf8');
}

/** The decoded value of a JSON string's body cut anywhere (an escape the cut split is dropped). */
function jsonStringPrefix(body: string): string | null {
  for (let drop = 0; drop <= 6 && drop <= body.length; drop++) {
    try {
      return JSON.parse(`"${body.slice(0, body.length - drop)}"`) as string;
    } catch {
      // cut inside an escape: try a little shorter
    }
  }
  return null;
}

function cutText(text: string): string {
  if (text.length <= TRUNCATED_LINE_CHARS) return text;
  const code = text.charCodeAt(TRUNCATED_LINE_CHARS - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? TRUNCATED_LINE_CHARS - 1 : TRUNCATED_LINE_CHARS);
}

/** Default size of each of a FileLogSink's write buffers. */
export const LOG_SINK_BUFFER_BYTES = 256 * 1024;
/** Empty buffers a FileLogSink keeps for reuse, besides the one filling and the one in flight. */
const SPARE_BUFFERS = 2;

/**
 * Appends log lines to a job's file, batching writes; `flush` makes them durable in order.
 *
 * Each line is serialized once and encoded straight into a fixed buffer; a full buffer waits in
 * order behind the one being appended while the next one fills, and appended buffers are reused.
 * So a line is garbage as soon as it is written, and what waits is bytes outside the JavaScript
 * heap: lines kept waiting as strings survived young-generation collections in numbers (15,000
 * at once while a job printed 10^6 lines), and V8 grew its young generation for them. A buffer
 * half full is written at once, a partly filled one after `flushMs`. `write` never drops or blocks
 * (a LogSink's write is synchronous); once a full buffer waits, `backlogged` says so, and a
 * producer faster than the disk waits for `drained()`: the runner pauses the engine's output
 * meanwhile, so lines wait in the pipe to the engine, not in this process.
 */
export class FileLogSink implements LogSink {
  private filling: Buffer;
  private used = 0;
  /** Full buffers (or one line longer than a buffer), oldest first, waiting behind the append. */
  private waiting: Array<{ bytes: Buffer; length: number }> = [];
  private waitingBytes = 0;
  private spares: Buffer[] = [];
  private writing: Promise<void> | null = null;
  private failure: unknown = null;
  private waiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  private handle: Promise<FileHandle>;
  /** The start of a plain line as JSON, for `headTs` and `headStream` (writePlain). */
  private head = '';
  private headTs = '';
  private headStream = '';

  constructor(
    path: string,
    private readonly flushMs = 100,
    private readonly bufferBytes = LOG_SINK_BUFFER_BYTES,
  ) {
    mkdirSync(join(path, '..'), { recursive: true });
    this.handle = open(path, 'a');
    // A failed open is reported by flush/close, not as an unhandled rejection.
    this.handle.catch(() => undefined);
    this.filling = Buffer.allocUnsafe(bufferBytes);
  }

  write(line: LogLine): void {
    if (line.truncated === undefined && this.writePlain(line)) return;
    const json = JSON.stringify(line);
    if (!fits(json, this.filling.length - this.used)) {
      this.seal();
      if (!fits(json, this.filling.length)) {
        // A line longer than a whole buffer: written by itself, in its place.
        const bytes = Buffer.from(`${json}\n`);
        this.queue(bytes, bytes.length);
        this.startWriting();
        return;
      }
    }
    this.used += this.filling.write(json, this.used);
    this.filling[this.used++] = NEWLINE;
    this.written();
  }

  /**
   * Writes a line whose time and text JSON keeps as they are (nearly every line) without
   * serializing it: the head `{"ts":…,"text":"` is the same for every line of a stream within a
   * millisecond, so it is made once and copied. False when the line is not such a line.
   */
  private writePlain({ ts, stream, text }: LogLine): boolean {
    if (!PLAIN_JSON.test(text)) return false;
    if (ts !== this.headTs || stream !== this.headStream) {
      if (!PLAIN_JSON.test(ts)) return false;
      this.head = `{"ts":"${ts}","stream":"${stream}","text":"`;
      this.headTs = ts;
      this.headStream = stream;
    }
    const bytes = this.head.length + text.length + 3; // "}\n
    if (bytes > this.filling.length - this.used) {
      if (bytes > this.filling.length) return false;
      this.seal();
    }
    const f = this.filling;
    this.used += f.write(this.head, this.used, 'latin1');
    this.used += f.write(text, this.used, 'latin1');
    f[this.used++] = QUOTE;
    f[this.used++] = CLOSE_BRACE;
    f[this.used++] = NEWLINE;
    this.written();
    return true;
  }

  /** After a line is in the filling buffer: write now when it is half full, else after flushMs. */
  private written(): void {
    if (this.backlogged || this.used >= this.filling.length / 2) this.startWriting();
    else this.timer ??= setTimeout(() => this.startWriting(), this.flushMs);
  }

  /** A full buffer waits behind the append in flight: the producer should wait for `drained()`. */
  get backlogged(): boolean {
    return this.waiting.length > 0;
  }

  /** Bytes waiting to be written, not counting the append in flight. */
  get queued(): number {
    return this.waitingBytes + this.used;
  }

  /** Resolves once the sink is no longer backlogged (at once when it is not). */
  drained(): Promise<void> {
    if (!this.backlogged) return Promise.resolve();
    this.startWriting();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async flush(): Promise<void> {
    this.startWriting();
    while (this.writing) await this.writing;
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    await this.flush();
    await (await this.handle).close();
  }

  /** Moves what the filling buffer holds behind the waiting buffers and starts an empty one. */
  private seal(): void {
    if (this.used === 0) return;
    this.queue(this.filling, this.used);
    this.filling = this.spares.pop() ?? Buffer.allocUnsafe(this.bufferBytes);
    this.used = 0;
  }

  private queue(bytes: Buffer, length: number): void {
    this.waiting.push({ bytes, length });
    this.waitingBytes += length;
  }

  /** Starts the append loop unless it runs; it ends when nothing is left to write. */
  private startWriting(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.writing || this.queued === 0) return;
    this.writing = this.appendAll().finally(() => {
      this.writing = null;
      this.release();
    });
  }

  private async appendAll(): Promise<void> {
    try {
      const handle = await this.handle;
      for (;;) {
        if (this.waiting.length === 0) this.seal();
        const next = this.waiting.shift();
        if (!next) return;
        this.waitingBytes -= next.length;
        this.release();
        await writeAll(handle, next.bytes, next.length);
        if (next.bytes.length === this.bufferBytes && this.spares.length < SPARE_BUFFERS)
          this.spares.push(next.bytes);
      }
    } catch (error) {
      // Kept for flush/close to report; lines written meanwhile are tried again by the next flush.
      this.failure ??= error;
    }
  }

  /** Wakes the producers waiting in `drained` once the sink is not behind (or cannot write at all). */
  private release(): void {
    if (this.backlogged && !this.failure) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** `json` and a newline fit in `room` bytes (a UTF-16 unit is at most 3 bytes of UTF-8: most are not measured). */
const fits = (json: string, room: number) => json.length * 3 < room || Buffer.byteLength(json) < room;

/** Appends `length` bytes of `buffer` (the file is open for appending), however many writes it takes. */
async function writeAll(handle: FileHandle, buffer: Buffer, length: number): Promise<void> {
  for (let offset = 0; offset < length;) {
    const { bytesWritten } = await handle.write(buffer, offset, length - offset);
    offset += bytesWritten;
  }
}
