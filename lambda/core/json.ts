/**
 * Parsing JSON that callers send. JSON.parse itself copes with deep nesting, but everything after
 * it recurses (zod, request hashing, JSON.stringify, the DynamoDB marshaller, the kernel's json
 * module), and one of them overflows its stack a few thousand levels down: a 500 for bad input, or
 * worse. So the depth is checked first, with a linear scan that allocates nothing.
 */
import { InvalidRequestError } from './errors.ts';

/**
 * The deepest nesting a request may have. A create request wraps the notebook in about 8 levels
 * (body > notebook > content > cells > cell > outputs > output > data), and the deepest real
 * payloads inside (Plotly and Vega specs, widget state, nested JSON outputs) stay within a few
 * dozen more; 100 leaves room for those while staying far below where any recursive consumer
 * fails (Python's default recursion limit alone is 1,000).
 */
export const MAX_JSON_DEPTH = 100;

/** JSON nested deeper than the limit: refused before it is parsed. */
export class JsonTooDeepError extends InvalidRequestError {
  constructor(what: string, maxDepth: number) {
    super(`${what} nests arrays and objects more than ${maxDepth} levels deep; the limit is ${maxDepth}`, {
      max_depth: maxDepth,
    });
  }
}

/**
 * Parses `text` (named `what` in errors, e.g. "request body"): InvalidRequestError when it is not
 * JSON, JsonTooDeepError when it nests deeper than `maxDepth`.
 */
export function parseJsonText(text: string, what: string, maxDepth = MAX_JSON_DEPTH): unknown {
  checkJsonDepth(text, what, maxDepth);
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    // JSON.parse's message quotes the text; what a caller sent is reported by position only.
    const { where, details } = jsonSyntaxProblem(text);
    throw new InvalidRequestError(`${what} is not valid JSON${where}`, details);
  }
  const at = MAY_HOLD_PROTO_KEY.test(text) ? protoKeyPath(value) : null;
  if (at !== null) {
    throw new InvalidRequestError(
      `${what} has a member named "__proto__" (at ${at || 'the top level'}); that name is reserved, because JavaScript objects cannot keep it: rename it`,
      { path: at },
    );
  }
  return value;
}

/**
 * Text that could hold a "__proto__" member: the name itself, or a \u escape of one of its
 * characters (_ p r o t are U+005F..U+0074). Anything else skips the walk below, which matters for
 * multi-megabyte notebooks sent inline.
 */
const MAY_HOLD_PROTO_KEY = /__proto__|\\u00[5-7][0-9a-f]/i;

/**
 * Where a parsed value holds a "__proto__" member (a dotted path), or null. JSON.parse keeps such a
 * member, but every copy into a plain object (zod's records, spreads into defaults) drops it, so a
 * tag or parameter of that name would be lost without a word. Iterative: the depth is already bounded.
 */
function protoKeyPath(root: unknown): string | null {
  const pending: Array<[unknown, string]> = [[root, '']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [value, path] = next;
    if (value === null || typeof value !== 'object') continue;
    if (!Array.isArray(value) && Object.hasOwn(value, '__proto__')) return path;
    for (const [key, child] of Object.entries(value))
      if (child !== null && typeof child === 'object') pending.push([child, path ? `${path}.${key}` : key]);
  }
  return null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Throws JsonTooDeepError as soon as the nesting of `text` passes `maxDepth`. Brackets inside
 * strings (escapes included) do not count. Malformed text may be miscounted; JSON.parse rejects it.
 */
export function checkJsonDepth(text: string, what: string, maxDepth = MAX_JSON_DEPTH): void {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) throw new JsonTooDeepError(what, maxDepth);
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
}

/**
 * Where a text stops being JSON, for an error message (": at position N (line L, column C),
 * expected ...") and its details; never what the text holds there.
 */
export function jsonSyntaxProblem(text: string): {
  where: string;
  details?: { position: number; line: number; column: number };
} {
  const error = jsonSyntaxError(text);
  if (error === null) return { where: '' };
  const before = text.slice(0, error.position);
  const line = before.split('\n').length;
  const column = error.position - before.lastIndexOf('\n');
  const at =
    error.position >= text.length
      ? `the text ends at position ${error.position} (line ${line}, column ${column})`
      : `at position ${error.position} (line ${line}, column ${column})`;
  return {
    where: `: ${at}, expected ${error.expected}`,
    details: { position: error.position, line, column },
  };
}

/** Where a text stops being JSON (RFC 8259) and what was expected there; null when it is JSON. */
export function jsonSyntaxError(text: string): { position: number; expected: string } | null {
  const stack: Array<'}' | ']'> = [];
  let i = 0;
  // 'value' | 'first-value' (after '['), 'key' | 'first-key' (after '{' or ','), 'colon', 'after'.
  let state: 'value' | 'first-value' | 'key' | 'first-key' | 'colon' | 'after' = 'value';
  const fail = (expected: string) => ({ position: i, expected });
  for (;;) {
    while (i < text.length && ' \t\n\r'.includes(text[i] ?? '')) i++;
    const ch = text[i];
    if (state === 'after') {
      const close = stack[stack.length - 1];
      if (close === undefined) return ch === undefined ? null : fail('the end of the text');
      if (ch === close) {
        stack.pop();
        i++;
      } else if (ch === ',') {
        state = close === '}' ? 'key' : 'value';
        i++;
      } else return fail(`',' or '${close}'`);
      continue;
    }
    if (state === 'colon') {
      if (ch !== ':') return fail("':' after a member name");
      state = 'value';
      i++;
      continue;
    }
    if ((state === 'first-key' && ch === '}') || (state === 'first-value' && ch === ']')) {
      stack.pop();
      state = 'after';
      i++;
      continue;
    }
    const isKey: boolean = state === 'key' || state === 'first-key';
    if (isKey) {
      if (ch !== '"')
        return fail(
          state === 'first-key' ? "a member name in double quotes or '}'" : 'a member name in double quotes',
        );
    } else if (ch === '{' || ch === '[') {
      stack.push(ch === '{' ? '}' : ']');
      state = ch === '{' ? 'first-key' : 'first-value';
      i++;
      continue;
    }
    if (ch === '"') {
      i++;
      for (;;) {
        const c = text[i];
        if (c === undefined) return fail("a closing '\"'");
        if (c === '"') break;
        if (c < ' ') return fail('an escape such as \\n instead of a raw control character in a string');
        if (c === '\\') {
          const escape = /^(?:["\\/bfnrt]|u[0-9A-Fa-f]{4})/.exec(text.slice(i + 1, i + 6));
          if (!escape) {
            i++;
            return fail('an escape: \\" \\\\ \\/ \\b \\f \\n \\r \\t or \\u and 4 hex digits');
          }
          i += 1 + escape[0].length;
        } else i++;
      }
      i++;
      state = isKey ? 'colon' : 'after';
      continue;
    }
    const literal = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
    literal.lastIndex = i;
    const match = literal.exec(text);
    if (!match) return fail('a value (an object, array, string, number, true, false or null)');
    i += match[0].length;
    state = 'after';
  }
}
