/**
 * What one job may produce, enforced by the runner before anything reaches a log sink or the
 * artifact store: the length of a log line, the bytes of log kept, the size of the executed
 * notebook. The same limits hold locally (log file) and on AWS (stdout -> CloudWatch).
 */
import type { JobError } from '../../lambda/core/job.ts';
import { SETTINGS } from '../../lambda/core/settings.ts';
import type { LogLine, LogSink } from '../../lambda/core/ports.ts';
import { jsonLineBytes } from '../../lambda/adapters/stdout-log-sink.ts';
import type { Notebook } from '../../lambda/notebook/notebook.ts';
import { removedOutputNote, truncateOutputs } from '../../lambda/notebook/truncate-outputs.ts';

export interface RunnerLimits {
  /** Log bytes kept per job (as written: JSON lines); past it one line says so and output is dropped. */
  maxLogBytes: number;
  /** UTF-8 bytes of text in one log line; longer lines are cut and marked `truncated`. */
  maxLogLineBytes: number;
  /** Largest executed notebook saved as is; a larger one fails the job and is saved cut down. */
  maxOutputBytes: number;
  /** Output files kept (the first in path order); the result notes the rest. */
  maxOutputFiles: number;
  /** Total bytes of output files kept. */
  maxOutputFilesBytes: number;
}

/** The defaults, from the settings module (where their bounds and reasons are). */
export const DEFAULT_LIMITS: RunnerLimits = {
  maxLogBytes: SETTINGS.maxLogBytes.default,
  maxLogLineBytes: SETTINGS.maxLogLineBytes.default,
  maxOutputBytes: SETTINGS.maxOutputBytes.default,
  maxOutputFiles: SETTINGS.maxOutputFiles.default,
  maxOutputFilesBytes: SETTINGS.maxOutputFilesBytes.default,
};

/** The environment variables that set the limits (read in config.ts; named in messages). */
export const LIMIT_VARIABLES = {
  maxLogBytes: SETTINGS.maxLogBytes.variable,
  maxLogLineBytes: SETTINGS.maxLogLineBytes.variable,
  maxOutputBytes: SETTINGS.maxOutputBytes.variable,
  maxOutputFiles: SETTINGS.maxOutputFiles.variable,
  maxOutputFilesBytes: SETTINGS.maxOutputFilesBytes.variable,
} as const satisfies Record<keyof RunnerLimits, string>;

/** After the log limit, the runner's own lines (saving, the ending) may still use this much. */
const LIFECYCLE_RESERVE_BYTES = 64 * 1024;

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/** The first `units` UTF-16 units of `text`, one fewer rather than half a surrogate pair. */
function headUnits(text: string, units: number): string {
  return isHighSurrogate(text.charCodeAt(units - 1)) ? text.slice(0, units - 1) : text.slice(0, units);
}

/** `text` cut to at most `maxBytes` of UTF-8 (never inside a character), or null when it fits. */
export function cutUtf8(text: string, maxBytes: number): string | null {
  if (text.length * 3 <= maxBytes) return null; // a UTF-16 unit is at most 3 bytes of UTF-8
  if (text.length <= maxBytes && Buffer.byteLength(text) <= maxBytes) return null;
  // A UTF-16 unit is at least one byte, so the cut falls inside the first maxBytes units.
  const head = Buffer.from(headUnits(text, maxBytes), 'utf8');
  if (head.length <= maxBytes) return head.toString('utf8');
  let end = maxBytes;
  while (end > 0 && ((head[end] as number) & 0xc0) === 0x80) end--; // back to a character's start
  return head.subarray(0, end).toString('utf8');
}

/** What BoundedLogSink needs of a Redactor (redact.ts). */
export interface LineRedactor {
  readonly active: boolean;
  text(text: string): string;
  /** A line cut short: its end may be the beginning of a value. */
  truncated(text: string): string;
}

