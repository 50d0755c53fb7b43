/**
 * Rendering JSON values as literals: the walk every language shares (what counts as JSON, depth and
 * cycle limits, error messages naming where a bad value is) and the pieces more than one language
 * uses. What each language writes comes from its Dialect's LiteralSyntax.
 */
import { InvalidRequestError } from '../../core/errors.ts';
import type { LiteralSyntax } from './dialect.ts';

const MAX_DEPTH = 100;
const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const JSON_VALUES =
  'parameter values must be JSON: null, true/false, finite numbers, strings, arrays and objects';

export interface IntegerLiteral {
  kind: 'int';
  digits: string;
  big: bigint;
}
export type NumberLiteral = IntegerLiteral | { kind: 'float'; text: string };

/**
 * Classifies a JavaScript number. JSON.parse does not keep "1" and "1.0" apart, so an integral
 * value below 1e21 (where JavaScript itself switches to exponent notation) is rendered as an
 * integer with its exact digits (also beyond 2^53); anything else as a float.
 */
export function classifyNumber(value: number | bigint): NumberLiteral {
  if (typeof value === 'bigint') return { kind: 'int', digits: value.toString(), big: value };
  if (Object.is(value, -0)) return { kind: 'float', text: '-0.0' };
  if (Number.isInteger(value) && Math.abs(value) < 1e21) {
    const big = BigInt(value);
    return { kind: 'int', digits: big.toString(), big };
  }
  // String() gives the shortest text that reads back as the same double: "0.1", "1e-7", "1e+21".
  return { kind: 'float', text: String(value) };
}

/**
 * A .NET integer literal: int when it fits 32 bits, long (`L`) when it fits 64, else `beyond` (the
 * .NET languages differ there). papermill appends L past 32 bits and nothing else.
 */
export function dotnetInteger(n: IntegerLiteral, beyond: (digits: string) => string): string {
  if (n.big >= INT32_MIN && n.big <= INT32_MAX) return n.digits;
  if (n.big >= INT64_MIN && n.big <= INT64_MAX) return `${n.digits}L`;
  return beyond(n.digits);
}

function hex(code: number, width: number): string {
  return code.toString(16).padStart(width, '0');
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '"': '\\"',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
};

/**
 * A double-quoted, backslash-escaped ASCII literal: printable ASCII as it is, the five escapes every
 * C-like language shares, anything else written by `escape` (given its code). `chars` decides what
 * one character is: code points or UTF-16 units.
 */
function asciiLiteral(chars: Iterable<string>, escape: (code: number) => string): string {
  let out = '';
  for (const ch of chars) {
    const code = ch.codePointAt(0) ?? 0;
    out += SIMPLE_ESCAPES[ch] ?? (code >= 0x20 && code < 0x7f ? ch : escape(code));
  }
  return `"${out}"`;
}

/**
 * Python's str.encode('unicode_escape') followed by `"` -> `\"`, exactly as papermill renders
 * strings. Everything outside printable ASCII becomes an escape, so the literal is plain ASCII and
 * nothing in the value can end the string. Iterates code points, so a surrogate pair becomes one
 * `\U` escape and a lone surrogate becomes `\udxxx` (Python strings can hold those).
 */
export function unicodeEscape(value: string): string {
  return asciiLiteral(value, (code) =>
    code < 0x100 ? `\\x${hex(code, 2)}` : code < 0x10000 ? `\\u${hex(code, 4)}` : `\\U${hex(code, 8)}`,
  );
}

/** Every UTF-16 unit outside printable ASCII as `\uXXXX` (so lone surrogates survive). */
export function utf16Escape(value: string): string {
  return asciiLiteral(value.split(''), (code) => `\\u${hex(code, 4)}`);
}

class Renderer {
  private readonly ancestors = new Set<object>();

  constructor(private readonly syntax: LiteralSyntax) {}

  render(value: unknown, path: string, depth: number): string {
    if (value === null) return this.syntax.null;
    if (typeof value === 'boolean') return this.syntax.bool(value);
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new InvalidRequestError(
        `${path} is ${String(value)}, which JSON cannot represent; ${JSON_VALUES}`,
        {
          path,
        },
      );
    }
    if (typeof value === 'number' || typeof value === 'bigint') {
      const n = classifyNumber(value);
      return n.kind === 'float' ? n.text : this.syntax.integer(n);
    }
    if (typeof value === 'string') return this.syntax.string(value);
    if (typeof value !== 'object') {
      throw new InvalidRequestError(
        `${path} is ${value === undefined ? 'undefined' : `a ${typeof value}`}; ${JSON_VALUES}`,
        { path },
      );
    }
    if (depth >= MAX_DEPTH) {
      throw new InvalidRequestError(`${path} is nested more than ${MAX_DEPTH} levels deep`, { path });
    }
    if (this.ancestors.has(value)) {
      throw new InvalidRequestError(`${path} contains itself (a cycle); ${JSON_VALUES}`, { path });
    }
    this.ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        const items: string[] = [];
        // Index loop, not map(): holes in sparse arrays must be seen (as undefined) and rejected.
        for (let i = 0; i < value.length; i++) items.push(this.render(value[i], `${path}[${i}]`, depth + 1));
        return this.syntax.list(items, value);
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
        throw new InvalidRequestError(`${path} is a ${name}, not a plain object; ${JSON_VALUES}`, { path });
      }
      const dict = value as Record<string, unknown>;
      const entries = Object.keys(dict).map((key) => {
        const child = /^[A-Za-z_]\w*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
        return [this.syntax.string(key), this.render(dict[key], child, depth + 1)] as const;
      });
      return this.syntax.dict(entries);
    } finally {
      this.ancestors.delete(value);
    }
  }
}

/**
 * Renders a JSON value with `syntax`; `path` names the value in error messages. `bigint` is
 * accepted as an exact integer. NaN, Infinity, undefined, functions, symbols, class instances and
 * cycles are rejected with InvalidRequestError.
 */
export function renderLiteral(value: unknown, syntax: LiteralSyntax, path = 'value'): string {
  return new Renderer(syntax).render(value, path, 0);
}
