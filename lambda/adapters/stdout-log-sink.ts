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

export class StdoutLogSink implements LogSink {
  private readonly writeLine: (line: string) => void;
  private readonly toStdout: boolean;

  /** `write` receives each JSON line without its newline (default: process.stdout, one line each). */
  constructor(write?: (line: string) => void) {
    this.toStdout = write === undefined;
    this.writeLine = write ?? ((line) => void process.stdout.write(`${line}\n`));
  }

  write(line: LogLine): void {
    const json = serialize(line);
    if (Buffer.byteLength(json) <= MAX_LINE_BYTES) {
      this.writeLine(json);
      return;
    }
    for (const text of chunks(line.text)) this.writeLine(serialize({ ...line, text }));
  }

  /** Waits until stdout has taken everything written (pipes can buffer when the reader is slow). */
  async flush(): Promise<void> {
    if (!this.toStdout || !process.stdout.writableNeedDrain) return;
    await new Promise<void>((resolve) => process.stdout.once('drain', () => resolve()));
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
