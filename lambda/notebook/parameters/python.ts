/**
 * Python parameters, as papermill's PythonTranslator writes and inspects them: literals that
 * `ast.literal_eval` accepts, `name = value`, and inspection of `name = value`,
 * `name: type = value` and `# type: T` comments.
 */
import type { Dialect } from './dialect.ts';
import { unicodeEscape } from './literals.ts';
import {
  blankLines,
  type CharKind,
  hasTopLevel,
  isIdentChar,
  isWholeString,
  readAssignments,
  scanWith,
  type Scanned,
  wraps,
} from './source-scan.ts';

const KEYWORDS = new Set(
  (
    'False None True and as assert async await break class continue def del elif else except finally for from ' +
    'global if import in is lambda nonlocal not or pass raise return try while with yield'
  ).split(' '),
);

const DECLARATION = /^(?<name>[A-Za-z_]\w*)\s*(?::\s*(?<type>[^=]+?))?\s*=(?!=)\s*(?<value>[\s\S]+)$/;

function lex(src: string): Scanned {
  return scanWith(src, (s) => {
    const ch = s.at();
    if (ch === '#') {
      s.lineComment(1);
      return true;
    }
    const prefix = /^(?:[rRbBuUfF]{1,2})?('''|"""|'|")/.exec(src.slice(s.i, s.i + 5));
    // A prefix letter right after an identifier (`bar"`) is part of that identifier, not a prefix.
    const prefixed = prefix !== null && prefix[0].length > (prefix[1]?.length ?? 0);
    if (prefix?.[1] && (!prefixed || s.i === 0 || !isIdentChar(src[s.i - 1] ?? ''))) {
      const quote = prefix[1];
      s.quoted(prefix[0].length, quote, { escape: '\\', multiline: quote.length === 3 });
      return true;
    }
    return false;
  });
}

function infer(text: string, kind: readonly CharKind[]): string | null {
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
    return infer(inner, kind.slice(offset, offset + inner.length));
  }
  return null;
}

export const python: Dialect = {
  language: 'python',
  kernelNames: ['python', 'python3', 'python2', 'pysparkkernel'],
  // Versioned Python kernels (python3.12, python3-venv) are common.
  kernelNamePattern: /^python\d*([.-][\w.-]*)?$/,
  declaredLanguages: ['python', 'python3'],
  comment: (text) => `# ${text}`,
  assign: (name, literal) => `${name} = ${literal}`,
  isReserved: (name) => KEYWORDS.has(name),
  literals: {
    null: 'None',
    bool: (value) => (value ? 'True' : 'False'),
    // Python ints are unbounded.
    integer: (n) => n.digits,
    string: unicodeEscape,
    list: (items) => `[${items.join(', ')}]`,
    dict: (entries) => `{${entries.map(([k, v]) => `${k}: ${v}`).join(', ')}}`,
  },
  /**
   * As papermill's PythonTranslator.inspect: `name = value`, `name: type = value`, a trailing
   * `# type: T` comment, the rest of the trailing comment as help; assignments inside def/class
   * bodies are ignored, as are IPython magics.
   */
  scan(source) {
    if (/^\s*%%/.test(source)) return []; // a cell magic: the cell is not Python
    // Blank IPython line magics and shell escapes, keeping offsets, as papermill's inspection does.
    const src = blankLines(source, /^[ \t]*[%!?](?!=)/);
    let inScope = false; // inside the body of a def/class
    return readAssignments(lex(src), {
      statements: { semicolon: true, blockBrace: false, newline: { continuation: '\\' }, spacedJoin: false },
      declaration: DECLARATION,
      skip(text, indented) {
        if (!indented) inScope = /^(?:async\s+def|def|class)\b|^@/.test(text);
        return indented && inScope;
      },
      refine({ name, declared, help }) {
        if (KEYWORDS.has(name)) return null;
        // A quoted annotation (`x: "int" = 1`) names the type as text.
        let type = declared && /^(['"]).*\1$/.test(declared) ? declared.slice(1, -1) : declared;
        const typeComment = /^type:\s*(\S*)\s*([\s\S]*)$/.exec(help);
        if (!typeComment) return { declared: type, help };
        type ??= typeComment[1] || null;
        return { declared: type, help: (typeComment[2] ?? '').trim() };
      },
    });
  },
  infer,
};
