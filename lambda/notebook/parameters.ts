/**
 * Notebook parameters with papermill's semantics (papermill/translators.py, parameterize.py):
 * reading the cell tagged `parameters`, rendering JSON values as literals of the kernel's language,
 * and injecting them in a cell tagged `injected-parameters`.
 *
 * Values are only ever rendered as literals (never pasted as code), so a parameter value cannot run
 * anything in the kernel. Where papermill's renderings are unsafe or do not compile, this module
 * departs from them; each departure is noted where it happens.
 */
import { InvalidRequestError } from '../core/errors.ts';
import { cellSource, cellTags, findTaggedCell, type Notebook, type NotebookCell } from './notebook.ts';

export type KernelLanguage = 'python' | 'csharp' | 'fsharp' | 'powershell';

export const KERNEL_LANGUAGES: readonly KernelLanguage[] = ['python', 'csharp', 'fsharp', 'powershell'];

/** A parameter declared in the `parameters` cell, as papermill's inspection reports it. */
import type { ParameterInfo } from '../core/contract.ts';
export type { ParameterInfo } from '../core/contract.ts';

export const PARAMETERS_TAG = 'parameters';
export const INJECTED_PARAMETERS_TAG = 'injected-parameters';

// ---------------------------------------------------------------------------------------------
// Kernel -> language
// ---------------------------------------------------------------------------------------------

const KERNEL_NAMES: Record<string, KernelLanguage> = {
  python: 'python',
  python3: 'python',
  python2: 'python',
  pysparkkernel: 'python',
  '.net-csharp': 'csharp',
  '.net-fsharp': 'fsharp',
  '.net-pwsh': 'powershell',
  // papermill registers the PowerShell translator under this name.
  '.net-powershell': 'powershell',
};

const DECLARED_LANGUAGES: Record<string, KernelLanguage> = {
  python: 'python',
  python3: 'python',
  'c#': 'csharp',
  csharp: 'csharp',
  'f#': 'fsharp',
  fsharp: 'fsharp',
  powershell: 'powershell',
  pwsh: 'powershell',
};

/**
 * The parameter language of a kernel: by kernel name first (python3, .net-csharp, .net-fsharp,
 * .net-pwsh), else by the kernelspec's declared language (python, C#, F#, PowerShell), as papermill's
 * find_translator does. Null when neither is known.
 */
export function languageForKernel(kernelName: string, declared?: string | null): KernelLanguage | null {
  const name = kernelName.trim().toLowerCase();
  const byName = Object.hasOwn(KERNEL_NAMES, name) ? KERNEL_NAMES[name] : undefined;
  if (byName) return byName;
  // Versioned Python kernels (python3.12, python3-venv) are common.
  if (/^python\d*([.-][\w.-]*)?$/.test(name)) return 'python';
  const lang = (declared ?? '').trim().toLowerCase();
  return Object.hasOwn(DECLARED_LANGUAGES, lang) ? (DECLARED_LANGUAGES[lang] ?? null) : null;
}

// ---------------------------------------------------------------------------------------------
// Rendering values as literals
// ---------------------------------------------------------------------------------------------

const MAX_DEPTH = 100;
const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const JSON_VALUES =
  'parameter values must be JSON: null, true/false, finite numbers, strings, arrays and objects';

type Number_ = { kind: 'int'; digits: string; big: bigint } | { kind: 'float'; text: string };

/**
 * Classifies a JavaScript number. JSON.parse does not keep "1" and "1.0" apart, so an integral
 * value below 1e21 (where JavaScript itself switches to exponent notation) is rendered as an
 * integer with its exact digits (also beyond 2^53); anything else as a float.
 */
function classifyNumber(value: number | bigint): Number_ {
  if (typeof value === 'bigint') return { kind: 'int', digits: value.toString(), big: value };
  if (Object.is(value, -0)) return { kind: 'float', text: '-0.0' };
  if (Number.isInteger(value) && Math.abs(value) < 1e21) {
    const big = BigInt(value);
    return { kind: 'int', digits: big.toString(), big };
  }
  // String() gives the shortest text that reads back as the same double: "0.1", "1e-7", "1e+21".
  return { kind: 'float', text: String(value) };
}

function hex(code: number, width: number): string {
  return code.toString(16).padStart(width, '0');
}

/**
 * Python's str.encode('unicode_escape') followed by `"` -> `\"`, exactly as papermill renders
 * strings. Everything outside printable ASCII becomes an escape, so the literal is plain ASCII and
 * nothing in the value can end the string. Iterates code points, so a surrogate pair becomes one
 * `\U` escape and a lone surrogate becomes `\udxxx` (Python strings can hold those).
 */