/**
 * A log sink that says when it is behind (FileLogSink, StdoutLogSink): lines queued faster than it
 * writes them would otherwise pile up in the runner's memory.
 */
export interface FlowControlledLogSink extends LogSink {
  /** Past its high-water mark: the producer should wait for `drained()` before writing more. */
  readonly backlogged: boolean;
  drained(): Promise<void>;
}

/** The sink can say it is behind. */
export function isFlowControlled(sink: LogSink): sink is FlowControlledLogSink {
  return typeof (sink as Partial<FlowControlledLogSink>).drained === 'function';
}

/**
 * Keeps a job's log within its limits: each line's text is capped, and once `maxLogBytes` have been
 * written one line says the limit was reached and the job's output is dropped from then on. The
 * runner's own lines (`note`) still get a small reserve, so the log shows how the job ended.
 */
export class BoundedLogSink implements FlowControlledLogSink {
  private written = 0;
  private reserveUsed = 0;
  private full = false;

  constructor(
    private readonly sink: LogSink,
    private readonly limits: Pick<RunnerLimits, 'maxLogBytes' | 'maxLogLineBytes'>,
    /** The job's secret values come out of each line before it is capped (redact.ts). */
    private readonly redactor?: LineRedactor,
  ) {}

  write(line: LogLine): void {
    this.add(this.cap(this.redact(line)), false);
  }

  /** A line of the runner's own; after the limit it still goes in while the reserve lasts. */
  note(text: string): void {
    this.add(this.cap(this.redact({ ts: new Date().toISOString(), stream: 'runner', text })), true);
  }

  private redact(line: LogLine): LogLine {
    const r = this.redactor;
    if (!r?.active) return line;
    return { ...line, text: line.truncated ? r.truncated(line.text) : r.text(line.text) };
  }

  flush(): Promise<void> {
    return this.sink.flush();
  }

  /** The sink underneath is behind (never, for a sink that cannot say). */
  get backlogged(): boolean {
    return isFlowControlled(this.sink) && this.sink.backlogged;
  }

  drained(): Promise<void> {
    return isFlowControlled(this.sink) ? this.sink.drained() : Promise.resolve();
  }

  private add(line: LogLine, lifecycle: boolean): void {
    const bytes = jsonLineBytes(line);
    if (!this.full && this.written + bytes <= this.limits.maxLogBytes) {
      this.written += bytes;
      this.sink.write(line);
      return;
    }
    if (!this.full) {
      this.full = true;
      this.sink.write({
        ts: new Date().toISOString(),
        stream: 'runner',
        text: `log limit reached: this job's log is capped at ${this.limits.maxLogBytes} bytes (${LIMIT_VARIABLES.maxLogBytes}); the rest of its output is not kept, and the job goes on`,
      });
    }
    if (lifecycle && this.reserveUsed + bytes <= LIFECYCLE_RESERVE_BYTES) {
      this.reserveUsed += bytes;
      this.sink.write(line);
    }
  }

  private cap(line: LogLine): LogLine {
    const cut = cutUtf8(line.text, this.limits.maxLogLineBytes);
    return cut === null ? line : { ...line, text: cut, truncated: true };
  }
}

interface PendingLine {
  parts: string[];
  units: number;
  /** The line outgrew the cap and was emitted: drop the rest of it, up to its newline. */
  dropping: boolean;
}

/**
 * Turns chunks of text into whole lines per stream; a partial line waits for its end. Linear: the
 * pieces of a partial line are joined once, when it ends. A partial line that reaches
 * `maxUnits` UTF-16 units is emitted at once, marked truncated, and the rest of it is dropped.
 */
export class LineSplitter {
  private partial = new Map<LogLine['stream'], PendingLine>();

  constructor(
    private readonly emit: (stream: LogLine['stream'], text: string, truncated: boolean) => void,
    private readonly maxUnits: number,
  ) {}

