/**
 * PowerShell parameters for .NET Interactive (`$name = value`), after papermill's PowerShell
 * translator, with its strings made safe: see {@link stringLiteral}.
 */
import type { Dialect } from './dialect.ts';
import {
  type CharKind,
  isWholeString,
  readAssignments,
  scanWith,
  STRING,
  type Scanned,
} from './source-scan.ts';

// Automatic variables that PowerShell owns; assigning them fails or silently does nothing.
const RESERVED = new Set(
  (
    '_ args error event eventargs eventsubscriber executioncontext false foreach home host input ' +
    'lastexitcode matches myinvocation null ofs pid profile psboundparameters pscmdlet pscommandpath ' +
    'psculture pshome psitem psscriptroot pssenderinfo psuiculture psversiontable pwd sender shellid ' +
    'stacktrace switch this true'
  ).split(' '),
);

const DECLARATION =
  /^(?:\[(?<type>[\w.]+(?:\[[\w.,\s]*\])*)\]\s*)?\$(?<name>[A-Za-z_]\w*)\s*=(?!=)\s*(?<value>[\s\S]+)$/;

// PowerShell treats the typographic single quotes as quote characters too (read by the scanner).
const SINGLE_QUOTES = new Set(["'", '\u2018', '\u2019', '\u201a', '\u201b']);

// The characters PowerShell's tokenizer reads as a double quote (CharExtensions.IsDoubleQuote).
const DOUBLE_QUOTES = new Set(['"', '\u201c', '\u201d', '\u201e']);

// PowerShell's own backtick escapes (Tokenizer.Backtick); `e and `u{} need PowerShell 6+, and
// .NET Interactive runs PowerShell 7.
const ESCAPES: ReadonlyMap<string, string> = new Map([
  ['\0', '`0'],
  ['\u0007', '`a'],
  ['\b', '`b'],
  ['\u001b', '`e'],
  ['\f', '`f'],
  ['\n', '`n'],
  ['\r', '`r'],
  ['\t', '`t'],
  ['\v', '`v'],
]);

// Never written raw: controls (C0, C1 with NEL), U+2028/U+2029 (line breaks to some parsers),
// format characters (bidi controls that make code read differently than it runs) and lone
// surrogates (which UTF-8 cannot carry).
const NOT_RAW = /^[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]$/u;

/**
 * PowerShell string. Departure: papermill writes a double-quoted string with Python's backslash
 * escapes, but PowerShell's escape character is the backtick, and `$` in a double-quoted string
 * expands variables and runs `$(...)`. Here every `$`, backtick and double-quote character is
 * backtick-escaped, so nothing interpolates, and every control, line-break, format character and
 * lone surrogate is a backtick escape (`n, `r, `0, `u{XXXX}...), so the literal stays on one line:
 * no value can start a line (where .NET Interactive would honour `#!` and `#r` directives).
 */
function stringLiteral(value: string): string {
  let out = '';
  // for-of yields code points, and a lone surrogate as itself.
  for (const ch of value) {
    const escape = ESCAPES.get(ch);
    if (escape !== undefined) out += escape;
    else if (ch === '`' || ch === '$' || DOUBLE_QUOTES.has(ch)) out += `\`${ch}`;
    else if (NOT_RAW.test(ch)) out += `\`u{${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase()}}`;
    else out += ch;
  }
  return `"${out}"`;
}

function lex(src: string): Scanned {
  return scanWith(src, (s) => {
    if (s.startsWith('<#')) {
      s.blockComment('<#', '#>', false);
      return true;
    }
    if (s.at() === '#') {
      s.lineComment(1);
      return true;
    }
    if (s.at() === '`') {
      s.i += 2; // escaped character / line continuation
      return true;
    }
    const here = /^@(['"])\r?\n/.exec(src.slice(s.i, s.i + 4));
    if (here?.[1]) {
      s.quoted(2, `\n${here[1]}@`, { multiline: true });
      return true;
    }
    if (SINGLE_QUOTES.has(s.at())) {
      const start = s.i;
      let k = start + 1;
      while (k < src.length) {
        if (SINGLE_QUOTES.has(src[k] ?? '')) {
          if (SINGLE_QUOTES.has(src[k + 1] ?? '')) k += 2;
          else {
            k++;
            break;
          }
        } else k++;
      }
      s.mark(start, k, STRING);
      s.i = k;
      return true;
    }
    if (DOUBLE_QUOTES.has(s.at())) {
      s.quoted(1, s.at(), { escape: '`', doubled: true, multiline: true });
      return true;
    }
    return false;
  });
}

function infer(text: string, kind: readonly CharKind[]): string | null {
  const lower = text.toLowerCase();
  if (lower === '$true' || lower === '$false') return 'bool';
  if (/^-?(?:0x[\da-f]+|\d+)(?:l|u|ul|n)?(?:kb|mb|gb|tb|pb)?$/i.test(text)) return 'int';
  if (/^-?(?:\d+\.\d*|\.\d+|\d+(?=e))(?:e[+-]?\d+)?d?$/i.test(text)) return 'double';
  if (isWholeString(text, kind)) return 'string';
  if (text.startsWith('@(')) return 'array';
  if (text.startsWith('@{') || text.startsWith('[ordered]@{')) return 'hashtable';
  return null;
}

export const powershell: Dialect = {
  language: 'powershell',
  // papermill registers the PowerShell translator under .net-powershell.
  kernelNames: ['.net-pwsh', '.net-powershell'],
  declaredLanguages: ['powershell', 'pwsh'],
  dotnetKernel: 'pwsh',
  comment: (text) => `# ${text}`,
  assign: (name, literal) => `$${name} = ${literal}`,
  isReserved: (name) => RESERVED.has(name.toLowerCase()),
  literals: {
    null: '$Null',
    bool: (value) => (value ? '$True' : '$False'),
    // PowerShell widens integer literals to long/decimal/double itself.
    integer: (n) => n.digits,
    string: stringLiteral,
    list(items, values) {
      // Departure: `@(@(1, 2))` flattens to `@(1, 2)`; the unary comma keeps a lone nested list whole.
      if (values.length === 1 && Array.isArray(values[0])) return `@(,${items[0]})`;
      return `@(${items.join(', ')})`;
    },
    dict: (entries) => `@{${entries.map(([k, v]) => `${k} = ${v}`).join('\n ')}}`,
  },
  /** `$x = 1 # help` and `[int]$x = 1`. */
  scan: (source) =>
    readAssignments(lex(source), {
      statements: { semicolon: true, blockBrace: false, newline: { continuation: '`' }, spacedJoin: true },
      declaration: DECLARATION,
    }),
  infer,
};