function unicodeEscape(value: string): string {
  let out = '';
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (code >= 0x20 && code < 0x7f) out += ch;
    else if (code < 0x100) out += `\\x${hex(code, 2)}`;
    else if (code < 0x10000) out += `\\u${hex(code, 4)}`;
    else out += `\\U${hex(code, 8)}`;
  }
  return `"${out}"`;
}

/**
 * C# string literal. Departure: papermill reuses unicode_escape, whose `\xNN` is a variable-length
 * escape in C# (`"\xe9" + "1"` would read as U+0E91), so non-ASCII is written as `\uXXXX` per UTF-16
 * unit instead (C# strings are UTF-16, so lone surrogates survive too).
 */
function csharpString(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] ?? '';
    const code = value.charCodeAt(i);
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (code >= 0x20 && code < 0x7f) out += ch;
    else out += `\\u${hex(code, 4)}`;
  }
  return `"${out}"`;
}

// PowerShell treats the typographic single quotes as quote characters too (read by the scanner).
const PS_SINGLE_QUOTES = new Set(["'", '\u2018', '\u2019', '\u201a', '\u201b']);

// The characters PowerShell's tokenizer reads as a double quote (CharExtensions.IsDoubleQuote).
const PS_DOUBLE_QUOTES = new Set(['"', '\u201c', '\u201d', '\u201e']);

