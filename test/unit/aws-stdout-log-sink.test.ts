/**
 * The stdout log sink (AWS mode) and its parser: every LogLine becomes one JSON line that
 * parseLogLine turns back into the same LogLine, whatever the text holds.
 */
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonLineBytes, parseLogLine, StdoutLogSink } from '../../lambda/adapters/stdout-log-sink.ts';
import type { LogLine } from '../../lambda/core/ports.ts';

function capture(): { sink: StdoutLogSink; written: string[] } {
  const written: string[] = [];
  return { sink: new StdoutLogSink((line) => void written.push(line)), written };
}

const streams = fc.constantFrom<LogLine['stream']>('stdout', 'stderr', 'output', 'runner');

describe('StdoutLogSink + parseLogLine', () => {
  it('writes one line per LogLine and reads it back unchanged: newlines, quotes, unicode', async () => {
    const { sink, written } = capture();
    const lines: LogLine[] = [
      { ts: '2026-05-01T10:00:00.000Z', stream: 'stdout', text: 'loss=0.25' },
      {
        ts: '2026-05-01T10:00:01.000Z',
        stream: 'stderr',
        text: 'Traceback:\n  File "x.py"\r\n\tZeroDivisionError',
      },
      { ts: '2026-05-01T10:00:02.000Z', stream: 'output', text: 'héllo 世界 🚀 \u0000\u001f \\ "' },
      { ts: '2026-05-01T10:00:03.000Z', stream: 'runner', text: '' },
    ];
    for (const line of lines) sink.write(line);
    await sink.flush();

    expect(written).toHaveLength(4);
    for (const text of written) expect(text).not.toMatch(/[\n\r]/);
    expect(written.map(parseLogLine)).toEqual(lines);
  });

  it('round-trips any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), streams, (text, stream) => {
        const { sink, written } = capture();
        const line = { ts: '2026-05-01T10:00:00.000Z', stream, text };
        sink.write(line);
        expect(written).toHaveLength(1);
        expect(parseLogLine(written[0]!)).toEqual(line);
      }),
    );
  });

  it('counts the bytes of a line as JSON.stringify writes it, for any text, plain or escaped', () => {
    const texts = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }),
    );
    fc.assert(
      fc.property(texts, streams, fc.constantFrom(undefined, true), (text, stream, truncated) => {
        const line: LogLine = {
          ts: '2026-05-01T10:00:00.123Z',
          stream,
          text,
          ...(truncated ? { truncated } : {}),
        };
        expect(jsonLineBytes(line)).toBe(Buffer.byteLength(JSON.stringify(line)) + 1);
      }),
    );
  });

  it('splits a text too long for one Docker log message into lines that each stay parseable', () => {
    const { sink, written } = capture();
    // Three UTF-16 units per repeat, so a naive cut at a fixed length would split a surrogate pair.
    const text = `${'\n🚀'.repeat(8000)}end`; // ~48 KB of JSON once escaped
    sink.write({ ts: '2026-05-01T10:00:00.000Z', stream: 'stdout', text });

    expect(written.length).toBeGreaterThan(1);
    const parsed = written.map(parseLogLine);
    for (const [i, raw] of written.entries()) {
      expect(Buffer.byteLength(raw)).toBeLessThan(16 * 1024);
      expect(parsed[i]).toMatchObject({ ts: '2026-05-01T10:00:00.000Z', stream: 'stdout' });
    }
    // Nothing lost, nothing duplicated, no surrogate pair cut in half.
    expect(parsed.map((l) => l!.text).join('')).toBe(text);
    const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
    for (const line of parsed) expect(line!.text).not.toMatch(loneSurrogate);
  });

  it('keeps the truncated mark, on every piece of a split line', () => {
    const { sink, written } = capture();
    const cut: LogLine = {
      ts: '2026-05-01T10:00:00.000Z',
      stream: 'stdout',
      text: 'x'.repeat(40_000),
      truncated: true,
    };
    sink.write(cut);
    sink.write({ ...cut, text: 'short' });
    sink.write({ ...cut, text: 'whole', truncated: false });
    const parsed = written.map(parseLogLine);
    expect(parsed.length).toBeGreaterThan(3);
    expect(parsed.slice(0, -2).every((l) => l?.truncated === true)).toBe(true);
    expect(parsed.slice(-2)).toEqual([
      { ...cut, text: 'short' },
      { ts: cut.ts, stream: 'stdout', text: 'whole' },
    ]);
  });

  it('does not take other output for a log line', () => {
    for (const text of [
      '',
      'plain text',
      '{"ts": "x", "stream": "stdout"}',
      '{"ts": "x", "stream": "bogus", "text": "t"}',
      '{"ts": 1, "stream": "stdout", "text": "t"}',
      '[1,2]',
      '{broken',
      'null',
    ]) {
      expect(parseLogLine(text)).toBeNull();
    }
  });
});

describe('StdoutLogSink backpressure', () => {
  it('says it is behind while its stream holds more than it should, and drained() waits for the reader', async () => {
    const out = new PassThrough({ highWaterMark: 1024 });
    const sink = new StdoutLogSink(out);
    expect(sink.backlogged).toBe(false);
    let written = 0;
    while (!sink.backlogged) {
      sink.write({ ts: '2026-05-01T10:00:00.000Z', stream: 'stdout', text: `line ${written++}` });
    }
    let drained = false;
    const waiting = sink.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBe(false); // nobody reads the stream yet

    const lines: string[] = [];
    out.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    await waiting;
    expect(sink.backlogged).toBe(false);
    expect(lines.map((l) => parseLogLine(l)?.text)).toEqual(
      Array.from({ length: written }, (_, i) => `line ${i}`),
    );
  });
});
