/**
 * The runner's limits on what a job produces: line length, log bytes, and the executed notebook's
 * size. Pure logic and temp files; the real-kernel checks are in test/integration/runner-limits.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BoundedLogSink,
  boundedOutput,
  cutUtf8,
  LineSplitter,
  LIMIT_VARIABLES,
  outputSpans,
} from '../../container/runner/limits.ts';
import { readRunnerConfig } from '../../container/runner/config.ts';
import { ConfigError } from '../../lambda/core/config.ts';
import type { LogLine, LogSink } from '../../lambda/core/ports.ts';
import { parseNotebook, parseNotebookText } from '../../lambda/notebook/notebook.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';

const bytes = (text: string) => Buffer.byteLength(text);

describe('cutUtf8', () => {
  it('leaves text that fits, and cuts the rest at a character boundary', () => {
    expect(cutUtf8('hello', 5)).toBeNull();
    expect(cutUtf8('€€', 6)).toBeNull();
    expect(cutUtf8('hello!', 5)).toBe('hello');
    expect(cutUtf8('€€€', 7)).toBe('€€');
    expect(cutUtf8('a😀b', 4)).toBe('a');
    expect(cutUtf8('a😀b', 5)).toBe('a😀');
  });

  it('gives the longest prefix of whole characters within the limit', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        fc.integer({ min: 1, max: 300 }),
        (text, max) => {
          const cut = cutUtf8(text, max);
          if (cut === null) {
            expect(bytes(text)).toBeLessThanOrEqual(max);
            return;
          }
          expect(bytes(text)).toBeGreaterThan(max);
          expect(text.startsWith(cut)).toBe(true);
          expect(bytes(cut)).toBeLessThanOrEqual(max);
          // The next character would not have fitted.
          const next = String.fromCodePoint(text.codePointAt(cut.length) as number);
          expect(bytes(cut) + bytes(next)).toBeGreaterThan(max);
        },
      ),
    );
  });
});

describe('LineSplitter', () => {
  const split = (max: number) => {
    const out: Array<[string, string, boolean]> = [];
    return {
      out,
      splitter: new LineSplitter((stream, text, truncated) => out.push([stream, text, truncated]), max),
    };
  };

  it('gives the same lines however the text is cut into chunks, per stream', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 30 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 15 }), { minLength: 1, maxLength: 10 }),
        (lines, cuts) => {
          const text = lines.join('\n');
          const { out, splitter } = split(1000);
          const { out: other, splitter: otherSplitter } = split(1000);
          let at = 0;
          for (let i = 0; at < text.length; i++) {
            const size = cuts[i % cuts.length] as number;
            splitter.push('stdout', text.slice(at, at + size));
            otherSplitter.push('stderr', 'noise\n');
            at += size;
          }
          splitter.flushAll();
          const expected = text === '' ? [] : text.split('\n').filter((l, i, all) => i < all.length - 1 || l);
          expect(out).toEqual(expected.map((l) => ['stdout', l, false]));
          expect(other.every(([stream, t]) => stream === 'stderr' && t === 'noise')).toBe(true);
        },
      ),
    );
  });

  it('emits a partial line that reaches the cap at once, truncated, and drops the rest of it', () => {
    const { out, splitter } = split(10);
    splitter.push('stdout', 'short\n0123');
    splitter.push('stdout', '45678');
    expect(out).toEqual([['stdout', 'short', false]]);
    splitter.push('stdout', '9abc');
    expect(out.at(-1)).toEqual(['stdout', '0123456789', true]);
    splitter.push('stdout', 'more of the same line'.repeat(1000));
    splitter.push('stdout', ' still\nnext\n0123456789\na😀😀😀😀😀😀');
    splitter.flushAll();
    expect(out).toEqual([
      ['stdout', 'short', false],
      ['stdout', '0123456789', true],
      ['stdout', 'next', false],
      ['stdout', '0123456789', false], // exactly the cap: whole
      ['stdout', 'a😀😀😀😀', true], // never half a surrogate pair
    ]);
  });

  it('cuts one 5 MB line fed in small chunks into one truncated line', () => {
    const { out, splitter } = split(64 * 1024);
    const chunk = 'z'.repeat(4096);
    for (let i = 0; i < 1280; i++) splitter.push('output', chunk);
    splitter.push('output', '\nafter\n');
    expect(out).toEqual([
      ['output', 'z'.repeat(64 * 1024), true],
      ['output', 'after', false],
    ]);
  });
});

describe('BoundedLogSink', () => {
  function sinkWith(maxLogBytes: number, maxLogLineBytes: number) {
    const lines: LogLine[] = [];
    const inner: LogSink = { write: (l) => void lines.push(l), flush: async () => undefined };
    return { lines, sink: new BoundedLogSink(inner, { maxLogBytes, maxLogLineBytes }) };
  }
  const line = (text: string, stream: LogLine['stream'] = 'stdout'): LogLine => ({ ts: 't', stream, text });
  const size = (l: LogLine) => bytes(JSON.stringify(l)) + 1;

  it('caps the text of a line and marks it truncated', () => {
    const { lines, sink } = sinkWith(1 << 20, 8);
    sink.write(line('12345678'));
    sink.write(line('123456789'));
    sink.write(line('ééééé'));
    sink.write({ ...line('already cut elsewhere'), truncated: true });
    expect(lines).toEqual([
      line('12345678'),
      { ...line('12345678'), truncated: true },
      { ...line('éééé'), truncated: true },
      { ...line('already '), truncated: true },
    ]);
  });

  it('keeps at most maxLogBytes, then says so once and drops output; runner notes use a small reserve', () => {
    const { lines, sink } = sinkWith(1000, 100);
    const written: LogLine[] = [];
    for (let i = 0; i < 100; i++) {
      const l = line(`line ${i} ${'x'.repeat(i % 40)}`, i % 2 ? 'stderr' : 'stdout');
      sink.write(l);
      written.push(l);
    }
    const limitAt = lines.findIndex((l) => l.text.startsWith('log limit reached'));
    expect(limitAt).toBeGreaterThan(0);
    expect(lines.slice(0, limitAt)).toEqual(written.slice(0, limitAt));
    expect(lines.slice(0, limitAt).reduce((n, l) => n + size(l), 0)).toBeLessThanOrEqual(1000);
    expect(lines[limitAt]?.text).toContain(LIMIT_VARIABLES.maxLogBytes);
    expect(lines[limitAt]?.stream).toBe('runner');
    expect(lines).toHaveLength(limitAt + 1);

    sink.write(line('dropped'));
    sink.note('executed notebook saved');
    sink.write(line('dropped too'));
    sink.note('job completed');
    expect(lines.slice(limitAt + 1).map((l) => [l.stream, l.text])).toEqual([
      ['runner', 'executed notebook saved'],
      ['runner', 'job completed'],
    ]);
    // The reserve ends too: a runner that keeps talking is bounded as well.
    for (let i = 0; i < 5000; i++) sink.note(`note ${i}`);
    expect(lines.slice(limitAt + 1).reduce((n, l) => n + size(l), 0)).toBeLessThanOrEqual(64 * 1024);
  });
});

describe('boundedOutput', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'notebook-jobs-limits-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const input = parseNotebook(makeNotebook([codeCell('print("x" * 10**6)'), codeCell('1 + 1')]));
  const stream = (text: string) => ({ output_type: 'stream', name: 'stdout', text });

  it('keeps a notebook under the limit byte for byte', async () => {
    const path = join(dir, 'small.ipynb');
    const text = JSON.stringify(input, null, 1);
    await writeFile(path, text);
    const out = boundedOutput(readFileSync(path), input, bytes(text));
    expect(out).toEqual({ body: Buffer.from(text), error: null });
  });

  it('cuts a larger notebook down under the limit and says why, naming the size, limit and setting', async () => {
    const path = join(dir, 'large.ipynb');
    const executed = {
      ...input,
      cells: [
        { ...input.cells[0], outputs: [stream('x'.repeat(1_000_000))], execution_count: 1 },
        { ...input.cells[1], outputs: [stream('2')], execution_count: 2 },
      ],
    };
    const text = JSON.stringify(executed, null, 1);
    await writeFile(path, text);
    const out = boundedOutput(readFileSync(path), input, 100_000);
    expect(out.body.length).toBeLessThanOrEqual(100_000);
    const saved = parseNotebookText(out.body);
    expect(saved.cells[0]?.outputs?.[0]).toMatchObject({ output_type: 'stream', name: 'stderr' });
    expect(saved.cells[1]?.outputs).toEqual([stream('2')]);
    expect(out.error?.type).toBe('output_too_large');
    expect(out.error?.message).toContain(`${bytes(text)} bytes`);
    expect(out.error?.message).toContain('100000 bytes');
    expect(out.error?.message).toContain(LIMIT_VARIABLES.maxOutputBytes);
  });

  it('saves the input notebook without outputs when the executed one cannot be read back', async () => {
    const path = join(dir, 'broken.ipynb');
    await writeFile(path, `{"cells": [${'"x",'.repeat(100_000)}`);
    const out = boundedOutput(readFileSync(path), input, 10_000);
    expect(out.error?.type).toBe('output_too_large');
    expect(out.error?.message).toContain('input notebook');
    const saved = parseNotebookText(out.body);
    expect(saved.cells.map((c) => c.outputs)).toEqual([[], []]);
  });
});

describe('boundedOutput without parsing the notebook', () => {
  const input = parseNotebook(makeNotebook([codeCell('print("x" * 10**6)'), codeCell('1 + 1')]));
  const tricky = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('"', '\\', '\\"', '[{', '}]', '"outputs": [', ',', '\u0000'),
  );
  const output = fc.record({ output_type: fc.constant('stream'), name: fc.constant('stdout'), text: tricky });
  const cell = fc.record({
    cell_type: fc.constant('code'),
    metadata: fc.record({
      tags: fc.array(tricky, { maxLength: 2 }),
      outputs: fc.array(tricky, { maxLength: 2 }),
    }),
    source: tricky,
    outputs: fc.array(output, { maxLength: 3 }),
  });
  const notebookOf = fc.record({
    metadata: fc.record({ cells: fc.array(tricky, { maxLength: 2 }) }),
    cells: fc.array(fc.oneof(cell, fc.record({ cell_type: fc.constant('markdown'), source: tricky })), {
      maxLength: 4,
    }),
  });

  it('finds exactly the outputs of the cells, whatever the strings hold and however it is indented', () => {
    fc.assert(
      fc.property(notebookOf, fc.constantFrom(undefined, 1, 2), (nb, indent) => {
        const body = Buffer.from(JSON.stringify(nb, null, indent));
        const spans = outputSpans(body) ?? [];
        const found = spans.map((s) => JSON.parse(body.toString('utf8', s.start, s.end)) as unknown);
        expect(found).toEqual(nb.cells.flatMap((c) => ('outputs' in c ? c.outputs : [])));
      }),
    );
  });

  it('refuses text that is not one balanced JSON value', () => {
    for (const text of ['{"cells": [', '{"cells": "x}', '{}{}', '{"cells": [}]}', ''])
      expect(outputSpans(Buffer.from(text))).toBeNull();
  });

  it('replaces only the largest outputs and keeps every other byte as it was', () => {
    const outputs = [1_000, 50_000, 20_000, 30].map((n, i) => ({
      output_type: 'stream',
      name: 'stdout',
      text: `${i}`.repeat(n),
    }));
    const executed = {
      ...input,
      cells: [
        { ...input.cells[0], outputs },
        { ...input.cells[1], outputs: [] },
      ],
    };
    const text = JSON.stringify(executed, null, 2); // not nbformat's indent: bytes are kept, not rewritten
    const out = boundedOutput(Buffer.from(text), input, 40_000);
    expect(out.body.length).toBeLessThanOrEqual(40_000);
    const saved = parseNotebookText(out.body);
    expect(saved.cells[0]?.outputs?.map((o) => (o.name === 'stderr' ? 'note' : o.text))).toEqual([
      outputs[0]?.text,
      'note',
      outputs[2]?.text,
      outputs[3]?.text,
    ]);
    expect(out.error?.message).toContain('its 1 largest outputs');
    const at = text.indexOf('"cells"');
    expect(out.body.subarray(0, at + 100).toString()).toBe(text.slice(0, at + 100));
  });
});

describe('runner configuration of the limits', () => {
  const base = { NOTEBOOK_JOBS_TABLE: 't', NOTEBOOK_JOBS_DATA: '/data' };

  it('has defaults and reads each variable', () => {
    expect(readRunnerConfig(base, ['job_x']).limits).toEqual({
      maxLogBytes: 64 * 1024 * 1024,
      maxLogLineBytes: 64 * 1024,
      maxOutputBytes: 50 * 1024 * 1024,
      maxOutputFiles: 100,
      maxOutputFilesBytes: 100 * 1024 * 1024,
    });
    const env = {
      ...base,
      NOTEBOOK_JOBS_MAX_LOG_BYTES: '100000',
      NOTEBOOK_JOBS_MAX_LOG_LINE_BYTES: '1024',
      NOTEBOOK_JOBS_MAX_OUTPUT_BYTES: '2048',
      NOTEBOOK_JOBS_MAX_OUTPUT_FILES: '7',
      NOTEBOOK_JOBS_MAX_OUTPUT_FILES_BYTES: '4096',
    };
    expect(readRunnerConfig(env, ['job_x']).limits).toEqual({
      maxLogBytes: 100_000,
      maxLogLineBytes: 1024,
      maxOutputBytes: 2048,
      maxOutputFiles: 7,
      maxOutputFilesBytes: 4096,
    });
  });

  it.each([
    ['NOTEBOOK_JOBS_MAX_LOG_BYTES', '10'],
    ['NOTEBOOK_JOBS_MAX_LOG_LINE_BYTES', '1000000'],
    ['NOTEBOOK_JOBS_MAX_OUTPUT_BYTES', '1.5'],
    ['NOTEBOOK_JOBS_MAX_OUTPUT_BYTES', 'lots'],
  ])('rejects %s=%s, naming it', (name, value) => {
    expect(() => readRunnerConfig({ ...base, [name]: value }, ['job_x'])).toThrow(ConfigError);
    expect(() => readRunnerConfig({ ...base, [name]: value }, ['job_x'])).toThrow(name);
  });
});
