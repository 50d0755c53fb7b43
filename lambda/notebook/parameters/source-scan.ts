/**
 * Reading a parameters cell without a parser: every character is classified as code, string or
 * comment by the language's lexer (built from the Scanner below), so brackets, `=`, `;` and comment
 * markers inside strings are not misread; then the source is split into statements and each
 * statement matched against the language's declaration pattern. The machinery is shared; what
 * differs between languages is passed in as rules by each Dialect.
 */

export const CODE = 0;
export const STRING = 1;
export const COMMENT = 2;
export type CharKind = typeof CODE | typeof STRING | typeof COMMENT;

interface Comment {
  start: number;
  end: number;
  text: string;
}

/** Source with every character classified, so brackets, `=` and `#` inside strings are not misread. */
export interface Scanned {
  src: string;
  kind: CharKind[];
  comments: Comment[];
}

/** A cursor over source that marks what it passes; each language's lexer drives one. */
class Scanner {
  readonly kind: CharKind[];
  readonly comments: Comment[] = [];
  i = 0;

  constructor(readonly src: string) {
    this.kind = new Array<CharKind>(src.length).fill(CODE);
  }

  at(offset = 0): string {
    return this.src[this.i + offset] ?? '';
  }

  startsWith(text: string): boolean {
    return this.src.startsWith(text, this.i);
  }

  mark(start: number, end: number, kind: CharKind): void {
    for (let k = start; k < end && k < this.src.length; k++) this.kind[k] = kind;
  }

  comment(start: number, end: number, bodyStart: number, bodyEnd: number): void {
    this.mark(start, end, COMMENT);
    this.comments.push({ start, end, text: this.src.slice(bodyStart, bodyEnd).trim() });
    this.i = end;
  }

  lineComment(prefixLength: number): void {
    const start = this.i;
    let end = this.src.indexOf('\n', start);
    if (end < 0) end = this.src.length;
    if (this.src[end - 1] === '\r') end--;
    this.comment(start, end, start + prefixLength, end);
  }

  blockComment(open: string, close: string, nested: boolean): void {
    const start = this.i;
    let depth = 0;
    let k = start;
    while (k < this.src.length) {
      if (nested || depth === 0 ? this.src.startsWith(open, k) : false) {
        depth++;
        k += open.length;
      } else if (this.src.startsWith(close, k)) {
        depth--;
        k += close.length;
        if (depth === 0) break;
      } else k++;
    }
    const end = Math.min(k, this.src.length);
    const bodyEnd = this.src.startsWith(close, end - close.length) ? end - close.length : end;
    this.comment(start, end, start + open.length, bodyEnd);
  }

  /** A string from `this.i` whose body starts after `openLength` characters and ends at `close`. */
  quoted(
    openLength: number,
    close: string,
    opts: { escape?: string; doubled?: boolean; multiline: boolean },
  ): void {
    const start = this.i;
    let k = start + openLength;
    while (k < this.src.length) {
      const ch = this.src[k];
      if (opts.escape && ch === opts.escape) {
        k += 2;
        continue;
      }
      if (this.src.startsWith(close, k)) {
        if (opts.doubled && this.src.startsWith(close, k + close.length)) {
          k += close.length * 2;
          continue;
        }
        k += close.length;
        break;
      }
      if (ch === '\n' && !opts.multiline) break; // unterminated: stop at the end of the line
      k++;
    }
    const end = Math.min(k, this.src.length);
    this.mark(start, end, STRING);
    this.i = end;
  }

  done(): Scanned {
    return { src: this.src, kind: this.kind, comments: this.comments };
  }
}

/**
 * Classifies `src` with a language's `token` rule, which consumes the comment or string starting at
 * `s.i` and returns true, or returns false to step over one character of code.
 */
export function scanWith(src: string, token: (s: Scanner) => boolean): Scanned {
  const s = new Scanner(src);
  while (s.i < src.length) if (!token(s)) s.i++;
  return s.done();
}

export const isIdentChar = (ch: string): boolean => /[\w$]/.test(ch);

/** Replaces lines matching `pattern` with spaces, keeping every offset. */
export function blankLines(src: string, pattern: RegExp): string {
  return src
    .split('\n')
    .map((line) => (pattern.test(line) ? line.replace(/[^\r]/g, ' ') : line))
    .join('\n');
}

/**
 * The lines .NET Interactive reads itself in a C# or F# cell (`#r "nuget: ..."`, `#load`, `#!magic`)
 * and preprocessor lines: never declarations, and blanked before scanning.
 */
export const DOTNET_DIRECTIVE_LINE = /^[ \t]*#/;