  push(stream: LogLine['stream'], chunk: string): void {
    let state = this.partial.get(stream);
    if (!state) this.partial.set(stream, (state = { parts: [], units: 0, dropping: false }));
    for (let from = 0; ;) {
      const newline = chunk.indexOf('\n', from);
      const piece = newline < 0 ? chunk.slice(from) : chunk.slice(from, newline);
      if (newline >= 0 && state.units === 0 && !state.dropping && piece.length <= this.maxUnits) {
        // A whole line with nothing pending (nearly every line): emitted as it is, no parts kept.
        this.emit(stream, piece, false);
      } else {
        this.add(stream, state, piece);
        if (newline < 0) return;
        if (!state.dropping) this.emit(stream, state.parts.join(''), false);
        this.reset(state);
      }
      from = newline + 1;
    }
  }

  flushAll(): void {
    for (const [stream, state] of this.partial)
      if (!state.dropping && state.units > 0) this.emit(stream, state.parts.join(''), false);
    this.partial.clear();
  }

  private add(stream: LogLine['stream'], state: PendingLine, piece: string): void {
    if (state.dropping || piece.length === 0) return;
    const room = this.maxUnits - state.units;
    if (piece.length <= room) {
      state.parts.push(piece);
      state.units += piece.length;
      return;
    }
    state.parts.push(headUnits(piece, room));
    this.emit(stream, state.parts.join(''), true);
    this.reset(state);
    state.dropping = true;
  }

  private reset(state: PendingLine): void {
    if (state.parts.length > 0) state.parts = [];
    state.units = 0;
    state.dropping = false;
  }
}

