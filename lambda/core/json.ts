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
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new InvalidRequestError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
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
