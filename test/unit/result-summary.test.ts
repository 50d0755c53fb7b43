import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import {
  parseNotebook,
  type Notebook,
  type NotebookCell,
  type NotebookOutput,
} from '../../lambda/notebook/notebook.ts';
import { stripAnsi, summarizeNotebook } from '../../lambda/notebook/result-summary.ts';

function nb(cells: Array<Partial<NotebookCell>>): Notebook {
  return parseNotebook({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: cells.map((cell, i) => ({ id: `c${i}`, cell_type: 'code', source: 'x', metadata: {}, ...cell })),
  });
}

const stream = (text: string, name = 'stdout'): NotebookOutput => ({ output_type: 'stream', name, text });
const result = (data: Record<string, unknown>, count = 1): NotebookOutput => ({
  output_type: 'execute_result',
  execution_count: count,
  data,
  metadata: {},
});
const display = (data: Record<string, unknown>): NotebookOutput => ({
  output_type: 'display_data',
  data,
  metadata: {},
});

describe('summarizeNotebook: statuses and totals', () => {
  // An nbclient-executed notebook that stopped at an error.
  const executed = nb([
    { cell_type: 'markdown', source: '# Title' },
    { source: 'import math', execution_count: 1, outputs: [] },
    { source: '   \n', execution_count: null, outputs: [] },
    { source: 'print("hi")', execution_count: 2, outputs: [stream('hi\n')] },
    {
      source: '1 / 0',
      execution_count: 3,
      outputs: [
        {
          output_type: 'error',
          ename: 'ZeroDivisionError',
          evalue: 'division by zero',
          traceback: [
            '\u001b[0;31m---------\u001b[0m',
            '\u001b[0;31mZeroDivisionError\u001b[0m: division by zero',
          ],
        },
      ],
    },
    { source: 'print("never")', execution_count: null, outputs: [] },
  ]);

  it('classifies each code cell and counts them', () => {
    const summary = summarizeNotebook(executed);
    expect(summary.cells.map((c) => [c.index, c.status, c.execution_count])).toEqual([
      [1, 'ok', 1],
      [2, 'skipped', null],
      [3, 'ok', 2],
      [4, 'error', 3],
      [5, 'not_run', null],
    ]);
    expect(summary.totals).toEqual({ code_cells: 5, ok: 2, error: 1, skipped: 1, not_run: 1 });
  });

  it('reports the first error with its traceback free of ANSI codes', () => {
    const summary = summarizeNotebook(executed);
    const expected = {
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
      traceback: ['---------', 'ZeroDivisionError: division by zero'],
    };
    expect(summary.error).toEqual({ cell_index: 4, ...expected });
    expect(summary.cells[3]?.error).toEqual(expected);
    expect(summary.cells[3]?.output_text).toBe('---------\nZeroDivisionError: division by zero');
    expect(summary.cells[0]?.error).toBeUndefined();
  });

  it('gives previews and output text', () => {
    const summary = summarizeNotebook(executed);
    expect(summary.cells[2]).toMatchObject({
      source_preview: 'print("hi")',
      output_text: 'hi\n',
      output_chars: 3,
      truncated: false,
    });
    expect(summary.error).not.toBeNull();
    expect(summarizeNotebook(nb([{ source: 'a = 1', execution_count: 1 }])).error).toBeNull();
  });

  it('treats papermill metadata as authoritative: pending is not_run, completed is ok, failed is error', () => {
    const summary = summarizeNotebook(
      nb([
        { source: 'a', metadata: { papermill: { status: 'completed', duration: 0.5 } } },
        {
          source: 'b',
          outputs: [stream('stale\n')],
          metadata: { papermill: { status: 'pending', duration: null } },
        },
        { source: 'c', metadata: { papermill: { status: 'failed', exception: true, duration: 2 } } },
        { source: 'd', metadata: { papermill: { status: 'running' } } },
      ]),
    );
    expect(summary.cells.map((c) => c.status)).toEqual(['ok', 'not_run', 'error', 'not_run']);
    expect(summary.cells[1]?.output_text).toBe('');
    // A failed cell without an error output (a timeout) still explains itself.
    expect(summary.error).toMatchObject({ cell_index: 2, ename: 'CellExecutionError', traceback: [] });
  });

  it.each(['0', ''])(
    'reports a clean SystemExit(%j) as where the notebook stopped, not as an error',
    (evalue) => {
      const exit: NotebookOutput = { output_type: 'error', ename: 'SystemExit', evalue, traceback: [] };
      const summary = summarizeNotebook(
        nb([
          { source: 'a', execution_count: 1, metadata: { papermill: { status: 'completed' } } },
          {
            source: 'sys.exit()',
            execution_count: 2,
            outputs: [exit],
            metadata: { papermill: { status: 'failed', exception: true } },
          },
          { source: 'c', metadata: { papermill: { status: 'pending' } } },
        ]),
      );
      expect(summary.cells.map((c) => c.status)).toEqual(['ok', 'ok', 'not_run']);
      expect(summary.error).toBeNull();
      expect(summary.stopped).toMatchObject({ cell_index: 1, ename: 'SystemExit', evalue });
      expect(summary.stopped?.message).toMatch(/stopped itself at cell 1 .*did not run/);
    },
  );

  it('keeps SystemExit(1) an error, with no stop reported', () => {
    const exit: NotebookOutput = { output_type: 'error', ename: 'SystemExit', evalue: '1', traceback: [] };
    const summary = summarizeNotebook(nb([{ source: 'sys.exit(1)', execution_count: 1, outputs: [exit] }]));
    expect(summary.cells[0]?.status).toBe('error');
    expect(summary.error).toMatchObject({ cell_index: 0, ename: 'SystemExit', evalue: '1' });
    expect(summary.stopped).toBeNull();
  });

  it('counts a cell with outputs but no execution_count as ok', () => {
    const summary = summarizeNotebook(nb([{ source: 'x', execution_count: null, outputs: [stream('y')] }]));
    expect(summary.cells[0]?.status).toBe('ok');
  });
});

