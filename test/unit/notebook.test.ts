import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import {
  cellSource,
  executableCodeCells,
  notebookKernelName,
  notebookLanguage,
  parseNotebook,
  parseNotebookText,
  sourcePreview,
} from '../../lambda/notebook/notebook.ts';

const valid = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {
    kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
    language_info: { name: 'python', version: '3.11' },
    custom: { kept: true },
  },
  cells: [
    { id: 'a', cell_type: 'markdown', source: ['# Title\n', 'text'], metadata: {} },
    {
      id: 'b',
      cell_type: 'code',
      source: 'x = 1',
      metadata: { tags: ['parameters'] },
      execution_count: null,
      outputs: [],
    },
    {
      id: 'c',
      cell_type: 'code',
      source: ['print(x)\n', 'x'],
      metadata: {},
      execution_count: 2,
      outputs: [{ output_type: 'stream', name: 'stdout', text: ['1\n'] }],
    },
    { id: 'd', cell_type: 'code', source: '   \n', metadata: {}, execution_count: null, outputs: [] },
    { id: 'e', cell_type: 'raw', source: '', metadata: {} },
  ],
};

function expectInvalid(fn: () => unknown, message: RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(InvalidRequestError);
  expect((error as Error).message).toMatch(message);
}

describe('parseNotebook', () => {
  it('accepts a valid nbformat 4 notebook, keeps unknown fields and does not alias the input', () => {
    const nb = parseNotebook(valid);
    expect(nb).toEqual(valid);
    expect(nb.cells).not.toBe(valid.cells);
    expect(nb.metadata.custom).toEqual({ kept: true });
  });

  it('fills members hand-written notebooks omit with nbformat defaults', () => {
    const nb = parseNotebook({ nbformat: 4, cells: [{ cell_type: 'code', source: 'x = 1' }] });
    expect(nb).toEqual({
      nbformat: 4,
      nbformat_minor: 4,
      metadata: {},
      cells: [{ cell_type: 'code', source: 'x = 1', metadata: {}, execution_count: null, outputs: [] }],
    });
  });

  it('rejects nbformat 3 and other versions, saying how to convert', () => {
    expectInvalid(
      () => parseNotebook({ nbformat: 3, nbformat_minor: 0, worksheets: [], metadata: {} }),
      /^nbformat 3 is not supported: only nbformat 4 notebooks can run \(convert with jupyter nbconvert --to notebook\)$/,
    );
    expectInvalid(() => parseNotebook({ ...valid, nbformat: 5 }), /nbformat 5 is not supported/);
    expectInvalid(
      () => parseNotebook({ ...valid, nbformat: '4' }),
      /"nbformat" must be the number 4, got a string of 1 character$/,
    );
    expectInvalid(() => parseNotebook({ cells: [] }), /missing "nbformat"/);
  });

  it('rejects what is not a notebook object', () => {
    expectInvalid(() => parseNotebook(null), /a notebook is a JSON object.*got null/);
    expectInvalid(() => parseNotebook([]), /got an array/);
    expectInvalid(() => parseNotebook('{}'), /got a string of 2 characters$/);
  });

  it('rejects a missing or malformed cells array', () => {
    expectInvalid(
      () => parseNotebook({ nbformat: 4, nbformat_minor: 5, metadata: {} }),
      /"cells" must be an array of cells, got nothing/,
    );
    expectInvalid(
      () => parseNotebook({ ...valid, cells: {} }),
      /"cells" must be an array of cells, got an object/,
    );
    expectInvalid(
      () => parseNotebook({ ...valid, cells: [42] }),
      /cells\[0\] must be an object, got a number/,
    );
  });

  it('rejects a bad cell type, source, metadata, tags, id or output, naming the cell', () => {
    const withCell = (cell: Record<string, unknown>) => ({
      ...valid,
      cells: [...valid.cells.slice(0, 2), cell],
    });
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'heading', source: '', metadata: {} })),
      /cells\[2\]\.cell_type must be one of code, markdown, raw, got a string of 7 characters$/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ source: '', metadata: {} })),
      /cells\[2\]\.cell_type must be one of/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'code', source: 5, metadata: {} })),
      /cells\[2\]\.source must be a string or an array of strings, got a number/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'code', source: ['a', 1], metadata: {} })),
      /cells\[2\]\.source must be a string or an array of strings/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'raw', source: '', metadata: [] })),
      /cells\[2\]\.metadata must be an object/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'raw', source: '', metadata: { tags: 'parameters' } })),
      /cells\[2\]\.metadata\.tags must be an array of strings/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ id: 'b', cell_type: 'raw', source: '', metadata: {} })),
      /cells\[2\]\.id is the same as cells\[1\]\.id; cell ids must be unique/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ id: 'a b', cell_type: 'raw', source: '', metadata: {} })),
      /cells\[2\]\.id must be/,
    );
    expectInvalid(
      () =>
        parseNotebook(
          withCell({ cell_type: 'code', source: '', metadata: {}, outputs: [{ output_type: 'pyout' }] }),
        ),
      /cells\[2\]\.outputs\[0\]\.output_type must be one of execute_result, display_data, stream, error/,
    );
    expectInvalid(
      () => parseNotebook(withCell({ cell_type: 'code', source: '', metadata: {}, execution_count: -1 })),
      /execution_count must be a non-negative integer or null/,
    );
  });

  it('rejects bad top-level metadata and nbformat_minor', () => {
    expectInvalid(() => parseNotebook({ ...valid, metadata: 'x' }), /"metadata" must be an object/);
    expectInvalid(
      () => parseNotebook({ ...valid, metadata: null }),
      /"metadata" must be an object, got null/,
    );
    expectInvalid(
      () => parseNotebook({ ...valid, nbformat_minor: 1.5 }),
      /"nbformat_minor" must be a non-negative integer/,
    );
  });

  it('property: anything that is not an nbformat 4 object is rejected with InvalidRequestError, never another error', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          parseNotebook(value);
          return (
            typeof value === 'object' && value !== null && (value as { nbformat?: unknown }).nbformat === 4
          );
        } catch (error) {
          return error instanceof InvalidRequestError;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('property: a notebook with arbitrary cells and metadata parses or fails with InvalidRequestError', () => {
    const cellish = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.record(
        {
          cell_type: fc.constantFrom('code', 'markdown', 'raw', 'heading', 1),
          source: fc.oneof(fc.string(), fc.array(fc.string()), fc.jsonValue({ maxDepth: 1 })),
          metadata: fc.oneof(fc.constant({}), fc.jsonValue({ maxDepth: 2 })),
          outputs: fc.jsonValue({ maxDepth: 2 }),
          execution_count: fc.jsonValue({ maxDepth: 0 }),
          id: fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 0 })),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(fc.array(cellish, { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), (cells, metadata) => {
        try {
          const nb = parseNotebook({ nbformat: 4, nbformat_minor: 5, metadata, cells });
          // What parses is usable: every cell has a known type and a string-or-lines source.
          return nb.cells.every(
            (c) => ['code', 'markdown', 'raw'].includes(c.cell_type) && typeof cellSource(c) === 'string',
          );
        } catch (error) {
          return error instanceof InvalidRequestError;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('parseNotebookText', () => {
  it('parses JSON text and buffers, ignoring a BOM', () => {
    const text = JSON.stringify(valid);
    expect(parseNotebookText(text)).toEqual(valid);
    expect(parseNotebookText(Buffer.from(`\ufeff${text}`, 'utf8'))).toEqual(valid);
  });

  it('says clearly when the content is not JSON or not UTF-8', () => {
    expectInvalid(
      () => parseNotebookText('print("hello")'),
      /^invalid notebook: not JSON: at position 0 \(line 1, column 1\), expected a value \(an object, array, string, number, true, false or null\); an \.ipynb notebook is a JSON document$/,
    );
    expectInvalid(
      () => parseNotebookText('{"nbformat": 4,\n "cells": [1 2]}'),
      /not JSON: at position 29 \(line 2, column 14\), expected ',' or ']'/,
    );
    expectInvalid(
      () => parseNotebookText('{"cells": ['),
      /not JSON: the text ends at position 11 .*expected a value/,
    );
    expectInvalid(() => parseNotebookText('{"a": "x\ny"}'), /raw control character in a string/);
    expectInvalid(() => parseNotebookText(''), /the file is empty/);
    expectInvalid(() => parseNotebookText(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), /not UTF-8/);
    expectInvalid(
      () => parseNotebookText('{"nbformat": 3, "nbformat_minor": 0}'),
      /nbformat 3 is not supported/,
    );
  });

  it('never quotes the submitted file: a .env or credentials file sent as a notebook stays out of errors', () => {
    // Letters that no message uses, so any 4 of them in a row can only come from the file.
    const secret = fc.string({ unit: fc.constantFrom(...'QXZKWVY'), minLength: 12, maxLength: 24 });
    const documents = (s: string): string[] => [
      `API_KEY=${s}\nOTHER=1`,
      s,
      `${s}{`,
      `{"a": ${s}}`,
      `{"key": "${s}"`,
      `{"key": "${s}", }`,
      `{"key": "${s}\n"}`,
      `{"key": "\\${s}"}`,
      `{"${s}": 1} trailing`,
      `"${s}"`,
      `["${s}"]`,
      `{"private_key": "${s}"}`,
      `{"nbformat": "${s}"}`,
      `{"nbformat": ["${s}"]}`,
      `{"nbformat": 4, "cells": "${s}"}`,
      `{"nbformat": 4, "cells": [], "metadata": "${s}"}`,
      `{"nbformat": 4, "cells": [], "nbformat_minor": "${s}"}`,
      `{"nbformat": 4, "cells": ["${s}"]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "${s}", "source": ""}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "code", "source": "${s}", "metadata": "${s}"}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "code", "source": "", "id": "${s} "}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "raw", "source": "", "id": "${s}"}, {"cell_type": "raw", "source": "", "id": "${s}"}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "code", "source": "", "outputs": [{"output_type": "${s}"}]}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "code", "source": "", "execution_count": "${s}"}]}`,
      `{"nbformat": 4, "cells": [{"cell_type": "raw", "source": "", "metadata": {"tags": "${s}"}}]}`,
    ];
    fc.assert(
      fc.property(secret, (s) => {
        for (const text of documents(s)) {
          let error: unknown;
          try {
            parseNotebookText(text);
          } catch (e) {
            error = e;
          }
          expect(error, text).toBeInstanceOf(InvalidRequestError);
          const { message, details } = error as InvalidRequestError;
          const shown = `${message} ${JSON.stringify(details ?? {})}`;
          for (let i = 0; i + 4 <= s.length; i++) expect(shown, text).not.toContain(s.slice(i, i + 4));
        }
      }),
      { numRuns: 30 },
    );
  });
});

describe('notebook helpers', () => {
  const nb = parseNotebook(valid);

  it('cellSource joins list sources', () => {
    expect(cellSource({ source: ['a\n', 'b'] })).toBe('a\nb');
    expect(cellSource({ source: 'x' })).toBe('x');
  });

  it('reads kernel name and language', () => {
    expect(notebookKernelName(nb)).toBe('python3');
    expect(notebookLanguage(nb)).toBe('python');
    const onlyInfo = parseNotebook({ ...valid, metadata: { language_info: { name: 'C#' } } });
    expect(notebookKernelName(onlyInfo)).toBeNull();
    expect(notebookLanguage(onlyInfo)).toBe('C#');
    const declared = parseNotebook({
      ...valid,
      metadata: { kernelspec: { name: '.net-fsharp', language: 'F#' }, language_info: { name: 'fsharp' } },
    });
    expect(notebookLanguage(declared)).toBe('F#');
    expect(notebookLanguage(parseNotebook({ ...valid, metadata: {} }))).toBeNull();
  });

  it('executableCodeCells lists code cells with non-blank source', () => {
    expect(executableCodeCells(nb)).toEqual([1, 2]);
  });

  it('sourcePreview gives the first non-blank line, trimmed, with an ellipsis when cut', () => {
    expect(sourcePreview('\n\n   model.fit(x, y)  \nmore')).toBe('model.fit(x, y)');
    expect(sourcePreview(['\n', '  a = 1\n'])).toBe('a = 1');
    expect(sourcePreview('x'.repeat(100))).toBe(`${'x'.repeat(79)}…`);
    expect(sourcePreview('abcdef', 4)).toBe('abc…');
    expect(sourcePreview('abcd', 4)).toBe('abcd');
    expect(sourcePreview('   \n  ')).toBe('');
    expect(sourcePreview(`${'😀'.repeat(5)}`, 3)).toBe('😀😀…');
  });
});
