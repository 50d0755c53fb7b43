/**
 * Runner log lines on stdout, one JSON object per line (AWS mode). On ECS the awslogs driver ships
 * each stdout line to CloudWatch Logs as one event, and the CloudWatch log reader parses the lines
 * back with `parseLogLine`. JSON keeps a line's stream and time, and escapes newlines inside a
 * line's text, so one LogLine is always exactly one event.
 */
import type { LogLine, LogSink } from '../core/ports.ts';

/**
 * Docker's log copier splits lines longer than 16 KiB into several messages, which would no longer
 * be JSON each; longer texts are written as several lines that each stay well under that.
 */
const MAX_LINE_BYTES = 15 * 1024;
/** JSON escaping turns one UTF-16 unit into at most 6 bytes ("\u001f"), so this many always fit. */
const SAFE_CHUNK_UNITS = 2000;

const STREAMS: ReadonlySet<string> = new Set<LogLine['stream']>(['stdout', 'stderr', 'output', 'runner']);

/** Printable ASCII but `"` and `\\`: text that JSON writes as it is, one byte a character. */
export const PLAIN_JSON = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * The UTF-8 bytes of a line as the sinks write it (`JSON.stringify(line)` and a newline), counted
 * without serializing a line whose time and text need no escaping (nearly every line).
 */
export function jsonLineBytes(line: LogLine): number {
  const { ts, stream, text, truncated } = line;
  if ((truncated !== undefined && truncated !== true) || !PLAIN_JSON.test(text) || !PLAIN_JSON.test(ts))
    return Buffer.byteLength(JSON.stringify(line)) + 1;
  // {"ts":"…","stream":"…","text":"…"}, ,"truncated":true when cut, and the newline
  return 32 + ts.length + stream.length + text.length + (truncated ? 17 : 0);
}

function serialize(line: LogLine): string {
  const { ts, stream, text } = line;
  return JSON.stringify(line.truncated ? { ts, stream, text, truncated: true } : { ts, stream, text });
}

/** Splits text into pieces of at most SAFE_CHUNK_UNITS units, never inside a surrogate pair. */
function chunks(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(start + SAFE_CHUNK_UNITS, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end -= 1;
    out.push(text.slice(start, end));
    start = end;
  }
  return out;
}

/**
 * Writes each log line to stdout (or another stream), or hands it to a function. A stream buffers
 * what its reader has not taken yet (stdout to a pipe does, in this process): `backlogged` says it
 * is past its high-water mark and `drained()` waits until it is not, so the runner can pause the
 * engine instead of queueing a job's output here.
 */
export class StdoutLogSink implements LogSink {
  private readonly writeLine: (line: string) => void;
  private readonly stream: (NodeJS.WritableStream & { readonly writableNeedDrain: boolean }) | null;

  /**
   * `target` is a stream to write JSON lines to (default: process.stdout), or a function that
   * receives each JSON line without its newline.
   */
  constructor(
    target:
      | ((line: string) => void)
      | (NodeJS.WritableStream & { readonly writableNeedDrain: boolean }) = process.stdout,
  ) {
    if (typeof target === 'function') {
      this.stream = null;
      this.writeLine = target;
    } else {
      const stream = target;
      this.stream = stream;
      this.writeLine = (line) => void stream.write(`${line}\n`);
    }
  }

  write(line: LogLine): void {
    const json = serialize(line);
    if (Buffer.byteLength(json) <= MAX_LINE_BYTES) {
      this.writeLine(json);
      return;
    }
    for (const text of chunks(line.text)) this.writeLine(serialize({ ...line, text }));
  }

  /** The stream holds more than its high-water mark that its reader has not taken. */
  get backlogged(): boolean {
    return this.stream?.writableNeedDrain ?? false;
  }

  /** Resolves once the stream is no longer backlogged (at once when it is not). */
  drained(): Promise<void> {
    const stream = this.stream;
    if (!stream?.writableNeedDrain) return Promise.resolve();
    return new Promise<void>((resolve) => stream.once('drain', () => resolve()));
  }

  /** Waits until the stream has taken everything written (pipes can buffer when the reader is slow). */
  flush(): Promise<void> {
    return this.drained();
  }
}

/** Parses a line the StdoutLogSink wrote back into a LogLine (null when it is not one). */
export function parseLogLine(text: string): LogLine | null {
  if (!text.startsWith('{')) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { ts, stream, text: body, truncated } = value as Record<string, unknown>;
  if (typeof ts !== 'string' || typeof stream !== 'string' || typeof body !== 'string') return null;
  if (!STREAMS.has(stream)) return null;
  const line: LogLine = { ts, stream: stream as LogLine['stream'], text: body };
  return truncated === true ? { ...line, truncated } : line;
}