describe('summarizeNotebook: durations', () => {
  it("uses papermill's duration, else nbclient's execution timestamps", () => {
    const summary = summarizeNotebook(
      nb([
        {
          source: 'a',
          execution_count: 1,
          metadata: {
            papermill: { duration: 1.25, status: 'completed' },
            execution: {
              'iopub.execute_input': '2024-01-01T00:00:00Z',
              'shell.execute_reply': '2024-01-01T00:01:00Z',
            },
          },
        },
        {
          source: 'b',
          execution_count: 2,
          metadata: {
            execution: {
              'iopub.status.busy': '2024-05-01T10:00:00.000001Z',
              'iopub.execute_input': '2024-05-01T10:00:00.100250Z',
              'shell.execute_reply': '2024-05-01T10:00:02.350750Z',
              'iopub.status.idle': '2024-05-01T10:00:02.400000Z',
            },
          },
        },
        {
          source: 'c',
          execution_count: 3,
          metadata: {
            execution: {
              'iopub.execute_input': '2024-05-01T12:00:00+02:00',
              'shell.execute_reply': '2024-05-01T10:00:03Z',
            },
          },
        },
        { source: 'd', execution_count: 4, metadata: { execution: { 'iopub.execute_input': 'garbage' } } },
        { source: 'e', execution_count: 5 },
      ]),
    );
    expect(summary.cells.map((c) => c.duration_seconds)).toEqual([1.25, 2.2505, 3, null, null]);
  });
});

