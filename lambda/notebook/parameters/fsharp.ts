/**
 * F# parameters for .NET Interactive (`let name = value`), after papermill's .NET translators,
 * with departures where their output does not compile, each noted where it happens.
 */
import type { Dialect } from './dialect.ts';
import { classifyNumber, dotnetInteger, unicodeEscape } from './literals.ts';
import {
  blankLines,
  type CharKind,
  DOTNET_DIRECTIVE_LINE,
  isIdentChar,
  isWholeString,
  readAssignments,
  scanWith,
  type Scanned,
  wraps,
} from './source-scan.ts';

const KEYWORDS = new Set(
  (
    'abstract and as assert base begin class default delegate do done downcast downto elif else end exception ' +
    'extern false finally fixed for fun function global if in inherit inline interface internal lazy let match ' +
    'member module mutable namespace new not null of open or override private public rec return select sig ' +
    'static struct then to true try type upcast use val void when while with yield break checked component ' +
    'const constraint continue event external include mixin parallel process protected pure sealed tailcall ' +
    'trait virtual asr land lor lsl lsr lxor mod'
  ).split(' '),
);

const DECLARATION =
  /^let\s+(?:(?:mutable|inline|private|internal|public)\s+)*(?<name>[A-Za-z_]\w*)\s*(?::\s*(?<type>[^=]+?))?\s*=(?!=)\s*(?<value>[\s\S]+)$/;

const INTEGER_SUFFIXES: Record<string, string> = {
  y: 'sbyte',
  uy: 'byte',
  s: 'int16',
  us: 'uint16',
  u: 'uint32',
  l: 'int',
  L: 'int64',
  ul: 'uint32',
  UL: 'uint64',
  n: 'nativeint',
  un: 'unativeint',
  I: 'bigint',
};

function lex(src: string): Scanned {
  return scanWith(src, (s) => {
    if (s.startsWith('//')) {
      s.lineComment(2);
      return true;
    }
    // `(*)` is the multiplication operator, not a comment.
    if (s.startsWith('(*') && !s.startsWith('(*)')) {
      s.blockComment('(*', '*)', true);
      return true;
    }
    if (s.startsWith('"""') || s.startsWith('$"""')) {
      s.quoted(s.at() === '$' ? 4 : 3, '"""', { multiline: true });
      return true;
    }
    if (s.startsWith('@"') || s.startsWith('$@"') || s.startsWith('@$"')) {
      s.quoted(s.at(1) === '"' ? 2 : 3, '"', { doubled: true, multiline: true });
      return true;
    }
    if (s.startsWith('$"') || s.at() === '"') {
      s.quoted(s.at() === '$' ? 2 : 1, '"', { escape: '\\', multiline: true });
      return true;
    }
    // 'a' is a char literal, but 'a alone is a type variable and x' an identifier.
    const charLit =
      /^'(?:\\(?:[ntbrafv\\"'0]|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|\d{3})|[^\\'\n])'/.exec(
        src.slice(s.i, s.i + 12),
      );
    if (charLit && (s.i === 0 || !isIdentChar(src[s.i - 1] ?? ''))) {
      s.quoted(1, "'", { escape: '\\', multiline: false });
      return true;
    }
    return false;
  });
}

function infer(text: string, kind: readonly CharKind[]): string | null {
  if (text === 'true' || text === 'false') return 'bool';
  if (text === 'None' || /^Some[\s(]/.test(text)) return 'option';
  const int =
    /^-?(?:0[xX][\da-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|\d[\d_]*)(y|uy|s|us|u|l|ul|UL|L|n|un|I)?$/.exec(text);
  if (int) return INTEGER_SUFFIXES[int[1] ?? ''] ?? 'int';
  const real = /^-?\d[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?\d+)?([fFmM])?$/.exec(text);
  if (real && /[.eEfFmM]/.test(text)) {
    const suffix = real[1] ?? '';
    return suffix === 'f' || suffix === 'F'
      ? 'float32'
      : suffix === 'm' || suffix === 'M'
        ? 'decimal'
        : 'float';
  }
  if (isWholeString(text, kind)) return text.startsWith("'") ? 'char' : 'string';
  if (text.startsWith('[|') && text.endsWith('|]')) return 'array';
  if (wraps(text, kind, '[')) return 'list';
  if (/^(?:Map\b|\[[\s\S]*\]\s*\|>\s*Map\.of)/.test(text)) return 'Map';
  return null;
}

export const fsharp: Dialect = {
  language: 'fsharp',
  kernelNames: ['.net-fsharp'],
  declaredLanguages: ['f#', 'fsharp'],
  dotnetKernel: 'fsharp',
  comment: (text) => `(* ${text} *)`,
  assign: (name, literal) => `let ${name} = ${literal}`,
  isReserved: (name) => KEYWORDS.has(name),
  literals: {
    null: 'None',
    bool: (value) => (value ? 'true' : 'false'),
    // Departure: F# has a BigInteger literal; papermill's L would not compile.
    integer: (n) => dotnetInteger(n, (digits) => `${digits}I`),
    // F# accepts the same escapes as Python's unicode_escape output (\xHH is exactly two digits there).
    string: unicodeEscape,
    list(items, values) {
      // F# lists are homogeneous: JSON's 2 next to 2.5 was meant as a float, so write it as 2.0.
      const numbers = values.map((v) =>
        typeof v === 'number' || typeof v === 'bigint' ? classifyNumber(v) : null,
      );
      if (!numbers.some((n) => n?.kind === 'float')) return `[ ${items.join('; ')} ]`;
      const written = items.map((item, i) => {
        const n = numbers[i];
        return n?.kind === 'int' ? `${n.digits}.0` : item;
      });
      return `[ ${written.join('; ')} ]`;
    },
    dict: (entries) =>
      `[ ${entries.map(([k, v]) => `(${k}, ${v} :> IComparable)`).join('; ')} ] |> Map.ofList`,
  },
  /** `let x = 1 // help`, `let mutable x: float = 1.0 (* help *)`; statements end by layout. */
  scan(source) {
    return readAssignments(lex(blankLines(source, DOTNET_DIRECTIVE_LINE)), {
      statements: { semicolon: false, blockBrace: false, newline: 'layout', spacedJoin: true },
      declaration: DECLARATION,
    });
  },
  infer,
};
