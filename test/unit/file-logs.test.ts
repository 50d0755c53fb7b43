/**
 * Job logs as JSON-lines files (local mode): FileLogSink writes them, FileLogReader pages through
 * them by byte offset. Real files in a temp folder; no server.
 */
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FileLogReader,
  FileLogSink,
  jobLogPath,
  MAX_LINE_BYTES,
  TRUNCATED_LINE_CHARS,
} from '../../lambda/adapters/file-logs.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import type { LogLine, LogPage } from '../../lambda/core/ports.ts';

let folder: string;
let reader: FileLogReader;
let jobCounter = 0;

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'notebook-jobs-logs-'));
  reader = new FileLogReader(folder);
});
afterAll(async () => {
  if (folder) await rm(folder, { recursive: true, force: true });
});

const newJob = () => `job_test${String(++jobCounter).padStart(6, '0')}`;

function line(text: string, stream: LogLine['stream'] = 'stdout'): LogLine {
  return { ts: '2026-01-02T03:04:05.678Z', stream, text };
}

const logOfJob = (jobId: string) => ({ job_id: jobId, runner_ref: null });

/** Writes `lines` to a new job's log through the sink and returns the job id. */
async function logOf(lines: LogLine[], jobId = newJob()): Promise<string> {
  const sink = new FileLogSink(jobLogPath(folder, jobId), 10_000);
  for (const l of lines) sink.write(l);
  await sink.close();
  return jobId;
}

const texts = (page: LogPage) => page.lines.map((l) => l.text);
const sizeOf = async (jobId: string) => (await stat(jobLogPath(folder, jobId))).size;

/** Reads a job's log from `cursor` page by page until at_end; returns every page. */
async function pages(jobId: string, limit: number, cursor?: string): Promise<LogPage[]> {
  const out: LogPage[] = [];
  for (;;) {
    const page = await reader.read(logOfJob(jobId), { limit, ...(cursor === undefined ? {} : { cursor }) });
    out.push(page);
    cursor = page.next_cursor;
    if (page.at_end) return out;
    if (out.length > 10_000) throw new Error('paging does not end');
  }
}