// PowerShell's own backtick escapes (Tokenizer.Backtick); `e and `u{} need PowerShell 6+, and
// .NET Interactive runs PowerShell 7.
const PS_ESCAPES: ReadonlyMap<string, string> = new Map([
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

// Never written raw, in any language: controls (C0, C1 with NEL), U+2028/U+2029 (line breaks to
// some parsers), format characters (bidi controls that make code read differently than it runs)
// and lone surrogates (which UTF-8 cannot carry).
const NOT_RAW = /^[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]$/u;

/**
 * PowerShell string. Departure: papermill writes a double-quoted string with Python's backslash
 * escapes, but PowerShell's escape character is the backtick, and `$` in a double-quoted string
 * expands variables and runs `$(...)`. Here every `$`, backtick and double-quote character is
 * backtick-escaped, so nothing interpolates, and every control, line-break, format character and
 * lone surrogate is a backtick escape (`n, `r, `0, `u{XXXX}...), so the literal stays on one line:
 * no value can start a line (where .NET Interactive would honour `#!` and `#r` directives).
 */
function powershellString(value: string): string {
  let out = '';
  // for-of yields code points, and a lone surrogate as itself.
  for (const ch of value) {
    const escape = PS_ESCAPES.get(ch);
    if (escape !== undefined) out += escape;
    else if (ch === '`' || ch === '$' || PS_DOUBLE_QUOTES.has(ch)) out += `\`${ch}`;
    else if (NOT_RAW.test(ch)) out += `\`u{${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase()}}`;
    else out += ch;
  }
  return `"${out}"`;
}

function renderString(value: string, language: KernelLanguage): string {
  switch (language) {
    case 'python':
    case 'fsharp':
      // F# accepts the same escapes as Python's unicode_escape output (\xHH is exactly two digits there).
      return unicodeEscape(value);
    case 'csharp':
      return csharpString(value);
    case 'powershell':
      return powershellString(value);
  }
}

function renderNumber(value: number | bigint, language: KernelLanguage): string {
  const n = classifyNumber(value);
  if (n.kind === 'float') return n.text;
  switch (language) {
    case 'python':
    case 'powershell':
      // Python ints are unbounded; PowerShell widens integer literals to long/decimal/double itself.
      return n.digits;
    case 'csharp':
      if (n.big >= INT32_MIN && n.big <= INT32_MAX) return n.digits;
      if (n.big >= INT64_MIN && n.big <= INT64_MAX) return `${n.digits}L`;
      // Departure: papermill appends L, which does not compile beyond 64 bits; C# has no
      // big-integer literal, so the nearest double is used.
      return `${n.digits}.0`;
    case 'fsharp':
      if (n.big >= INT32_MIN && n.big <= INT32_MAX) return n.digits;
      if (n.big >= INT64_MIN && n.big <= INT64_MAX) return `${n.digits}L`;
      // Departure: F# has a BigInteger literal; papermill's L would not compile.
      return `${n.digits}I`;
  }
}

type Kind = 'number' | 'string' | 'bool' | 'other';

function kindOf(value: unknown): Kind {
  if (typeof value === 'number' || typeof value === 'bigint') return 'number';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  return 'other';
}

class Renderer {
  private readonly ancestors = new Set<object>();

  constructor(private readonly language: KernelLanguage) {}

  render(value: unknown, path: string, depth: number): string {
    const lang = this.language;
    if (value === null) {
      if (lang === 'python') return 'None';
      if (lang === 'fsharp') return 'None';
      if (lang === 'powershell') return '$Null';
      // Departure: papermill raises for null in C#; `(object)null` is a typed null that compiles
      // with `var` and inside arrays/dictionaries.
      return '(object)null';
    }
    if (typeof value === 'boolean') {
      if (lang === 'python') return value ? 'True' : 'False';
      if (lang === 'powershell') return value ? '$True' : '$False';
      return value ? 'true' : 'false';
    }
    if (typeof value === 'bigint') return renderNumber(value, lang);
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) {
        throw new InvalidRequestError(
          `${path} is ${String(value)}, which JSON cannot represent; ${JSON_VALUES}`,
          {
            path,
          },
        );
      }
      return renderNumber(value, lang);
    }
    if (typeof value === 'string') return renderString(value, lang);
    if (typeof value !== 'object') {
      throw new InvalidRequestError(
        `${path} is ${value === undefined ? 'undefined' : `a ${typeof value}`}; ${JSON_VALUES}`,
        {
          path,
        },
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
      if (Array.isArray(value)) return this.renderList(value, path, depth);
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
        throw new InvalidRequestError(`${path} is a ${name}, not a plain object; ${JSON_VALUES}`, { path });
      }
      return this.renderDict(value as Record<string, unknown>, path, depth);
    } finally {
      this.ancestors.delete(value);
    }
  }

  private renderList(list: readonly unknown[], path: string, depth: number): string {
    const items: string[] = [];
    // Index loop, not map(): holes in sparse arrays must be seen (as undefined) and rejected.
    for (let i = 0; i < list.length; i++) items.push(this.render(list[i], `${path}[${i}]`, depth + 1));
    switch (this.language) {
      case 'python':
        return `[${items.join(', ')}]`;
      case 'fsharp': {
        // F# lists are homogeneous: JSON's 2 next to 2.5 was meant as a float, so write it as 2.0.
        const numbers = list.map((v) =>
          typeof v === 'number' || typeof v === 'bigint' ? classifyNumber(v) : null,
        );
        if (numbers.some((n) => n?.kind === 'float')) {
          numbers.forEach((n, i) => {
            if (n?.kind === 'int') items[i] = `${n.digits}.0`;
          });
        }
        return `[ ${items.join('; ')} ]`;
      }
      case 'powershell':
        // Departure: `@(@(1, 2))` flattens to `@(1, 2)`; the unary comma keeps a lone nested list whole.
        if (list.length === 1 && Array.isArray(list[0])) return `@(,${items[0]})`;
        return `@(${items.join(', ')})`;
      case 'csharp': {
        // papermill's `new [] { ... }` only compiles when the elements have a best common type;
        // empty or mixed lists use object[] (departure), homogeneous ones keep papermill's form.
        const kinds = new Set(list.map(kindOf));
        const [only] = kinds;
        if (list.length > 0 && kinds.size === 1 && only !== 'other') return `new [] { ${items.join(', ')} }`;
        return `new object[] { ${items.join(', ')} }`;
      }
    }
  }

  private renderDict(dict: Record<string, unknown>, path: string, depth: number): string {
    const entries = Object.keys(dict).map((key) => {
      const child = /^[A-Za-z_]\w*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
      return [renderString(key, this.language), this.render(dict[key], child, depth + 1)] as const;
    });
    switch (this.language) {
      case 'python':
        return `{${entries.map(([k, v]) => `${k}: ${v}`).join(', ')}}`;
      case 'csharp':
        return `new Dictionary<string,Object>{ ${entries.map(([k, v]) => `{ ${k} , ${v} }`).join(', ')} }`;
      case 'fsharp':
        return `[ ${entries.map(([k, v]) => `(${k}, ${v} :> IComparable)`).join('; ')} ] |> Map.ofList`;
      case 'powershell':
        return `@{${entries.map(([k, v]) => `${k} = ${v}`).join('\n ')}}`;
    }
  }
}

/**
 * Renders a JSON value as a literal of `language`, as papermill's translators do (Python output is
 * always accepted by `ast.literal_eval`). `bigint` is accepted as an exact integer. NaN, Infinity,
 * undefined, functions, symbols, class instances and cycles are rejected with InvalidRequestError.
 */