/** Where a language's statements end and how their lines join. */
export interface StatementRules {
  /** A `;` outside brackets ends a statement. */
  semicolon: boolean;
  /** A `}` that closes a block at the top level ends a statement (not one before `;`, `,`, `)` or `.`). */
  blockBrace: boolean;
  /**
   * A newline outside brackets ends a statement unless `continuation` ends the line; 'layout' ends
   * one only before an unindented line; null never.
   */
  newline: { continuation: string } | 'layout' | null;
  /** Physical lines of one statement join with a space; else only between two word characters. */
  spacedJoin: boolean;
}

interface Statement {
  start: number;
  /** Exclusive; the terminator (newline, `;`) is not part of the statement. */
  end: number;
}

const OPEN = '([{';
const CLOSE = ')]}';

function splitStatements(scan: Scanned, rules: StatementRules): Statement[] {
  const { src, kind } = scan;
  const statements: Statement[] = [];
  let start = 0;
  let depth = 0;
  const push = (end: number): void => {
    if (src.slice(start, end).trim() !== '') statements.push({ start, end });
  };
  const nextCode = (from: number): string => {
    for (let k = from; k < src.length; k++) {
      const ch = src[k] ?? '';
      if (kind[k] === CODE && ch.trim() !== '') return ch;
    }
    return '';
  };
  for (let k = 0; k < src.length; k++) {
    if (kind[k] !== CODE) continue;
    const ch = src[k] ?? '';
    if (OPEN.includes(ch)) depth++;
    else if (CLOSE.includes(ch)) {
      depth = Math.max(0, depth - 1);
      if (rules.blockBrace && ch === '}' && depth === 0 && !';,).'.includes(nextCode(k + 1) || '.')) {
        push(k + 1);
        start = k + 1;
      }
    } else if (ch === ';' && depth === 0 && rules.semicolon) {
      push(k);
      start = k + 1;
    } else if (ch === '\n' && depth === 0) {
      if (rules.newline === 'layout') {
        const next = src[k + 1] ?? '';
        if (next !== '' && kind[k + 1] === CODE && next.trim() !== '') {
          push(k);
          start = k + 1;
        }
      } else if (rules.newline) {
        const last = src[k - 1] === '\r' ? k - 2 : k - 1;
        if (!(src[last] === rules.newline.continuation && kind[last] === CODE)) {
          push(k);
          start = k + 1;
        }
      }
    }
  }
  push(src.length);
  return statements;
}

/**
 * The statement's code with comments removed and physical lines trimmed and joined (papermill
 * flattens multi-line defaults too). Returns the text with a parallel character classification.
 */
function flatten(scan: Scanned, st: Statement, spacedJoin: boolean): { text: string; kind: CharKind[] } {
  const lines: Array<{ text: string; kind: CharKind[] }> = [{ text: '', kind: [] }];
  for (let k = st.start; k < st.end; k++) {
    const kind = scan.kind[k] ?? CODE;
    const ch = scan.src[k] ?? '';
    if (kind === COMMENT) continue;
    const line = lines[lines.length - 1] as { text: string; kind: CharKind[] };
    if (kind === CODE && ch === '\n') lines.push({ text: '', kind: [] });
    else {
      line.text += ch;
      line.kind.push(kind);
    }
  }
  let text = '';
  let kinds: CharKind[] = [];
  for (const line of lines) {
    // Trim code whitespace only; whitespace inside a string is part of its value.
    let a = 0;
    let b = line.text.length;
    while (a < b && line.kind[a] === CODE && /\s/.test(line.text[a] ?? '')) a++;
    while (b > a && line.kind[b - 1] === CODE && /\s/.test(line.text[b - 1] ?? '')) b--;
    if (a >= b) continue;
    const piece = line.text.slice(a, b);
    // Joining without a space (as papermill does) would glue `a\nor b` into `aor b`.
    if (text !== '' && (spacedJoin || (/\w$/.test(text) && /^\w/.test(piece)))) {
      text += ' ';
      kinds.push(CODE);
    }
    text += piece;
    kinds = kinds.concat(line.kind.slice(a, b));
  }
  return { text, kind: kinds };
}

/** The comment that follows the statement on its last line (only whitespace or `;` between). */
function trailingComment(scan: Scanned, st: Statement): Comment | null {
  let last = st.end - 1;
  while (last >= st.start && (scan.kind[last] === COMMENT || /\s/.test(scan.src[last] ?? ''))) last--;
  if (last < st.start) return null;
  for (let k = last + 1; k < scan.src.length; k++) {
    const ch = scan.src[k] ?? '';
    if (scan.kind[k] === COMMENT) return scan.comments.find((c) => c.start === k) ?? null;
    if (ch === '\n' || (ch.trim() !== '' && ch !== ';')) return null;
  }
  return null;
}