export interface SavedOutput {
  body: Buffer;
  /** Set when the executed notebook was over the limit (the body is then the cut-down notebook). */
  error: JobError | null;
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * The executed notebook as it will be saved. Over `maxBytes`, its largest outputs are replaced by
 * notes until it fits, and `error` says so. The notebook is never parsed for that: its outputs are
 * found as byte ranges of `body` and the saved notebook is `body` with those ranges swapped for
 * notes, so cutting a notebook of N bytes costs about N more bytes of memory, not a parsed copy of
 * it (a 56 MB notebook of 3 x 10^6 printed lines took the runner past 570 MB that way). A notebook
 * that is not well-formed JSON is replaced by the input notebook, whose code cells have no outputs.
 */
export function boundedOutput(body: Buffer, input: Notebook, maxBytes: number): SavedOutput {
  const size = body.length;
  if (size <= maxBytes) return { body, error: null };
  const spans = outputSpans(body);
  let saved: Buffer;
  let how: string;
  if (spans === null) {
    const cut = truncateOutputs(
      { ...input, cells: input.cells.map((cell) => (cell.outputs ? { ...cell, outputs: [] } : cell)) },
      maxBytes,
    );
    saved = Buffer.from(cut.text);
    how = 'it was too large to read back, so the input notebook (without outputs) was saved instead';
  } else {
    const cut = withoutLargestOutputs(body, spans, maxBytes);
    saved = cut.body;
    how =
      `it was saved with its ${cut.removedOutputs} largest outputs (${cut.removedBytes} bytes) replaced by a note` +
      (saved.length <= maxBytes ? '' : `, and is still ${saved.length} bytes without them`);
  }
  return {
    body: saved,
    error: {
      type: 'output_too_large',
      message:
        `the executed notebook is ${size} bytes (${mib(size)}), over the output limit of ${maxBytes} bytes ` +
        `(${mib(maxBytes)}, ${LIMIT_VARIABLES.maxOutputBytes}); ${how}`,
    },
  };
}

/** Byte range [start, end) of one JSON value in a buffer. */
interface Span {
  start: number;
  end: number;
}

/** `body` with its largest outputs, largest first, replaced by notes until it fits `maxBytes`. */
function withoutLargestOutputs(
  body: Buffer,
  spans: Span[],
  maxBytes: number,
): { body: Buffer; removedOutputs: number; removedBytes: number } {
  const note = (bytes: number) => Buffer.from(JSON.stringify(removedOutputNote(bytes, maxBytes)));
  const bySize = spans
    .map((span) => ({ span, bytes: span.end - span.start }))
    .filter(({ bytes }) => bytes > note(bytes).length)
    .sort((a, b) => b.bytes - a.bytes);
  const removed = new Map<Span, Buffer>();
  let size = body.length;
  let removedBytes = 0;
  for (const { span, bytes } of bySize) {
    if (size <= maxBytes) break;
    const replacement = note(bytes);
    removed.set(span, replacement);
    size += replacement.length - bytes;
    removedBytes += bytes;
  }
  const parts: Buffer[] = [];
  let from = 0;
  for (const span of spans) {
    const replacement = removed.get(span);
    if (!replacement) continue;
    parts.push(body.subarray(from, span.start), replacement);
    from = span.end;
  }
  parts.push(body.subarray(from));
  return { body: Buffer.concat(parts, size), removedOutputs: removed.size, removedBytes };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

type Role = 'root' | 'cells' | 'cell' | 'outputs' | 'output' | 'other';

interface Frame {
  role: Role;
  isObject: boolean;
  /** In an object: the next string is a key. */
  expectKey: boolean;
  /** The current key, kept only where it decides a role (the root and the cells). */
  key: string | null;
  start: number;
}

/**
 * The byte ranges of every `cells[i].outputs[j]` value of a JSON notebook, in order, found by one
 * scan that reads keys only where they matter; null when the text is not balanced JSON with a root
 * object (cut short, or not JSON).
 */
export function outputSpans(body: Buffer): Span[] | null {
  const spans: Span[] = [];
  const stack: Frame[] = [];
  let sawRoot = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i] as number;
    if (byte === QUOTE) {
      const end = stringEnd(body, i);
      if (end < 0) return null;
      const top = stack.at(-1);
      if (top?.isObject && top.expectKey) {
        top.expectKey = false;
        top.key = top.role === 'root' || top.role === 'cell' ? body.toString('latin1', i + 1, end) : null;
      } else if (top?.role === 'outputs') {
        spans.push({ start: i, end: end + 1 });
      }
      i = end;
    } else if (byte === 0x7b || byte === 0x5b) {
      // { or [
      const parent = stack.at(-1);
      if (!parent && sawRoot) return null;
      sawRoot = true;
      const isObject = byte === 0x7b;
      stack.push({ role: roleOf(parent, isObject), isObject, expectKey: isObject, key: null, start: i });
    } else if (byte === 0x7d || byte === 0x5d) {
      // } or ]
      const frame = stack.pop();
      if (!frame || frame.isObject !== (byte === 0x7d)) return null;
      if (frame.role === 'output') spans.push({ start: frame.start, end: i + 1 });
    } else if (byte === 0x2c) {
      // ,
      const top = stack.at(-1);
      if (top?.isObject) top.expectKey = true;
    }
  }
  return sawRoot &&
    stack.length === 0 &&
    spans.every((s, k) => k === 0 || s.start >= (spans[k - 1] as Span).end)
    ? spans
    : null;
}

function roleOf(parent: Frame | undefined, isObject: boolean): Role {
  if (!parent) return isObject ? 'root' : 'other';
  if (parent.role === 'root' && parent.key === 'cells' && !isObject) return 'cells';
  if (parent.role === 'cells') return 'cell';
  if (parent.role === 'cell' && parent.key === 'outputs' && !isObject) return 'outputs';
  if (parent.role === 'outputs') return 'output';
  return 'other';
}

/** The index of the quote that closes the JSON string opened at `open`, or -1. */
function stringEnd(body: Buffer, open: number): number {
  for (let from = open + 1; ;) {
    const quote = body.indexOf(QUOTE, from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (body[quote - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}