export function renderValue(value: unknown, language: KernelLanguage): string {
  return new Renderer(language).render(value, 'value', 0);
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const PYTHON_KEYWORDS = new Set(
  (
    'False None True and as assert async await break class continue def del elif else except finally for from ' +
    'global if import in is lambda nonlocal not or pass raise return try while with yield'
  ).split(' '),
);

const CSHARP_KEYWORDS = new Set(
  (
    'abstract as base bool break byte case catch char checked class const continue decimal default delegate do ' +
    'double else enum event explicit extern false finally fixed float for foreach goto if implicit in int ' +
    'interface internal is lock long namespace new null object operator out override params private protected ' +
    'public readonly ref return sbyte sealed short sizeof stackalloc static string struct switch this throw true ' +
    'try typeof uint ulong unchecked unsafe ushort using virtual void volatile while var'
  ).split(' '),
);

const FSHARP_KEYWORDS = new Set(
  (
    'abstract and as assert base begin class default delegate do done downcast downto elif else end exception ' +
    'extern false finally fixed for fun function global if in inherit inline interface internal lazy let match ' +
    'member module mutable namespace new not null of open or override private public rec return select sig ' +
    'static struct then to true try type upcast use val void when while with yield break checked component ' +
    'const constraint continue event external include mixin parallel process protected pure sealed tailcall ' +
    'trait virtual asr land lor lsl lsr lxor mod'
  ).split(' '),
);

// Automatic variables that PowerShell owns; assigning them fails or silently does nothing.
const POWERSHELL_RESERVED = new Set(
  (
    '_ args error event eventargs eventsubscriber executioncontext false foreach home host input ' +
    'lastexitcode matches myinvocation null ofs pid profile psboundparameters pscmdlet pscommandpath ' +
    'psculture pshome psitem psscriptroot pssenderinfo psuiculture psversiontable pwd sender shellid ' +
    'stacktrace switch this true'
  ).split(' '),
);

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkName(name: string, language: KernelLanguage): void {
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(
      `parameter name ${JSON.stringify(name)} is not allowed: names are ASCII letters, digits and '_', not starting with a digit`,
      { parameter: name },
    );
  }
  const reserved =
    language === 'python'
      ? PYTHON_KEYWORDS.has(name)
      : language === 'csharp'
        ? CSHARP_KEYWORDS.has(name)
        : language === 'fsharp'
          ? FSHARP_KEYWORDS.has(name)
          : POWERSHELL_RESERVED.has(name.toLowerCase());
  if (reserved) {
    throw new InvalidRequestError(
      `parameter name ${JSON.stringify(name)} is a reserved word in ${language}`,
      {
        parameter: name,
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Injection
// ---------------------------------------------------------------------------------------------

const COMMENTS: Record<KernelLanguage, string> = {
  python: '# Parameters',
  csharp: '// Parameters',
  fsharp: '(* Parameters *)',
  powershell: '# Parameters',
};

/** papermill's Translator.codify: the comment header, then one assignment per parameter. */
export function codifyParameters(params: Record<string, unknown>, language: KernelLanguage): string {
  let content = `${COMMENTS[language]}\n`;
  for (const [name, value] of Object.entries(params)) {
    checkName(name, language);
    let literal: string;
    try {
      literal = new Renderer(language).render(value, name, 0);
    } catch (error) {
      if (error instanceof InvalidRequestError) {
        throw new InvalidRequestError(`parameter ${JSON.stringify(name)}: ${error.message}`, {
          ...error.details,
          parameter: name,
        });
      }
      throw error;
    }
    switch (language) {
      case 'python':
        content += `${name} = ${literal}\n`;
        break;
      case 'csharp':
        content += `var ${name} = ${literal};\n`;
        break;
      case 'fsharp':
        content += `let ${name} = ${literal}\n`;
        break;
      case 'powershell':
        content += `$${name} = ${literal}\n`;
        break;
    }
  }
  return content;
}

// .NET Interactive (polyglot) notebooks choose the sub-kernel of a cell from its metadata.
const DOTNET_CELL_LANGUAGE: Partial<Record<KernelLanguage, string>> = {
  csharp: 'csharp',
  fsharp: 'fsharp',
  powershell: 'pwsh',
};

function uniqueCellId(cells: readonly NotebookCell[]): string {
  const taken = new Set(cells.map((cell) => cell.id));
  let id = INJECTED_PARAMETERS_TAG;
  for (let n = 2; taken.has(id); n++) id = `${INJECTED_PARAMETERS_TAG}-${n}`;
  return id;
}

/**
 * Returns a new notebook with `params` injected as papermill does: every cell tagged
 * `injected-parameters` is removed and a new code cell with that tag (a comment header, then one
 * assignment per parameter) goes right after the first cell tagged `parameters`, or first when there
 * is none. The parameters are recorded in `metadata.papermill.parameters`. With no parameters the
 * notebook is returned unchanged (as papermill does not parameterize then). `nb` is not modified.
 * Throws InvalidRequestError for names that are not identifiers and values that are not JSON.
 */
export function injectParameters(
  nb: Notebook,
  params: Record<string, unknown>,
  language: KernelLanguage,
  kernelName?: string,
): Notebook {
  const copy = structuredClone(nb);
  if (Object.keys(params).length === 0) return copy;
  const source = codifyParameters(params, language);
  // Departure: papermill replaces only the first injected cell, in place; removing all of them and
  // inserting after the parameters cell gives the same result in the usual layout and never leaves
  // stale injected values behind.
  const cells = copy.cells.filter((cell) => !cellTags(cell).includes(INJECTED_PARAMETERS_TAG));
  const metadata: NotebookCell['metadata'] = { tags: [INJECTED_PARAMETERS_TAG] };
  const dotnet = DOTNET_CELL_LANGUAGE[language];
  if (kernelName?.startsWith('.net-') && dotnet) {
    metadata.dotnet_interactive = { language: dotnet };
    metadata.polyglot_notebook = { kernelName: dotnet };
  }
  const cell: NotebookCell = { cell_type: 'code', execution_count: null, metadata, outputs: [], source };
  // Cell ids exist from nbformat 4.5 on; older notebooks must not get one.
  if (copy.nbformat_minor >= 5) cell.id = uniqueCellId(cells);
  const withoutInjected: Notebook = { ...copy, cells };
  const paramIndex = findTaggedCell(withoutInjected, PARAMETERS_TAG);
  cells.splice(paramIndex + 1, 0, cell);
  const previous = copy.metadata.papermill;
  const base = typeof previous === 'object' && previous !== null && !Array.isArray(previous) ? previous : {};
  const papermill = { ...base, parameters: structuredClone(params) };
  return { ...withoutInjected, metadata: { ...copy.metadata, papermill } };
}

/** Names in `params` that the parameters cell does not declare, in the order given. */
export function unknownParameters(
  known: readonly ParameterInfo[],
  params: Record<string, unknown>,
): string[] {
  const names = new Set(known.map((p) => p.name));
  return Object.keys(params).filter((name) => !names.has(name));
}

// ---------------------------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------------------------

const CODE = 0;
const STRING = 1;
const COMMENT = 2;
type CharKind = typeof CODE | typeof STRING | typeof COMMENT;

interface Comment {
  start: number;
  end: number;
  text: string;
}

/** Source with every character classified, so brackets, `=` and `#` inside strings are not misread. */
interface Scanned {
  src: string;
  kind: CharKind[];
  comments: Comment[];
}

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

const isIdentChar = (ch: string): boolean => /[\w$]/.test(ch);

function scanPython(src: string): Scanned {
  const s = new Scanner(src);
  while (s.i < src.length) {
    const ch = s.at();
    if (ch === '#') {
      s.lineComment(1);
      continue;
    }
    const prefix = /^(?:[rRbBuUfF]{1,2})?('''|"""|'|")/.exec(src.slice(s.i, s.i + 5));
    // A prefix letter right after an identifier (`bar"`) is part of that identifier, not a prefix.
    const prefixed = prefix !== null && prefix[0].length > (prefix[1]?.length ?? 0);
    if (prefix?.[1] && (!prefixed || s.i === 0 || !isIdentChar(src[s.i - 1] ?? ''))) {
      const quote = prefix[1];
      s.quoted(prefix[0].length, quote, { escape: '\\', multiline: quote.length === 3 });
      continue;
    }
    s.i++;
  }
  return s.done();
}

function scanCSharp(src: string): Scanned {
  const s = new Scanner(src);
  while (s.i < src.length) {
    if (s.startsWith('//')) {
      s.lineComment(2);
      continue;
    }
    if (s.startsWith('/*')) {
      s.blockComment('/*', '*/', false);
      continue;
    }
    const raw = /^\$*("{3,})/.exec(src.slice(s.i, s.i + 16));
    if (raw?.[1]) {
      s.quoted(raw[0].length, raw[1], { multiline: true });
      continue;
    }
    const verbatim = /^(?:@\$|\$@|@)"/.exec(src.slice(s.i, s.i + 3));
    if (verbatim) {
      s.quoted(verbatim[0].length, '"', { doubled: true, multiline: true });
      continue;
    }
    if (s.startsWith('$"') || s.at() === '"') {
      s.quoted(s.at() === '$' ? 2 : 1, '"', { escape: '\\', multiline: false });
      continue;
    }
    if (s.at() === "'") {
      s.quoted(1, "'", { escape: '\\', multiline: false });
      continue;
    }
    s.i++;
  }
  return s.done();
}

function scanFSharp(src: string): Scanned {
  const s = new Scanner(src);
  while (s.i < src.length) {
    if (s.startsWith('//')) {
      s.lineComment(2);
      continue;
    }
    // `(*)` is the multiplication operator, not a comment.
    if (s.startsWith('(*') && !s.startsWith('(*)')) {
      s.blockComment('(*', '*)', true);
      continue;
    }
    if (s.startsWith('"""') || s.startsWith('$"""')) {
      s.quoted(s.at() === '$' ? 4 : 3, '"""', { multiline: true });
      continue;
    }
    if (s.startsWith('@"') || s.startsWith('$@"') || s.startsWith('@$"')) {
      s.quoted(s.at(1) === '"' ? 2 : 3, '"', { doubled: true, multiline: true });
      continue;
    }
    if (s.startsWith('$"') || s.at() === '"') {
      s.quoted(s.at() === '$' ? 2 : 1, '"', { escape: '\\', multiline: true });
      continue;
    }
    // 'a' is a char literal, but 'a alone is a type variable and x' an identifier.
    const charLit =
      /^'(?:\\(?:[ntbrafv\\"'0]|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|\d{3})|[^\\'\n])'/.exec(
        src.slice(s.i, s.i + 12),
      );
    if (charLit && (s.i === 0 || !isIdentChar(src[s.i - 1] ?? ''))) {
      s.quoted(1, "'", { escape: '\\', multiline: false });
      continue;
    }
    s.i++;
  }
  return s.done();
}

function scanPowerShell(src: string): Scanned {
  const s = new Scanner(src);
  while (s.i < src.length) {
    if (s.startsWith('<#')) {
      s.blockComment('<#', '#>', false);
      continue;
    }
    if (s.at() === '#') {
      s.lineComment(1);
      continue;
    }
    if (s.at() === '`') {
      s.i += 2; // escaped character / line continuation
      continue;
    }
    const here = /^@(['"])\r?\n/.exec(src.slice(s.i, s.i + 4));
    if (here?.[1]) {
      s.quoted(2, `\n${here[1]}@`, { multiline: true });
      continue;
    }
    if (PS_SINGLE_QUOTES.has(s.at())) {
      const start = s.i;
      let k = start + 1;
      while (k < src.length) {
        if (PS_SINGLE_QUOTES.has(src[k] ?? '')) {
          if (PS_SINGLE_QUOTES.has(src[k + 1] ?? '')) k += 2;
          else {
            k++;
            break;
          }
        } else k++;
      }
      s.mark(start, k, STRING);
      s.i = k;
      continue;
    }
    if (s.at() === '"' || s.at() === '\u201c' || s.at() === '\u201d' || s.at() === '\u201e') {
      s.quoted(1, s.at() === '"' ? '"' : s.at(), { escape: '`', doubled: true, multiline: true });
      continue;
    }
    s.i++;
  }
  return s.done();
}

interface Statement {
  start: number;
  /** Exclusive; the terminator (newline, `;`) is not part of the statement. */
  end: number;
}

const OPEN = '([{';
const CLOSE = ')]}';

/**
 * Splits scanned source into statements: at code newlines outside brackets (Python, PowerShell,
 * unless continued), at `;` outside brackets, at a closing `}` that ends a block (C#), or before
 * every unindented line (F#, whose statements are delimited by layout).
 */
function splitStatements(scan: Scanned, language: KernelLanguage): Statement[] {
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
      if (language === 'csharp' && ch === '}' && depth === 0 && !';,).'.includes(nextCode(k + 1) || '.')) {
        push(k + 1);
        start = k + 1;
      }
    } else if (ch === ';' && depth === 0 && language !== 'fsharp') {
      push(k);
      start = k + 1;
    } else if (ch === '\n' && depth === 0) {
      if (language === 'python' || language === 'powershell') {
        const continuation = language === 'python' ? '\\' : '`';
        const last = src[k - 1] === '\r' ? k - 2 : k - 1;
        if (!(src[last] === continuation && kind[last] === CODE)) {
          push(k);
          start = k + 1;
        }
      } else if (language === 'fsharp') {
        const next = src[k + 1] ?? '';
        if (next !== '' && kind[k + 1] === CODE && next.trim() !== '') {
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
function flatten(scan: Scanned, st: Statement, language: KernelLanguage): { text: string; kind: CharKind[] } {
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
    if (text !== '') {
      // Joining without a space (as papermill does) would glue `a\nor b` into `aor b`.
      const spaced =
        language === 'fsharp' || language === 'powershell' || (/\w$/.test(text) && /^\w/.test(piece));
      if (spaced) {
        text += ' ';
        kinds.push(CODE);
      }
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

/** True when `text` (from 1 to length-1) holds `ch` outside strings and nested brackets. */
function hasTopLevel(
  text: string,
  kind: readonly CharKind[],
  ch: string,
  from = 0,
  to = text.length,
): boolean {
  let depth = 0;
  for (let k = from; k < to; k++) {
    if (kind[k] !== CODE) continue;
    const c = text[k] ?? '';
    if (OPEN.includes(c)) depth++;
    else if (CLOSE.includes(c)) depth--;
    else if (c === ch && depth === 0) return true;
  }
  return false;
}

function isWholeString(text: string, kind: readonly CharKind[]): boolean {
  if (text === '' || kind[0] !== STRING) return false;
  // Adjacent literals ("a" "b") are one string in Python.
  return kind.every((k, i) => k === STRING || /\s/.test(text[i] ?? ''));
}

function wraps(text: string, kind: readonly CharKind[], open: string): boolean {
  return text.startsWith(open) && kind[0] === CODE && matchingBracket(text, kind, 0) === text.length - 1;
}

function inferPython(text: string, kind: readonly CharKind[]): string | null {
  if (text === 'None') return 'None';
  if (text === 'True' || text === 'False') return 'bool';
  if (/^[+-]?(?:0[xX][\da-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|\d[\d_]*)$/.test(text)) return 'int';
  if (/^[+-]?(?:\d[\d_]*\.[\d_]*|\.\d[\d_]*|\d[\d_]*(?=[eE]))(?:[eE][+-]?\d[\d_]*)?$/.test(text))
    return 'float';
  if (isWholeString(text, kind)) return /^[rRuUfF]*[bB]/.test(text) ? 'bytes' : 'str';
  if (wraps(text, kind, '[')) return 'list';
  if (wraps(text, kind, '{')) {
    return text === '{}' || hasTopLevel(text, kind, ':', 1, text.length - 1) ? 'dict' : 'set';
  }
  if (wraps(text, kind, '(')) {
    if (/^\(\s*\)$/.test(text) || hasTopLevel(text, kind, ',', 1, text.length - 1)) return 'tuple';
    const a = 1;
    let b = text.length - 1;
    while (b > a && /\s/.test(text[b - 1] ?? '')) b--;
    const inner = text.slice(a, b).trim();
    const offset = text.indexOf(inner, a);
    return inferPython(inner, kind.slice(offset, offset + inner.length));
  }
  return null;
}

function inferCSharp(text: string, kind: readonly CharKind[]): string | null {
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

function inferFSharp(text: string, kind: readonly CharKind[]): string | null {
  if (text === 'true' || text === 'false') return 'bool';
  if (text === 'None' || /^Some[\s(]/.test(text)) return 'option';
  const int =
    /^-?(?:0[xX][\da-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|\d[\d_]*)(y|uy|s|us|u|l|ul|UL|L|n|un|I)?$/.exec(text);
  if (int) {
    const types: Record<string, string> = {
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
    return types[int[1] ?? ''] ?? 'int';
  }
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

function inferPowerShell(text: string, kind: readonly CharKind[]): string | null {
  const lower = text.toLowerCase();
  if (lower === '$true' || lower === '$false') return 'bool';
  if (/^-?(?:0x[\da-f]+|\d+)(?:l|u|ul|n)?(?:kb|mb|gb|tb|pb)?$/i.test(text)) return 'int';
  if (/^-?(?:\d+\.\d*|\.\d+|\d+(?=e))(?:e[+-]?\d+)?d?$/i.test(text)) return 'double';
  if (isWholeString(text, kind)) return 'string';
  if (text.startsWith('@(')) return 'array';
  if (text.startsWith('@{') || text.startsWith('[ordered]@{')) return 'hashtable';
  return null;
}

const PYTHON_DECLARATION = /^(?<name>[A-Za-z_]\w*)\s*(?::\s*(?<type>[^=]+?))?\s*=(?!=)\s*(?<value>[\s\S]+)$/;
const CSHARP_DECLARATION =
  /^(?:(?:const|static|readonly|public|private|internal)\s+)*(?<type>[A-Za-z_][\w.]*(?:\s*<[^;=]*?>)?(?:\s*\[[\s,]*\])*\??)\s+(?<name>@?[A-Za-z_]\w*)\s*=(?!=)\s*(?<value>[\s\S]+)$/;
const FSHARP_DECLARATION =
  /^let\s+(?:(?:mutable|inline|private|internal|public)\s+)*(?<name>[A-Za-z_]\w*)\s*(?::\s*(?<type>[^=]+?))?\s*=(?!=)\s*(?<value>[\s\S]+)$/;
const POWERSHELL_DECLARATION =
  /^(?:\[(?<type>[\w.]+(?:\[[\w.,\s]*\])*)\]\s*)?\$(?<name>[A-Za-z_]\w*)\s*=(?!=)\s*(?<value>[\s\S]+)$/;

// Words that can precede `name = ...` in C# without being a type.
const CSHARP_NOT_TYPES = new Set([
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

/** True when `value` has another top-level assignment (`a = b = 1`), which papermill skips. */
function chainedAssignment(text: string, kind: readonly CharKind[], from: number): boolean {
  let depth = 0;
  for (let k = from; k < text.length; k++) {
    if (kind[k] !== CODE) continue;
    const c = text[k] ?? '';
    if (OPEN.includes(c)) depth++;
    else if (CLOSE.includes(c)) depth--;
    else if (
      c === '=' &&
      depth === 0 &&
      !'=!<>:+-*/%&|^@'.includes(text[k - 1] ?? '') &&
      text[k + 1] !== '='
    ) {
      return true;
    }
  }
  return false;
}

/** Replaces lines matching `pattern` with spaces, keeping every offset. */
function blankLines(src: string, pattern: RegExp): string {
  return src
    .split('\n')
    .map((line) => (pattern.test(line) ? line.replace(/[^\r]/g, ' ') : line))
    .join('\n');
}

const SCANNERS: Record<KernelLanguage, (src: string) => Scanned> = {
  python: scanPython,
  csharp: scanCSharp,
  fsharp: scanFSharp,
  powershell: scanPowerShell,
};

/**
 * Reads the parameters declared in `source` (the text of a parameters cell). Python follows
 * papermill's PythonTranslator.inspect: `name = value`, `name: type = value`, a trailing
 * `# type: T` comment, the rest of the trailing comment as help; assignments inside def/class bodies
 * are ignored, as are IPython magics. C# reads `var x = 1; // help` and typed declarations, F#
 * `let x = 1 // help`, PowerShell `$x = 1 # help` and `[int]$x = 1`.
 */
export function inspectParametersSource(source: string, language: KernelLanguage): ParameterInfo[] {
  let src = source;
  if (language === 'python') {
    if (/^\s*%%/.test(src)) return []; // a cell magic: the cell is not Python
    // Blank IPython line magics and shell escapes, keeping offsets, as papermill's inspection does.
    src = blankLines(src, /^[ \t]*[%!?](?!=)/);
  } else if (language === 'csharp' || language === 'fsharp') {
    // `#r "nuget: ..."`, `#load`, `#!magic` and preprocessor lines are not declarations.
    src = blankLines(src, /^[ \t]*#/);
  }
  const scan = SCANNERS[language](src);
  const params: ParameterInfo[] = [];
  let inScope = false; // inside the body of a def/class (Python)
  for (const st of splitStatements(scan, language)) {
    const lineStart = src.lastIndexOf('\n', st.start - 1) + 1;
    const firstCode = src.slice(st.start).search(/\S/) + st.start;
    const indented = src.slice(lineStart, firstCode).trim() === '' && firstCode > lineStart;
    const { text, kind } = flatten(scan, st, language);
    if (text === '') continue;
    if (language === 'python') {
      if (!indented) inScope = /^(?:async\s+def|def|class)\b|^@/.test(text);
      else if (inScope) continue;
    }
    const pattern =
      language === 'python'
        ? PYTHON_DECLARATION
        : language === 'csharp'
          ? CSHARP_DECLARATION
          : language === 'fsharp'
            ? FSHARP_DECLARATION
            : POWERSHELL_DECLARATION;
    const match = pattern.exec(text);
    const groups = match?.groups;
    if (!match || !groups?.name || groups.value === undefined) continue;
    const name = groups.name.replace(/^@/, '');
    const value = groups.value.trim();
    const valueStart = text.length - groups.value.length;
    // The `=` must be code, not part of a string in a type annotation.
    if (kind[text.lastIndexOf('=', valueStart - 1)] !== CODE) continue;
    const valueKind = kind.slice(valueStart, valueStart + value.length);
    if (chainedAssignment(text, kind, valueStart)) continue;
    let declared = groups.type?.trim() || null;
    if (language === 'python') {
      if (PYTHON_KEYWORDS.has(name)) continue;
      // A quoted annotation (`x: "int" = 1`) names the type as text.
      if (declared && /^(['"]).*\1$/.test(declared)) declared = declared.slice(1, -1);
    }
    if (language === 'csharp') {
      if (CSHARP_NOT_TYPES.has(declared ?? '') || CSHARP_KEYWORDS.has(name)) continue;
      if (declared === 'var') declared = null;
    }
    const comment = trailingComment(scan, st);
    let help = comment?.text ?? '';
    if (language === 'python') {
      const typeComment = /^type:\s*(\S*)\s*([\s\S]*)$/.exec(help);
      if (typeComment) {
        declared ??= typeComment[1] || null;
        help = (typeComment[2] ?? '').trim();
      }
    }
    const infer =
      language === 'python'
        ? inferPython
        : language === 'csharp'
          ? inferCSharp
          : language === 'fsharp'
            ? inferFSharp
            : inferPowerShell;
    params.push({ name, inferred_type: declared ?? infer(value, valueKind), default: value, help });
  }
  return params;
}

/**
 * The parameters declared in the notebook's first cell tagged `parameters` (see
 * {@link inspectParametersSource}); an empty list when there is no such cell.
 */
export function inspectParameters(nb: Notebook, language: KernelLanguage): ParameterInfo[] {
  const index = findTaggedCell(nb, PARAMETERS_TAG);
  const cell = nb.cells[index];
  if (!cell) return [];
  return inspectParametersSource(cellSource(cell), language);
}
