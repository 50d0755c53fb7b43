/**
 * C# parameters for .NET Interactive, after papermill's CSharpTranslator (`var name = value;`),
 * with departures where its output does not compile or is unsafe, each noted where it happens.
 */
import type { Dialect } from './dialect.ts';
import { dotnetInteger, utf16Escape } from './literals.ts';
import {
  blankLines,
  type CharKind,
  DOTNET_DIRECTIVE_LINE,
  isWholeString,
  readAssignments,
  scanWith,
  type Scanned,
} from './source-scan.ts';

const KEYWORDS = new Set(
  (
    'abstract as base bool break byte case catch char checked class const continue decimal default delegate do ' +
    'double else enum event explicit extern false finally fixed float for foreach goto if implicit in int ' +
    'interface internal is lock long namespace new null object operator out override params private protected ' +
    'public readonly ref return sbyte sealed short sizeof stackalloc static string struct switch this throw true ' +
    'try typeof uint ulong unchecked unsafe ushort using virtual void volatile while var'
  ).split(' '),
);

// Words that can precede `name = ...` in C# without being a type.
const NOT_TYPES = new Set([
  'return',
  'new',
  'using',
  'await',
  'throw',
  'else',
  'case',
  'goto',
  'yield',
  'in',
  'out',
  'ref',
]);

const DECLARATION =
  /^(?:(?:const|static|readonly|public|private|internal)\s+)*(?<type>[A-Za-z_][\w.]*(?:\s*<[^;=]*?>)?(?:\s*\[[\s,]*\])*\??)\s+(?<name>@?[A-Za-z_]\w*)\s*=(?!=)\s*(?<value>[\s\S]+)$/;

type Kind = 'number' | 'string' | 'bool' | 'other';

function kindOf(value: unknown): Kind {
  if (typeof value === 'number' || typeof value === 'bigint') return 'number';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  return 'other';
}

function lex(src: string): Scanned {
  return scanWith(src, (s) => {
    if (s.startsWith('//')) {
      s.lineComment(2);
      return true;
    }
    if (s.startsWith('/*')) {
      s.blockComment('/*', '*/', false);
      return true;
    }
    const raw = /^\$*("{3,})/.exec(src.slice(s.i, s.i + 16));
    if (raw?.[1]) {
      s.quoted(raw[0].length, raw[1], { multiline: true });
      return true;
    }
    const verbatim = /^(?:@\$|\$@|@)"/.exec(src.slice(s.i, s.i + 3));
    if (verbatim) {
      s.quoted(verbatim[0].length, '"', { doubled: true, multiline: true });
      return true;
    }
    if (s.startsWith('$"') || s.at() === '"') {
      s.quoted(s.at() === '$' ? 2 : 1, '"', { escape: '\\', multiline: false });
      return true;
    }
    if (s.at() === "'") {
      s.quoted(1, "'", { escape: '\\', multiline: false });
      return true;
    }
    return false;
  });
}

function infer(text: string, kind: readonly CharKind[]): string | null {
  if (text === 'true' || text === 'false') return 'bool';
  const int = /^-?(?:0[xX][\da-fA-F_]+|0[bB][01_]+|\d[\d_]*)([uU][lL]?|[lL][uU]?)?$/.exec(text);
  if (int) {
    const suffix = (int[1] ?? '').toLowerCase();
    return suffix === '' ? 'int' : suffix === 'l' ? 'long' : suffix === 'u' ? 'uint' : 'ulong';
  }
  const real = /^-?(?:\d[\d_]*\.\d[\d_]*|\.\d[\d_]*|\d[\d_]*)(?:[eE][+-]?\d+)?([fFdDmM])?$/.exec(text);
  if (real && (real[1] || /[.eE]/.test(text))) {
    const suffix = (real[1] ?? 'd').toLowerCase();
    return suffix === 'f' ? 'float' : suffix === 'm' ? 'decimal' : 'double';
  }
  if (isWholeString(text, kind)) return text.startsWith("'") ? 'char' : 'string';
  if (/^new\s*\[\s*\]/.test(text)) return 'array';
  const created = /^new\s+([A-Za-z_][\w.]*(?:<[^(){}]*>)?(?:\[\s*\])*)\s*[({[]/.exec(text);
  if (created?.[1]) return created[1].replace(/\s+/g, '');
  return null;
}

export const csharp: Dialect = {
  language: 'csharp',
  kernelNames: ['.net-csharp'],
  declaredLanguages: ['c#', 'csharp'],
  dotnetKernel: 'csharp',
  comment: (text) => `// ${text}`,
  assign: (name, literal) => `var ${name} = ${literal};`,
  isReserved: (name) => KEYWORDS.has(name),
  literals: {
    // Departure: papermill raises for null in C#; `(object)null` is a typed null that compiles
    // with `var` and inside arrays/dictionaries.
    null: '(object)null',
    bool: (value) => (value ? 'true' : 'false'),
    // Departure: papermill appends L, which does not compile beyond 64 bits; C# has no
    // big-integer literal, so the nearest double is used.
    integer: (n) => dotnetInteger(n, (digits) => `${digits}.0`),
    // Departure: papermill reuses unicode_escape, whose `\xNN` is a variable-length escape in C#
    // (`"\xe9" + "1"` would read as U+0E91), so non-ASCII is written as `\uXXXX` per UTF-16 unit
    // instead (C# strings are UTF-16, so lone surrogates survive too).
    string: utf16Escape,
    list(items, values) {
      // papermill's `new [] { ... }` only compiles when the elements have a best common type;
      // empty or mixed lists use object[] (departure), homogeneous ones keep papermill's form.
      const kinds = new Set(values.map(kindOf));
      const [only] = kinds;
      if (values.length > 0 && kinds.size === 1 && only !== 'other') return `new [] { ${items.join(', ')} }`;
      return `new object[] { ${items.join(', ')} }`;
    },
    dict: (entries) =>
      `new Dictionary<string,Object>{ ${entries.map(([k, v]) => `{ ${k} , ${v} }`).join(', ')} }`,
  },
  /** `var x = 1; // help` and typed declarations (`double rate = 0.01;`). */
  scan(source) {
    return readAssignments(lex(blankLines(source, DOTNET_DIRECTIVE_LINE)), {
      statements: { semicolon: true, blockBrace: true, newline: null, spacedJoin: false },
      declaration: DECLARATION,
      refine({ name, declared, help }) {
        if (NOT_TYPES.has(declared ?? '') || KEYWORDS.has(name)) return null;
        return { declared: declared === 'var' ? null : declared, help };
      },
    });
  },
  infer,
};
