/**
 * Notebook names are data: one check for every name, whatever supplied it (a request body, an
 * upload, the last segment of a URI). A name that passes is a single file name, so it never carries
 * a folder, a line break or an invisible character into artifact keys, files, logs or headers.
 */
import * as z from 'zod';
import { InvalidRequestError } from './errors.ts';

/** Fits file systems' 255-byte name limit and S3 keys with room to spare. */
export const MAX_NOTEBOOK_NAME_BYTES = 200;
/** Characters are Unicode code points (an emoji is one). */
export const MAX_NOTEBOOK_NAME_CHARS = 128;

const SUFFIX = '.ipynb';

/** What a valid name is, in one sentence for error messages and the API schema. */
export const NOTEBOOK_NAME_RULES =
  `a notebook name is a file name ending in ${SUFFIX} (letters of any script, digits, emoji, spaces ` +
  `and punctuation), at most ${MAX_NOTEBOOK_NAME_CHARS} characters and ${MAX_NOTEBOOK_NAME_BYTES} ` +
  `UTF-8 bytes, in Unicode NFC form (other forms are normalized), not starting with '.', without ` +
  `leading or trailing spaces, folders ('/' or '\\'), any of < > : " | ? *, control characters ` +
  `(line breaks, tabs, NUL), invisible format characters (bidi controls, zero-width characters) or ` +
  `unpaired surrogates`;

// A lone surrogate is a UTF-16 unit that is not half of a pair; in a `u` regex, pairs match as one
// code point and so are not \p{Cs}.
const LONE_SURROGATE = /\p{Cs}/u;
// Cc: C0/C1 controls (NUL, CR, LF, TAB, VT, FF, NEL, ESC...); Zl/Zp: U+2028, U+2029.
const CONTROL = /[\p{Cc}\p{Zl}\p{Zp}]/u;
// Cf: bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069), marks (U+200E/F, U+061C),
// zero-width characters (U+200B-200D, U+2060, U+FEFF), soft hyphen and the like.
const FORMAT = /\p{Cf}/u;
// Characters Windows refuses in file names, so a name is a valid file name on every local host.
const RESERVED = /[<>:"|?*]/;
const EDGE_SPACE = /^\s|\s$/u;

/** Any character that must not appear raw in a message: shown as \uXXXX escapes. */
const UNSHOWABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

function codePoint(ch: string): string {
  return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** A value quoted back in an error (a header, a request target, a URI): at most 200 characters. */
export function clip(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}...` : value;
}

/**
 * The name quoted for a message: JSON string syntax, with control, format and separator characters
 * escaped (JSON.stringify leaves U+2028, U+2029 and bidi controls raw) and long names shortened.
 */
export function quoteName(name: string): string {
  const points = Array.from(name);
  const shown = points.length > 60 ? `${points.slice(0, 60).join('')}...` : name;
  return JSON.stringify(shown).replace(UNSHOWABLE, (ch) =>
    Array.from({ length: ch.length }, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join(
      '',
    ),
  );
}

/** What is wrong with an NFC name, or null when it is valid. */
function problemOf(name: string): string | null {
  if (name === '') return 'is empty';
  const lone = LONE_SURROGATE.exec(name);
  if (lone) return `contains an unpaired surrogate (${codePoint(lone[0])})`;
  const control = CONTROL.exec(name);
  if (control) return `contains a control character or line break (${codePoint(control[0])})`;
  const format = FORMAT.exec(name);
  if (format) return `contains an invisible format character (${codePoint(format[0])})`;
  const chars = Array.from(name).length;
  if (chars > MAX_NOTEBOOK_NAME_CHARS) return `is ${chars} characters long`;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NOTEBOOK_NAME_BYTES) return `is ${bytes} UTF-8 bytes long`;
  if (name.includes('/') || name.includes('\\')) return "contains a folder separator ('/' or '\\')";
  if (name.startsWith('.')) return "starts with '.'";
  const reserved = RESERVED.exec(name);
  if (reserved) return `contains ${JSON.stringify(reserved[0])}`;
  if (EDGE_SPACE.test(name)) return 'starts or ends with a space';
  if (!name.endsWith(SUFFIX)) return `does not end in ${SUFFIX}`;
  return null;
}

/**
 * Whether a name is over the byte cap even after NFC (which merges at most 4 code points into one),
 * checked before normalizing so a huge name costs nothing.
 */
function farTooLong(name: string): string | null {
  return name.length > 4 * MAX_NOTEBOOK_NAME_BYTES
    ? `is ${Buffer.byteLength(name, 'utf8')} UTF-8 bytes long`
    : null;
}

/** The NFC form of `name` and what is wrong with it (null when it is a valid name). */
function examine(name: unknown): { normalized: string; problem: string | null } {
  if (typeof name !== 'string') return { normalized: '', problem: 'is not a string' };
  const far = farTooLong(name);
  if (far) return { normalized: name, problem: far };
  const normalized = name.normalize('NFC');
  return { normalized, problem: problemOf(normalized) };
}

/**
 * Checks a notebook name and returns it in NFC form. Throws InvalidRequestError saying what is wrong
 * and what is allowed ({@link NOTEBOOK_NAME_RULES}); the name is quoted with every control or
 * invisible character escaped.
 *
 * NFC: the same visible name typed on different systems (macOS file names are decomposed) gets one
 * stored form, so it is normalized rather than refused; every rule applies to the normalized name.
 */
export function checkNotebookName(name: unknown): string {
  const { normalized, problem } = examine(name);
  if (problem !== null) {
    const shown = typeof name === 'string' ? `${quoteName(name)} ` : '';
    throw new InvalidRequestError(`notebook name ${shown}${problem}; ${NOTEBOOK_NAME_RULES}`, {
      rule: 'notebook_name',
    });
  }
  return normalized;
}

/** A notebook name in requests (REST, MCP, uploads): {@link checkNotebookName}, output in NFC. */
export const NotebookNameSchema = z
  .string()
  .superRefine((name, ctx) => {
    const { problem } = examine(name);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: `${problem}; ${NOTEBOOK_NAME_RULES}` });
  })
  .overwrite((name) => name.normalize('NFC'))
  .describe(`A file name such as train.ipynb: ${NOTEBOOK_NAME_RULES}.`);

const SCHEME_AND_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:(?:\/\/[^/]*)?/;

/**
 * The notebook name a URI ends with: its last path segment (query and fragment ignored),
 * percent-decoded once, if it passes {@link checkNotebookName} (returned in NFC form). Null when
 * the URI has no path, ends in '/', has malformed percent-encoding, or its last segment is not a
 * valid name (including names that only become invalid after decoding, such as %2F or %0A).
 */
export function nameFromUri(uri: string): string | null {
  if (typeof uri !== 'string') return null;
  const withoutQuery = uri.replace(/[?#][\s\S]*$/, '');
  const path = withoutQuery.replace(SCHEME_AND_AUTHORITY, '');
  const segment = path.slice(path.lastIndexOf('/') + 1);
  if (segment === '') return null;
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    return null; // malformed %-encoding or bytes that are not UTF-8
  }
  try {
    return checkNotebookName(decoded);
  } catch (error) {
    if (error instanceof InvalidRequestError) return null;
    throw error;
  }
}