/** Index in `text` of the bracket matching the one at `open`, or -1. Strings are skipped. */
function matchingBracket(text: string, kind: readonly CharKind[], open: number): number {
  let depth = 0;
  for (let k = open; k < text.length; k++) {
    if (kind[k] !== CODE) continue;
    const ch = text[k] ?? '';
    if (OPEN.includes(ch)) depth++;
    else if (CLOSE.includes(ch)) {
      depth--;
      if (depth === 0) return k;
    }
  }
  return -1;
}

/** The first index in [from, to) of a code character outside brackets for which `test` holds, or -1. */
function findTopLevel(
  text: string,
  kind: readonly CharKind[],
  test: (k: number) => boolean,
  from = 0,
  to = text.length,
): number {
  let depth = 0;
  for (let k = from; k < to; k++) {
    if (kind[k] !== CODE) continue;
    const c = text[k] ?? '';
    if (OPEN.includes(c)) depth++;
    else if (CLOSE.includes(c)) depth--;
    else if (depth === 0 && test(k)) return k;
  }
  return -1;
}

/** True when `text` holds `ch` between `from` and `to` outside strings and nested brackets. */
export function hasTopLevel(
  text: string,
  kind: readonly CharKind[],
  ch: string,
  from: number,
  to: number,
): boolean {
  return findTopLevel(text, kind, (k) => text[k] === ch, from, to) >= 0;
}

export function isWholeString(text: string, kind: readonly CharKind[]): boolean {
  if (text === '' || kind[0] !== STRING) return false;
  // Adjacent literals ("a" "b") are one string in Python.
  return kind.every((k, i) => k === STRING || /\s/.test(text[i] ?? ''));
}

/** True when `text` is one bracketed expression opened by `open`. */
export function wraps(text: string, kind: readonly CharKind[], open: string): boolean {
  return text.startsWith(open) && kind[0] === CODE && matchingBracket(text, kind, 0) === text.length - 1;
}

/** True when `value` has another top-level assignment (`a = b = 1`), which papermill skips. */
function chainedAssignment(text: string, kind: readonly CharKind[], from: number): boolean {
  const isAssignment = (k: number): boolean =>
    text[k] === '=' && !'=!<>:+-*/%&|^@'.includes(text[k - 1] ?? '') && text[k + 1] !== '=';
  return findTopLevel(text, kind, isAssignment, from) >= 0;
}

/** One `name = value` read from a parameters cell. */
export interface Assignment {
  name: string;
  /** The type the source declares (annotation, typed declaration, type comment), or null. */
  declared: string | null;
  /** The default's source text, flattened to one line. */
  value: string;
  /** Classification of each character of `value`. */
  valueKind: CharKind[];
  /** The trailing comment. */
  help: string;
}

export interface AssignmentRules {
  statements: StatementRules;
  /** Matches a whole flattened statement, with groups `name`, `value` and optionally `type`. */
  declaration: RegExp;
  /** Sees every non-empty statement in order (with whether it is indented); true skips it. */
  skip?(text: string, indented: boolean): boolean;
  /** Last word on a match: its declared type and help, or null when it is no parameter. */
  refine?(found: { name: string; declared: string | null; help: string }): {
    declared: string | null;
    help: string;
  } | null;
}

/** The top-level assignments in scanned source, by the language's `rules`. */
export function readAssignments(scan: Scanned, rules: AssignmentRules): Assignment[] {
  const { src } = scan;
  const found: Assignment[] = [];
  for (const st of splitStatements(scan, rules.statements)) {
    const lineStart = src.lastIndexOf('\n', st.start - 1) + 1;
    const firstCode = src.slice(st.start).search(/\S/) + st.start;
    const indented = src.slice(lineStart, firstCode).trim() === '' && firstCode > lineStart;
    const { text, kind } = flatten(scan, st, rules.statements.spacedJoin);
    if (text === '') continue;
    if (rules.skip?.(text, indented)) continue;
    const groups = rules.declaration.exec(text)?.groups;
    if (!groups?.name || groups.value === undefined) continue;
    // `@name` is a C# verbatim identifier for `name`.
    const name = groups.name.replace(/^@/, '');
    const value = groups.value.trim();
    const valueStart = text.length - groups.value.length;
    // The `=` must be code, not part of a string in a type annotation.
    if (kind[text.lastIndexOf('=', valueStart - 1)] !== CODE) continue;
    if (chainedAssignment(text, kind, valueStart)) continue;
    const declared = groups.type?.trim() || null;
    const help = trailingComment(scan, st)?.text ?? '';
    const refined = rules.refine ? rules.refine({ name, declared, help }) : { declared, help };
    if (!refined) continue;
    const valueKind = kind.slice(valueStart, valueStart + value.length);
    found.push({ name, value, valueKind, ...refined });
  }
  return found;
}