describe('paging', () => {
  it('never skips or repeats a line, whatever the line count and page size', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: 'grapheme', maxLength: 40 }), { maxLength: 120 }),
        fc.integer({ min: 1, max: 30 }),
        async (written, limit) => {
          const lines = written.map((text, i) => line(text, i % 3 === 0 ? 'stderr' : 'stdout'));
          const jobId = await logOf(lines);
          const all = await pages(jobId, limit);
          // Every page but the last is full; the last ends at the end of the log.
          for (const page of all.slice(0, -1)) {
            expect(page.lines).toHaveLength(limit);
            expect(page.at_end).toBe(false);
          }
          expect(all.at(-1)?.lines.length).toBeLessThanOrEqual(limit);
          expect(all).toHaveLength(Math.max(1, Math.ceil(lines.length / limit)));
          expect(all.flatMap((p) => p.lines)).toEqual(lines);
          expect(all.at(-1)?.next_cursor).toBe(String(await sizeOf(jobId)));
          // Resuming from the end gives nothing more.
          const after = await reader.read(logOfJob(jobId), { limit, cursor: all.at(-1)?.next_cursor });
          expect(after).toEqual({ lines: [], next_cursor: all.at(-1)?.next_cursor, at_end: true });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reports at_end only when the page reached the current end of the log', async () => {
    const jobId = await logOf(['a', 'b', 'c', 'd', 'e'].map((t) => line(t)));
    const all = await pages(jobId, 2);
    expect(all.map((p) => [texts(p), p.at_end])).toEqual([
      [['a', 'b'], false],
      [['c', 'd'], false],
      [['e'], true],
    ]);
    // A page that fills its limit exactly at the end of the file is at the end too.
    const exact = await pages(jobId, 5);
    expect(exact.map((p) => [texts(p), p.at_end])).toEqual([[['a', 'b', 'c', 'd', 'e'], true]]);

    // Lines appended later are read from the last cursor, and the page is at the end again.
    const sink = new FileLogSink(jobLogPath(folder, jobId), 10_000);
    sink.write(line('f'));
    sink.write(line('g'));
    await sink.close();
    const more = await reader.read(logOfJob(jobId), { limit: 10, cursor: all.at(-1)?.next_cursor });
    expect(texts(more)).toEqual(['f', 'g']);
    expect(more.at_end).toBe(true);
  });

  it('gives an empty page at the end for an empty log file', async () => {
    const jobId = newJob();
    await writeFile(jobLogPath(folder, jobId), '');
    expect(await reader.read(logOfJob(jobId), { limit: 10 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
    expect(await reader.read(logOfJob(jobId), { limit: 10, tail: 5 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
  });
});

describe('a half-written last line', () => {
  it('is not returned until its newline arrives, then exactly once', async () => {
    const jobId = await logOf([line('one'), line('two')]);
    const complete = await sizeOf(jobId);
    const partial = JSON.stringify(line('three, written in two parts ✓'));
    const cut = partial.length - 12;
    await appendFile(jobLogPath(folder, jobId), partial.slice(0, cut));

    const first = await reader.read(logOfJob(jobId), { limit: 100 });
    expect(texts(first)).toEqual(['one', 'two']);
    expect(first.next_cursor).toBe(String(complete));
    expect(first.at_end).toBe(true);
    // Asking again while the line is still half-written gives nothing and keeps the cursor.
    const waiting = await reader.read(logOfJob(jobId), { limit: 100, cursor: first.next_cursor });
    expect(waiting).toEqual({ lines: [], next_cursor: String(complete), at_end: true });
    const tail = await reader.read(logOfJob(jobId), { limit: 100, tail: 1 });
    expect(texts(tail)).toEqual(['two']);
    expect(tail.next_cursor).toBe(String(complete));

    await appendFile(jobLogPath(folder, jobId), `${partial.slice(cut)}\n`);
    const next = await reader.read(logOfJob(jobId), { limit: 100, cursor: waiting.next_cursor });
    expect(texts(next)).toEqual(['three, written in two parts ✓']);
    expect(next.at_end).toBe(true);
    const again = await reader.read(logOfJob(jobId), { limit: 100, cursor: next.next_cursor });
    expect(again.lines).toEqual([]);
    // The line read from the tail's cursor is the same line, once.
    expect(texts(await reader.read(logOfJob(jobId), { limit: 100, cursor: tail.next_cursor }))).toEqual([
      'three, written in two parts ✓',
    ]);
    // Read from the start, every line comes exactly once.
    expect((await pages(jobId, 2)).flatMap(texts)).toEqual(['one', 'two', 'three, written in two parts ✓']);
  });

  it('alone in the file gives an empty page from the start and from the tail', async () => {
    const jobId = newJob();
    await writeFile(jobLogPath(folder, jobId), '{"ts":"x","stream":"stdout","te');
    expect(await reader.read(logOfJob(jobId), { limit: 10 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
    expect(await reader.read(logOfJob(jobId), { limit: 10, tail: 3 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
  });
});

describe('tail', () => {
  it('returns the last N complete lines and a cursor from which later lines are read', async () => {
    const lines = Array.from({ length: 10 }, (_, i) => line(`line ${i}`));
    const jobId = await logOf(lines);
    const tail = await reader.read(logOfJob(jobId), { limit: 100, tail: 3 });
    expect(texts(tail)).toEqual(['line 7', 'line 8', 'line 9']);
    expect(tail.at_end).toBe(true);
    expect(tail.next_cursor).toBe(String(await sizeOf(jobId)));

    // More than there are: all of them.
    expect(texts(await reader.read(logOfJob(jobId), { limit: 100, tail: 50 }))).toEqual(
      lines.map((l) => l.text),
    );
    expect(texts(await reader.read(logOfJob(jobId), { limit: 100, tail: 10 }))).toEqual(
      lines.map((l) => l.text),
    );

    await logOf([line('line 10'), line('line 11', 'runner')], jobId);
    const later = await reader.read(logOfJob(jobId), { limit: 100, cursor: tail.next_cursor });
    expect(later.lines).toEqual([line('line 10'), line('line 11', 'runner')]);
    expect(later.at_end).toBe(true);
  });

  it('finds the last N lines of a log spanning many read chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3000 }),
        fc.integer({ min: 1, max: 3000 }),
        fc.integer({ min: 0, max: 300 }),
        async (count, n, padding) => {
          const lines = Array.from({ length: count }, (_, i) =>
            line(`${i} ${'x'.repeat((i * 37) % padding)}`),
          );
          const jobId = await logOf(lines);
          const tail = await reader.read(logOfJob(jobId), { limit: 100, tail: n });
          expect(tail.lines).toEqual(lines.slice(-n));
          expect(tail.next_cursor).toBe(String(await sizeOf(jobId)));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('finds the last N lines when some lines are longer than a read chunk', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            { weight: 3, arbitrary: fc.integer({ min: 0, max: 300 }) },
            { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 140_000 }) },
          ),
          { minLength: 1, maxLength: 30 },
        ),
        fc.integer({ min: 1, max: 35 }),
        async (lengths, n) => {
          const lines = lengths.map((length, i) => line(`${i}:${'é'.repeat(length)}`));
          const jobId = await logOf(lines);
          const tail = await reader.read(logOfJob(jobId), { limit: 100, tail: n });
          expect(tail.lines.map((l) => l.text.slice(0, 8))).toEqual(
            lines.slice(-n).map((l) => l.text.slice(0, 8)),
          );
          expect(tail.lines).toEqual(lines.slice(-n));
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('bad and missing input', () => {
  it('gives an empty page at the end for a job with no log file', async () => {
    expect(await reader.read(logOfJob('job_never_written'), { limit: 10 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
    expect(await reader.read(logOfJob('job_never_written'), { limit: 10, tail: 5 })).toEqual({
      lines: [],
      next_cursor: '0',
      at_end: true,
    });
    const resumed = await reader.read(logOfJob('job_never_written'), { limit: 10, cursor: '120' });
    expect(resumed.lines).toEqual([]);
    expect(resumed.at_end).toBe(true);
  });

  it.each(['abc', '-1', '1.5', '1e3', ' 12', '0x10', '', '1234567890123456'])(
    'rejects the offset %j',
    async (cursor) => {
      const jobId = await logOf([line('a')]);
      const read = reader.read(logOfJob(jobId), { limit: 10, cursor });
      await expect(read).rejects.toBeInstanceOf(InvalidRequestError);
      await expect(read).rejects.toThrow(/cursor/);
    },
  );

  it('an offset past the end of the file gives an empty page at the end', async () => {
    const jobId = await logOf([line('a'), line('b')]);
    const page = await reader.read(logOfJob(jobId), { limit: 10, cursor: '999999' });
    expect(page.lines).toEqual([]);
    expect(page.at_end).toBe(true);
  });

  it('keeps the text of a line that is not JSON', async () => {
    const jobId = newJob();
    await writeFile(
      jobLogPath(folder, jobId),
      'plain text, not JSON\n{"ts":"t","stream":"stdout","text":"ok"}\n',
    );
    expect((await reader.read(logOfJob(jobId), { limit: 10 })).lines).toEqual([
      { ts: '', stream: 'runner', text: 'plain text, not JSON' },
      { ts: 't', stream: 'stdout', text: 'ok' },
    ]);
  });
});

describe('content', () => {
  const unicode = [
    'naïve café — 日本語のテキスト — עברית — Ελληνικά',
    'emoji 👩‍🔬🧪 and flags 🇺🇦🇯🇵, combining é, zero width \u200b',
    'line\nseparators\r\nin the text \u2028 \u2029 and a tab\t',
    '',
    '"quotes" and \\backslashes\\ and {"json": [1, 2]}',
  ];

  it('keeps unicode text intact through paging and tail', async () => {
    const lines = unicode.map((text) => line(text));
    const jobId = await logOf(lines);
    expect((await pages(jobId, 1)).flatMap((p) => p.lines)).toEqual(lines);
    expect((await reader.read(logOfJob(jobId), { limit: 100, tail: 2 })).lines).toEqual(lines.slice(-2));
  });

  it('keeps lines longer than the 64 KiB read chunk intact, also across multi-byte characters', async () => {
    // 3-byte and 4-byte characters, so chunk boundaries fall inside characters.
    const long1 = `${'€'.repeat(30_000)}|end of first`; // ~90 KB
    const long2 = `${'a'.repeat(65_535)}${'😀'.repeat(40_000)}|end of second`; // ~225 KB
    const lines = [line('short before'), line(long1), line('short middle'), line(long2), line('short after')];
    const jobId = await logOf(lines);
    expect(await sizeOf(jobId)).toBeGreaterThan(3 * 64 * 1024);

    for (const limit of [1, 2, 100])
      expect((await pages(jobId, limit)).flatMap((p) => p.lines)).toEqual(lines);
    for (const n of [1, 2, 3, 5]) {
      expect((await reader.read(logOfJob(jobId), { limit: 100, tail: n })).lines).toEqual(lines.slice(-n));
    }
    // A long last line still being written waits, then comes whole.
    const long3 = JSON.stringify(line(`${'ж'.repeat(70_000)}|end of third`));
    const before = await reader.read(logOfJob(jobId), { limit: 100, tail: 1 });
    await appendFile(jobLogPath(folder, jobId), long3.slice(0, 100_000));
    const waiting = await reader.read(logOfJob(jobId), { limit: 100, cursor: before.next_cursor });
    expect(waiting).toEqual({ lines: [], next_cursor: before.next_cursor, at_end: true });
    expect((await reader.read(logOfJob(jobId), { limit: 100, tail: 1 })).lines).toEqual([
      line('short after'),
    ]);
    await appendFile(jobLogPath(folder, jobId), `${long3.slice(100_000)}\n`);
    const done = await reader.read(logOfJob(jobId), { limit: 100, cursor: waiting.next_cursor });
    expect(texts(done)).toEqual([`${'ж'.repeat(70_000)}|end of third`]);
    expect(done.at_end).toBe(true);
  });
});

describe('FileLogSink', () => {
  it('writes lines in order, batching until flush, and across many flushes', async () => {
    const jobId = newJob();
    const sink = new FileLogSink(jobLogPath(folder, jobId), 10_000);
    sink.write(line('first'));
    // Not flushed yet: the batch waits for flush (or its timer).
    expect(await reader.read(logOfJob(jobId), { limit: 10 })).toMatchObject({ lines: [], at_end: true });
    await sink.flush();
    expect(texts(await reader.read(logOfJob(jobId), { limit: 10 }))).toEqual(['first']);
    const expected = ['first'];
    for (let i = 0; i < 200; i++) {
      sink.write(line(`n${i}`));
      expected.push(`n${i}`);
      if (i % 7 === 0) void sink.flush();
    }
    await sink.close();
    expect((await pages(jobId, 37)).flatMap(texts)).toEqual(expected);
  });

  it('flushes by itself after flushMs, and at once when half a buffer (128 KiB) is full', async () => {
    const jobId = newJob();
    const sink = new FileLogSink(jobLogPath(folder, jobId), 50);
    sink.write(line('timed'));
    await new Promise((r) => setTimeout(r, 300));
    expect(texts(await reader.read(logOfJob(jobId), { limit: 10 }))).toEqual(['timed']);

    const big = 'b'.repeat(100 * 1024);
    for (let i = 0; i < 3; i++) sink.write(line(`${i}${big}`));
    await new Promise((r) => setTimeout(r, 30)); // well under flushMs; the size flushed them
    expect((await reader.read(logOfJob(jobId), { limit: 10 })).lines).toHaveLength(4);
    await sink.close();
  });

  it('writes every line byte for byte as JSON.stringify does: plain and escaped, cut, across buffers', async () => {
    const texts = fc.oneof(
      fc.string({
        unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        maxLength: 300,
      }),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.constant('z'.repeat(1500)), // longer than a buffer
    );
    const lines = fc.array(
      fc.record(
        {
          ts: fc.constantFrom('2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.679Z'),
          stream: fc.constantFrom<LogLine['stream']>('stdout', 'stderr', 'output', 'runner'),
          text: texts,
          truncated: fc.constant(true as const),
        },
        { requiredKeys: ['ts', 'stream', 'text'] },
      ),
      { maxLength: 40 },
    );
    await fc.assert(
      fc.asyncProperty(lines, async (written) => {
        const path = jobLogPath(folder, newJob());
        const sink = new FileLogSink(path, 10_000, 1024);
        for (const l of written) sink.write(l);
        await sink.close();
        const expected = written.map((l) => `${JSON.stringify(l)}\n`).join('');
        expect(await readFile(path, 'utf8').catch(() => '')).toBe(expected);
      }),
      { numRuns: 60 },
    );
  });

  it('creates the log folder and appends to an existing log', async () => {
    const nested = join(folder, 'nested', 'deeper');
    const path = jobLogPath(nested, 'job_nested');
    const first = new FileLogSink(path, 10_000);
    first.write(line('from the first runner'));
    await first.close();
    const second = new FileLogSink(path, 10_000);
    second.write(line('from a second attempt'));
    await second.close();
    expect(texts(await new FileLogReader(nested).read(logOfJob('job_nested'), { limit: 10 }))).toEqual([
      'from the first runner',
      'from a second attempt',
    ]);
  });
});

describe('bounded reading', () => {
  const raw = (l: LogLine) => `${JSON.stringify(l)}\n`;

  it('crosses one 50 MB line: tail and paging return it cut and marked, never twice', async () => {
    const jobId = newJob();
    const path = jobLogPath(folder, jobId);
    const before = line('before');
    const huge = line(`start of the long line ${'y'.repeat(50_000_000)}`);
    const after = Array.from({ length: 10 }, (_, i) => line(`after ${i}`, i % 2 ? 'stderr' : 'stdout'));
    await writeFile(path, raw(before) + raw(huge));
    for (const l of after) await appendFile(path, raw(l));
    const cut = { ...huge, text: huge.text.slice(0, TRUNCATED_LINE_CHARS), truncated: true };

    const tail = await reader.read(logOfJob(jobId), { limit: 100, tail: 10 });
    expect(tail.lines).toEqual(after);
    expect(tail.next_cursor).toBe(String(await sizeOf(jobId)));
    const longer = await reader.read(logOfJob(jobId), { limit: 100, tail: 11 });
    expect(longer.lines).toEqual([cut, ...after]);
    expect((await reader.read(logOfJob(jobId), { limit: 100, tail: 50 })).lines).toEqual([
      before,
      cut,
      ...after,
    ]);

    for (const limit of [1, 2, 5, 500]) {
      const all = await pages(jobId, limit);
      expect(all.flatMap((p) => p.lines)).toEqual([before, cut, ...after]);
      expect(all.at(-1)?.next_cursor).toBe(String(await sizeOf(jobId)));
    }
    // A page that ends just before the long line is not at the end, and resumes across it.
    const first = await reader.read(logOfJob(jobId), { limit: 1 });
    expect(first).toMatchObject({ lines: [before], at_end: false });
    const second = await reader.read(logOfJob(jobId), { limit: 1, cursor: first.next_cursor });
    expect(second.lines).toEqual([cut]);
    expect(Number(second.next_cursor)).toBe(raw(before).length + raw(huge).length);
  });

  it('keeps a line of exactly MAX_LINE_BYTES whole and cuts one a byte longer', async () => {
    const envelope = raw(line('')).length - 1;
    const exact = line('e'.repeat(MAX_LINE_BYTES - envelope));
    const over = line('o'.repeat(MAX_LINE_BYTES - envelope + 1));
    expect(Buffer.byteLength(JSON.stringify(exact))).toBe(MAX_LINE_BYTES);
    const jobId = newJob();
    await writeFile(jobLogPath(folder, jobId), raw(exact) + raw(over) + raw(line('end')));
    const expected = [exact, { ...over, text: over.text.slice(0, TRUNCATED_LINE_CHARS), truncated: true }];
    expect((await pages(jobId, 1)).flatMap((p) => p.lines)).toEqual([...expected, line('end')]);
    expect((await reader.read(logOfJob(jobId), { limit: 10, tail: 3 })).lines).toEqual([
      ...expected,
      line('end'),
    ]);
  });

  it('cuts a long line wherever escapes and multi-byte characters fall, keeping a prefix of its text', async () => {
    const unit = 'a"\\\n€😀\u0001é\t';
    for (let pad = 0; pad < 12; pad++) {
      const text = 'p'.repeat(pad) + unit.repeat(Math.ceil(MAX_LINE_BYTES / 8));
      const jobId = await logOf([line(text, 'output'), line('next')]);
      const [got, next] = (await reader.read(logOfJob(jobId), { limit: 10 })).lines;
      expect(got).toMatchObject({ ts: line('').ts, stream: 'output', truncated: true });
      expect(got?.text.length).toBeGreaterThanOrEqual(TRUNCATED_LINE_CHARS - 1);
      expect(got?.text.length).toBeLessThanOrEqual(TRUNCATED_LINE_CHARS);
      expect(text.startsWith(got?.text ?? 'missing')).toBe(true);
      expect(next).toEqual(line('next'));
    }
  });

  it('reads CRLF line endings and keeps the text of garbage lines, long ones cut', async () => {
    const jobId = newJob();
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x41, 0xc3]); // not UTF-8
    await writeFile(
      jobLogPath(folder, jobId),
      Buffer.concat([
        Buffer.from(`${JSON.stringify(line('crlf json'))}\r\nplain crlf\r\n`),
        Buffer.from(
          'null\n42\n[1,2]\n{"ts":1,"stream":"stdout","text":"x"}\n{"ts":"t","stream":"nope","text":"x"}\n\n',
        ),
        garbage,
        Buffer.from(`\n${'g'.repeat(3 * MAX_LINE_BYTES)}\r\n{"ts":"t","stream":"runner","text":"last"}\n`),
      ]),
    );
    const expected: LogLine[] = [
      line('crlf json'),
      { ts: '', stream: 'runner', text: 'plain crlf' },
      ...[
        'null',
        '42',
        '[1,2]',
        '{"ts":1,"stream":"stdout","text":"x"}',
        '{"ts":"t","stream":"nope","text":"x"}',
        '',
      ].map((text): LogLine => ({ ts: '', stream: 'runner', text })),
      { ts: '', stream: 'runner', text: garbage.toString('utf8') },
      { ts: '', stream: 'runner', text: 'g'.repeat(TRUNCATED_LINE_CHARS), truncated: true },
      { ts: 't', stream: 'runner', text: 'last' },
    ];
    for (const limit of [1, 3, 100])
      expect((await pages(jobId, limit)).flatMap((p) => p.lines)).toEqual(expected);
    for (const n of [1, 2, 3, 20])
      expect((await reader.read(logOfJob(jobId), { limit: 100, tail: n })).lines).toEqual(expected.slice(-n));
  });

  it('waits for a half-written long last line, then returns it once, cut', async () => {
    const jobId = await logOf([line('one')]);
    const path = jobLogPath(folder, jobId);
    const complete = await sizeOf(jobId);
    const long = JSON.stringify(line('w'.repeat(3 * MAX_LINE_BYTES)));
    await appendFile(path, long.slice(0, 2 * MAX_LINE_BYTES));

    const first = await reader.read(logOfJob(jobId), { limit: 10 });
    expect(first).toEqual({ lines: [line('one')], next_cursor: String(complete), at_end: true });
    const full = await reader.read(logOfJob(jobId), { limit: 1 });
    expect(full).toEqual({ lines: [line('one')], next_cursor: String(complete), at_end: true });
    const tail = await reader.read(logOfJob(jobId), { limit: 10, tail: 2 });
    expect(tail).toEqual({ lines: [line('one')], next_cursor: String(complete), at_end: true });

    await appendFile(path, `${long.slice(2 * MAX_LINE_BYTES)}\n`);
    const next = await reader.read(logOfJob(jobId), { limit: 10, cursor: first.next_cursor });
    expect(next.lines).toEqual([{ ...line('w'.repeat(TRUNCATED_LINE_CHARS)), truncated: true }]);
    expect(next.at_end).toBe(true);
    expect((await reader.read(logOfJob(jobId), { limit: 10, cursor: next.next_cursor })).lines).toEqual([]);
  });
});

describe('FileLogSink backpressure', () => {
  it('says it is behind once its buffers are full, and drained() waits until the lines are written', async () => {
    const jobId = newJob();
    const sink = new FileLogSink(jobLogPath(folder, jobId), 10_000, 4096);
    expect(sink.backlogged).toBe(false);
    await sink.drained(); // not behind: resolves at once
    const expected: string[] = [];
    for (let i = 0; !sink.backlogged; i++) {
      sink.write(line(`line ${i} ${'x'.repeat(100)}`));
      expected.push(`line ${i} ${'x'.repeat(100)}`);
    }
    // write() took everything (nothing is dropped); it is queued until the disk catches up.
    let drained = false;
    const waiting = sink.drained().then(() => (drained = true));
    expect(drained).toBe(false);
    await waiting;
    expect(sink.backlogged).toBe(false);
    await sink.close();
    expect((await pages(jobId, 1000)).flatMap(texts)).toEqual(expected);
  });

  it('keeps what waits bounded for a producer that waits while it is behind, in order, lines longer than a buffer too', async () => {
    const jobId = newJob();
    const bufferBytes = 4096;
    const sink = new FileLogSink(jobLogPath(folder, jobId), 10_000, bufferBytes);
    const expected: string[] = [];
    let maxQueued = 0;
    for (let i = 0; i < 5000; i++) {
      const text = i % 1000 === 999 ? `long ${'y'.repeat(3 * bufferBytes)}` : `n${i}`;
      sink.write(line(text));
      expected.push(text);
      maxQueued = Math.max(maxQueued, sink.queued);
      if (sink.backlogged) await sink.drained();
    }
    await sink.close();
    // At most a full buffer and the one line that did not fit in it.
    const longest = Buffer.byteLength(JSON.stringify(line(expected[999] as string))) + 1;
    expect(maxQueued).toBeLessThanOrEqual(bufferBytes + longest);
    expect((await pages(jobId, 700)).flatMap(texts)).toEqual(expected);
  });
});
