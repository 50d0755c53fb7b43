import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import {
  MAX_NOTEBOOK_NAME_BYTES,
  MAX_NOTEBOOK_NAME_CHARS,
  NotebookNameSchema,
  checkNotebookName,
  nameFromUri,
} from '../../lambda/core/names.ts';
import { UploadRequestSchema, parseRequest } from '../../lambda/core/schemas.ts';

function rejection(name: unknown): InvalidRequestError {
  try {
    checkNotebookName(name);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidRequestError);
    return error as InvalidRequestError;
  }
  throw new Error(`accepted ${JSON.stringify(name)}`);
}

// Characters that must never reach a file name, a key, a log line or a header.
const FORBIDDEN = /[/\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

describe('checkNotebookName', () => {
  it.each([
    'train.ipynb',
    'report 2024-Q3 (final).ipynb',
    '报告.ipynb',
    '😀.ipynb',
    'a..b.ipynb',
    'x%2Fy.ipynb',
  ])('accepts %j unchanged', (name) => {
    expect(checkNotebookName(name)).toBe(name);
  });

  it('normalizes to NFC instead of refusing decomposed names (as macOS writes them)', () => {
    const decomposed = 'Cafe\u0301.ipynb';
    expect(checkNotebookName(decomposed)).toBe('Caf\u00e9.ipynb');
    expect(NotebookNameSchema.parse(decomposed)).toBe('Caf\u00e9.ipynb');
  });

  it.each([
    ['', /is empty/],
    ['..', /starts with '\.'/],
    ['.', /starts with '\.'/],
    ['..ipynb', /starts with '\.'/],
    ['.ipynb', /starts with '\.'/],
    ['../evil.ipynb', /folder separator/],
    ['a/b.ipynb', /folder separator/],
    ['a\\b.ipynb', /folder separator/],
    ['C:evil.ipynb', /contains ":"/],
    ['a?.ipynb', /contains "\?"/],
    ['a\r\nb.ipynb', /control character or line break \(U\+000D\)/],
    ['a\nb.ipynb', /control character or line break \(U\+000A\)/],
    ['a\u0000.ipynb', /control character or line break \(U\+0000\)/],
    ['a\u0085.ipynb', /U\+0085/],
    ['a\u2028.ipynb', /U\+2028/],
    ['a\u202egpj.ipynb', /invisible format character \(U\+202E\)/],
    ['\u2066x\u2069.ipynb', /U\+2066/],
    ['a\u200e.ipynb', /U\+200E/],
    ['\ufeffa.ipynb', /U\+FEFF/],
    ['a\ud800.ipynb', /unpaired surrogate \(U\+D800\)/],
    [' a.ipynb', /starts or ends with a space/],
    ['notes.txt', /does not end in \.ipynb/],
    ['a.IPYNB', /does not end in \.ipynb/],
    [`${'a'.repeat(994)}.ipynb`, /is 1000 UTF-8 bytes long/],
    [`${'a'.repeat(MAX_NOTEBOOK_NAME_CHARS - 5)}.ipynb`, /characters long/],
    [`${'报'.repeat(66)}.ipynb`, /UTF-8 bytes long/],
  ])('rejects %j', (name, reason) => {
    const error = rejection(name);
    expect(error.message).toMatch(reason);
    // Says what is allowed, too.
    expect(error.message).toMatch(/a notebook name is a file name ending in \.ipynb/);
  });

  it('never echoes control or invisible characters raw, and shortens long names', () => {
    for (const name of ['\u0000\r\n\u001b[31m.ipynb', 'x\u202e\u2028\u2029\u0085.ipynb', 'a\udc00.ipynb']) {
      const { message } = rejection(name);
      expect(message).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u);
    }
    expect(rejection('a\u202eb.ipynb').message).toContain('"a\\u202eb.ipynb"');
    expect(rejection(`${'x'.repeat(5000)}.ipynb`).message.length).toBeLessThan(1200);
  });

  it('rejects what is not a string', () => {
    expect(rejection(42).message).toMatch(/is not a string/);
  });

  it('is what the request schemas use (uploads, REST and MCP bodies)', () => {
    expect(parseRequest(UploadRequestSchema, { name: 'ok.ipynb' })).toEqual({ name: 'ok.ipynb' });
    expect(() => parseRequest(UploadRequestSchema, { name: 'a\u202e.ipynb' })).toThrow(
      /name: contains an invisible format character \(U\+202E\)/,
    );
    expect(() => parseRequest(UploadRequestSchema, { name: '../x.ipynb' })).toThrow(InvalidRequestError);
  });

  it('property: every accepted name is one plain file name within the caps', () => {
    const unit = fc.oneof(
      { weight: 4, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
      { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
      fc.constantFrom(
        '/',
        '\\',
        '.',
        '..',
        '\r',
        '\n',
        '\u0000',
        '\u202e',
        '\u2028',
        '\ud800',
        ' ',
        '%2F',
        ':',
      ),
    );
    const candidate = fc.oneof(
      fc.string({ unit, maxLength: 40 }).map((stem) => `${stem}.ipynb`),
      fc.string({ unit, maxLength: 40 }),
      fc.string({ unit, minLength: 120, maxLength: 220 }).map((stem) => `${stem}.ipynb`),
    );
    fc.assert(
      fc.property(candidate, (name) => {
        let accepted: string;
        try {
          accepted = checkNotebookName(name);
        } catch (error) {
          return error instanceof InvalidRequestError;
        }
        expect(accepted).not.toMatch(FORBIDDEN);
        expect(accepted.endsWith('.ipynb')).toBe(true);
        expect(accepted.startsWith('.')).toBe(false);
        expect(Buffer.byteLength(accepted, 'utf8')).toBeLessThanOrEqual(MAX_NOTEBOOK_NAME_BYTES);
        expect(Array.from(accepted).length).toBeLessThanOrEqual(MAX_NOTEBOOK_NAME_CHARS);
        expect(path.basename(accepted)).toBe(accepted);
        expect(path.win32.basename(accepted)).toBe(accepted);
        expect(accepted).toBe(accepted.normalize('NFC'));
        // Idempotent: a stored name passes again unchanged.
        expect(checkNotebookName(accepted)).toBe(accepted);
        return true;
      }),
      { numRuns: 500 },
    );
  });
});

describe('nameFromUri', () => {
  it.each([
    ['s3://bucket/notebooks/train.ipynb', 'train.ipynb'],
    ['file:///workspace/project/train.ipynb', 'train.ipynb'],
    ['s3://bucket/a/train.ipynb?versionId=3#cell-2', 'train.ipynb'],
    ['s3://bucket/%E6%8A%A5%E5%91%8A.ipynb', '报告.ipynb'],
    ['s3://bucket/my%20notebook.ipynb', 'my notebook.ipynb'],
    ['s3://bucket/Cafe%CC%81.ipynb', 'Caf\u00e9.ipynb'],
    ['s3://bucket/a%252Fb.ipynb', 'a%2Fb.ipynb'], // decoded once: the name is the text "a%2Fb"
    ['train.ipynb', 'train.ipynb'],
  ])('%s -> %j', (uri, name) => {
    expect(nameFromUri(uri)).toBe(name);
  });

  it.each([
    's3://bucket/a%2F..%2F..%2Fetc%2Fpasswd.ipynb', // %2F decodes to a separator
    's3://bucket/..%2Fx.ipynb',
    's3://bucket/%2E%2E',
    's3://bucket/a%5Cb.ipynb', // backslash
    's3://bucket/a%0D%0Ab.ipynb', // CR LF
    's3://bucket/a%00.ipynb', // NUL
    's3://bucket/a%E2%80%AEb.ipynb', // U+202E
    's3://bucket/%E0%A4%A.ipynb', // truncated UTF-8 sequence
    's3://bucket/%ED%A0%80.ipynb', // an encoded surrogate is not UTF-8
    's3://bucket/%zz.ipynb', // not a %-escape
    's3://bucket/100%.ipynb',
    's3://bucket/folder/', // a folder, not a file
    's3://bucket',
    's3://bucket/',
    's3://bucket/data.csv',
    'file:///workspace/x.ipynb/', // a trailing slash names the folder
    `s3://bucket/${'a'.repeat(1000)}.ipynb`,
    '',
  ])('%s -> null', (uri) => {
    expect(nameFromUri(uri)).toBeNull();
  });

  it('property: whatever the URI, the result is null or a name checkNotebookName accepts as is', () => {
    const segment = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 20 }).map((s) => `${encodeURIComponent(s)}.ipynb`),
      fc.string({
        unit: fc.constantFrom('%', '2', 'F', '5', 'C', '0', 'A', 'a', '.', '/', 'E', '?', '#'),
        maxLength: 20,
      }),
    );
    fc.assert(
      fc.property(fc.constantFrom('s3://b/', 'file:///w/', 'https://h/x/', ''), segment, (prefix, last) => {
        const name = nameFromUri(`${prefix}${last}`);
        if (name === null) return true;
        expect(checkNotebookName(name)).toBe(name);
        expect(name).not.toMatch(FORBIDDEN);
        return true;
      }),
      { numRuns: 1000 },
    );
  });
});