describe('summarizeNotebook: output text', () => {
  it('joins stream text, text/plain and notes of rich outputs', () => {
    const summary = summarizeNotebook(
      nb([
        {
          execution_count: 1,
          outputs: [
            stream('loading'),
            stream('...done\n'),
            stream('warning\n', 'stderr'),
            display({ 'image/png': 'iVBOR...' }),
            result({ 'text/plain': ['0.93'], 'text/html': ['<b>0.93</b>'] }),
          ],
        },
      ]),
    );
    expect(summary.cells[0]?.output_text).toBe('loading...done\nwarning\n[image/png]\n0.93');
  });

  it('truncates long output keeping the end, and reports the full size', () => {
    const long = Array.from({ length: 500 }, (_, i) => `line ${i}\n`).join('');
    const summary = summarizeNotebook(nb([{ execution_count: 1, outputs: [stream(long)] }]), {
      maxOutputChars: 100,
    });
    const cell = summary.cells[0];
    expect(cell?.output_chars).toBe(long.length);
    expect(cell?.truncated).toBe(true);
    expect(cell?.output_text).toHaveLength(100);
    expect(cell?.output_text.endsWith('line 499\n')).toBe(true);
    expect(long.endsWith(cell?.output_text ?? 'x')).toBe(true);
  });

  it('uses 2000 characters by default and never starts inside a surrogate pair', () => {
    const text = `${'a'.repeat(10)}${'😀'.repeat(1500)}`;
    const cell = summarizeNotebook(nb([{ execution_count: 1, outputs: [stream(text)] }])).cells[0];
    expect(cell?.output_chars).toBe(3010);
    expect(cell?.output_text).toBe('😀'.repeat(1000));
    const odd = summarizeNotebook(nb([{ execution_count: 1, outputs: [stream(text)] }]), {
      maxOutputChars: 7,
    }).cells[0];
    expect(odd?.output_text).toBe('😀😀😀');
  });

  it('rejects a negative or fractional limit', () => {
    expect(() => summarizeNotebook(nb([]), { maxOutputChars: -1 })).toThrow(InvalidRequestError);
    expect(() => summarizeNotebook(nb([]), { maxOutputChars: 1.5 })).toThrow(InvalidRequestError);
  });

  it('property: output_text is the end of the full text and within the limit', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'grapheme-ascii' }), { maxLength: 6 }),
        fc.nat({ max: 60 }),
        (texts, max) => {
          const full = texts.join('');
          const cell = summarizeNotebook(nb([{ execution_count: 1, outputs: texts.map((t) => stream(t)) }]), {
            maxOutputChars: max,
          }).cells[0];
          return (
            cell !== undefined &&
            cell.output_chars === full.length &&
            cell.output_text.length <= max &&
            full.endsWith(cell.output_text) &&
            cell.truncated === full.length > max &&
            (cell.truncated || cell.output_text === full)
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('summarizeNotebook: named results', () => {
  it('collects scrapbook scraps from any cell, later ones winning', () => {
    const scrap = (name: string, data: unknown) =>
      display({ 'application/scrapbook.scrap.json+json': { name, data, encoder: 'json', version: 1 } });
    const summary = summarizeNotebook(
      nb([
        { execution_count: 1, outputs: [scrap('accuracy', 0.5), scrap('config', { layers: [64, 32] })] },
        { execution_count: 2, outputs: [scrap('accuracy', 0.93)] },
        {
          execution_count: 3,
          outputs: [
            display({
              'application/scrapbook.scrap.text+json': {
                name: 'note',
                data: 'ok',
                encoder: 'text',
                version: 1,
              },
            }),
          ],
        },
        { execution_count: null, outputs: [], source: 'glue("never", 1)' },
      ]),
    );
    expect(summary.named_results).toEqual({ accuracy: 0.93, config: { layers: [64, 32] }, note: 'ok' });
  });

  it('merges application/json objects of cells tagged results, key by key', () => {
    const summary = summarizeNotebook(
      nb([
        {
          metadata: { tags: ['results'] },
          execution_count: 1,
          outputs: [
            result({
              'application/json': { loss: 0.1, epochs: 3 },
              'text/plain': ['<IPython.core.display.JSON object>'],
            }),
          ],
        },
        {
          metadata: { tags: ['results'] },
          execution_count: 2,
          outputs: [
            display({ 'application/json': { loss: 0.05 } }),
            display({ 'application/json': '{"f1": 0.8}' }),
          ],
        },
        // Untagged cells' JSON is not a result.
        { execution_count: 3, outputs: [display({ 'application/json': { ignored: true } })] },
      ]),
    );
    expect(summary.named_results).toEqual({ loss: 0.05, epochs: 3, f1: 0.8 });
  });

  it('stores the last text/plain of a results cell without JSON under "results"', () => {
    const summary = summarizeNotebook(
      nb([
        {
          metadata: { tags: ['results'] },
          execution_count: 1,
          outputs: [
            stream('log line\n'),
            result({ 'text/plain': ["{'score': 0.9}"] }),
            stream('after\n', 'stderr'),
          ],
        },
      ]),
    );
    expect(summary.named_results).toEqual({ results: "{'score': 0.9}" });
    const printed = summarizeNotebook(
      nb([{ metadata: { tags: ['results'] }, execution_count: 1, outputs: [stream('42\n')] }]),
    );
    expect(printed.named_results).toEqual({ results: '42\n' });
  });

  it('keeps keys such as __proto__ as plain data', () => {
    const summary = summarizeNotebook(
      nb([
        {
          metadata: { tags: ['results'] },
          execution_count: 1,
          outputs: [display({ 'application/json': JSON.parse('{"__proto__": {"polluted": 1}}') })],
        },
      ]),
    );
    expect(Object.keys(summary.named_results)).toEqual(['__proto__']);
    expect((summary.named_results as { polluted?: unknown }).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(summary.named_results)).toBe(Object.prototype);
  });
});

describe('stripAnsi', () => {
  it('removes colour, cursor and OSC sequences and nothing else', () => {
    expect(
      stripAnsi(
        '\u001b[1;31mError\u001b[0m: \u001b[2Kx\u001b]8;;http://a\u0007link\u001b]8;;\u0007 [brackets]',
      ),
    ).toBe('Error: xlink [brackets]');
  });
});
