import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import { cellSource, parseNotebook, type Notebook } from '../../lambda/notebook/notebook.ts';
import {
  codifyParameters,
  injectParameters,
  inspectParameters,
  inspectParametersSource,
  KERNEL_LANGUAGES,
  languageForKernel,
  renderValue,
  unknownParameters,
  type KernelLanguage,
} from '../../lambda/notebook/parameters.ts';

const PYTHON = process.env.NOTEBOOK_JOBS_PYTHON ?? '/usr/bin/python3';

/**
 * Evaluates Python sources in ONE real interpreter run. Each source is either a literal
 * (`ast.literal_eval`) or, in 'cell' mode, a code cell that must consist of a comment line and
 * `name = <literal>` assignments only. Values come back through json.dumps (ASCII, so lone
 * surrogates survive as \udxxx escapes), with repr() for exact integer checks.
 */
function runPython(
  sources: string[],
  mode: 'literal' | 'cell',
): Array<{ ok: boolean; value?: unknown; repr?: string; error?: string }> {
  const script = String.raw`
import ast, json, sys
mode = sys.argv[1]
sources = json.loads(sys.stdin.buffer.read().decode('utf-8'))
out = []
for src in sources:
    try:
        if mode == 'literal':
            value = ast.literal_eval(src)
        else:
            lines = src.split('\n')
            assert lines[0] == '# Parameters', 'first line is the papermill comment'
            tree = ast.parse(src, mode='exec')
            value = {}
            for stmt in tree.body:
                assert isinstance(stmt, ast.Assign), 'only assignments: ' + ast.dump(stmt)
                assert len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), 'one plain name'
                value[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        out.append({'ok': True, 'value': value, 'repr': repr(value)})
    except Exception as e:
        out.append({'ok': False, 'error': type(e).__name__ + ': ' + str(e)})
sys.stdout.write(json.dumps(out))
`;
  const result = spawnSync(PYTHON, ['-c', script, mode], {
    input: JSON.stringify(sources),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${PYTHON} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Array<{ ok: boolean; value?: unknown; repr?: string; error?: string }>;
}

/** JSON equality that tells -0 from 0 and ignores key order. */
function sameJson(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' || typeof b === 'number') return Object.is(a, b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return sameJson(ka, kb) && ka.every((k) => sameJson(ra[k], rb[k]));
}

const HOSTILE = [
  `"); __import__('os').system('x') #`,
  `'''`,
  `"""`,
  `""" + __import__("os").getcwd() + """`,
  '\\',
  '\\"',
  'a\\',
  '\\n',
  '\n',
  '\r\n',
  '\u0000',
  '\u007f',
  '\u0085',
  '\u2028\u2029',
  '\ud800',
  '\udfff',
  '\udc00\ud800',
  '\u{1f600}',
  'é',
  '\\x41\\u0041\\N{BULLET}',
  '{x}',
  '${x}',
  '$(whoami)',
  '`n',
  "'; exit #",
  '‘’',
  '#',
];
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const anyChar = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  loneSurrogate,
  fc.constantFrom(...HOSTILE),
);
const hostileString = fc.string({ unit: anyChar, maxLength: 24 });
const anyJson = fc.oneof(
  fc.jsonValue(),
  fc.jsonValue({ stringUnit: anyChar, maxDepth: 3 }),
  hostileString,
  fc.array(hostileString, { maxLength: 4 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  // Integral doubles well beyond 2^53 (and past 1e21, where JavaScript switches to exponents).
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map((n) => Number(n)),
);
// A seed per run (printed on failure) so a failing sample set can be regenerated.
const seed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));

describe('renderValue for Python, checked with the real interpreter', () => {
  it('the checker itself rejects code that is not a literal', () => {
    const [call, name, literal] = runPython([`__import__('os').system('true')`, 'x', '[1, "a"]'], 'literal');
    expect(call?.ok).toBe(false);
    expect(name?.ok).toBe(false);
    expect(literal).toMatchObject({ ok: true, value: [1, 'a'] });
  });

  it('property: any JSON value renders to a literal that ast.literal_eval reads back as the same value', () => {
    const values = fc.sample(anyJson, { numRuns: 300, seed });
    const rendered = values.map((v) => renderValue(v, 'python'));
    const results = runPython(rendered, 'literal');
    values.forEach((value, i) => {
      const result = results[i];
      const context = `seed ${seed}, sample ${i}: ${rendered[i]}`;
      expect(result?.ok, `${context}: ${result?.error}`).toBe(true);
      expect(sameJson(result?.value, value), `${context}: got ${JSON.stringify(result?.value)}`).toBe(true);
    });
  });

  it('property: an injected cell is only `name = <literal>` lines that evaluate to the parameters', () => {
    const names = fc
      .stringMatching(/^[a-z_][a-z0-9_]{0,8}$/)
      .filter((n) => !['if', 'in', 'is', 'or', 'as', 'def', 'del', 'for', 'and', 'not', 'try'].includes(n));
    const paramSets = fc.sample(fc.dictionary(names, anyJson, { minKeys: 1, maxKeys: 5 }), {
      numRuns: 200,
      seed,
    });
    const sources = paramSets.map((params) => {
      const nb = injectParameters(notebook([code('x = 1', ['parameters'])]), params, 'python');
      return nb.cells[1]?.source as string;
    });
    const results = runPython(sources, 'cell');
    paramSets.forEach((params, i) => {
      const result = results[i];
      const context = `seed ${seed}, sample ${i}:\n${sources[i]}`;
      expect(result?.ok, `${context}\n${result?.error}`).toBe(true);
      expect(sameJson(result?.value, params), context).toBe(true);
    });
  });

  it('integers beyond 2^53 keep every digit (numbers and bigints)', () => {
    const values: Array<number | bigint> = [
      2 ** 53 + 2,
      2 ** 60,
      -(2 ** 69),
      2n ** 64n + 1n,
      -(10n ** 40n) - 7n,
    ];
    const rendered = values.map((v) => renderValue(v, 'python'));
    expect(rendered[1]).toBe('1152921504606846976');
    const results = runPython(rendered, 'literal');
    values.forEach((v, i) => expect(results[i]?.repr).toBe(BigInt(v).toString()));
  });

  it('floats keep their exact value, exponents included', () => {
    const values = [0.1, 1e-7, -2.5e-300, 5e-324, 1.7976931348623157e308, 1e21, 123.456, -0];
    const rendered = values.map((v) => renderValue(v, 'python'));
    expect(rendered).toEqual([
      '0.1',
      '1e-7',
      '-2.5e-300',
      '5e-324',
      '1.7976931348623157e+308',
      '1e+21',
      '123.456',
      '-0.0',
    ]);
    const results = runPython(rendered, 'literal');
    values.forEach((v, i) => expect(Object.is(results[i]?.value, v), rendered[i]).toBe(true));
  });
});

describe('renderValue examples', () => {
  it("matches papermill's Python translator", () => {
    expect(renderValue('foo', 'python')).toBe('"foo"');
    expect(renderValue('{"foo": "bar"}', 'python')).toBe('"{\\"foo\\": \\"bar\\"}"');
    expect(renderValue({ foo: '"bar"' }, 'python')).toBe('{"foo": "\\"bar\\""}');
    expect(renderValue([{ foo: 'bar' }], 'python')).toBe('[{"foo": "bar"}]');
    expect(renderValue(12345, 'python')).toBe('12345');
    expect(renderValue(-5432.1, 'python')).toBe('-5432.1');
    expect(renderValue(true, 'python')).toBe('True');
    expect(renderValue(null, 'python')).toBe('None');
    // Python's unicode_escape: \xNN, \uNNNN, \UNNNNNNNN.
    expect(renderValue('é€😀\t\u0001', 'python')).toBe('"\\xe9\\u20ac\\U0001f600\\t\\x01"');
  });

  it("matches papermill's C# translator", () => {
    expect(renderValue('foo', 'csharp')).toBe('"foo"');
    expect(renderValue('{"foo": "bar"}', 'csharp')).toBe('"{\\"foo\\": \\"bar\\"}"');
    expect(renderValue({ foo: 'bar' }, 'csharp')).toBe('new Dictionary<string,Object>{ { "foo" , "bar" } }');
    expect(renderValue(['foo', '"bar"'], 'csharp')).toBe('new [] { "foo", "\\"bar\\"" }');
    expect(renderValue([{ foo: 'bar' }], 'csharp')).toBe(
      'new object[] { new Dictionary<string,Object>{ { "foo" , "bar" } } }',
    );
    expect(renderValue(12345, 'csharp')).toBe('12345');
    expect(renderValue(-5432.1, 'csharp')).toBe('-5432.1');
    expect(renderValue(2147483648, 'csharp')).toBe('2147483648L');
    expect(renderValue(-2147483649, 'csharp')).toBe('-2147483649L');
    expect(renderValue(true, 'csharp')).toBe('true');
    expect(codifyParameters({ foo: ['bar', 'baz'] }, 'csharp')).toBe(
      '// Parameters\nvar foo = new [] { "bar", "baz" };\n',
    );
    expect(codifyParameters({ foo: { bar: 'baz' } }, 'csharp')).toBe(
      '// Parameters\nvar foo = new Dictionary<string,Object>{ { "bar" , "baz" } };\n',
    );
  });

  it('C# departures: null, mixed or empty lists, huge integers, non-ASCII as \\u', () => {
    expect(renderValue(null, 'csharp')).toBe('(object)null');
    expect(renderValue([1, 'a'], 'csharp')).toBe('new object[] { 1, "a" }');
    expect(renderValue([], 'csharp')).toBe('new object[] {  }');
    expect(renderValue([1, 2.5], 'csharp')).toBe('new [] { 1, 2.5 }');
    expect(renderValue(2n ** 64n, 'csharp')).toBe('18446744073709551616.0');
    // "\xe91" would be one character in C#; \u escapes have a fixed width.
    expect(renderValue('é1😀', 'csharp')).toBe('"\\u00e91\\ud83d\\ude00"');
  });

  it("matches papermill's F# translator", () => {
    expect(renderValue('{"foo": "bar"}', 'fsharp')).toBe('"{\\"foo\\": \\"bar\\"}"');
    expect(renderValue({ foo: 'bar' }, 'fsharp')).toBe('[ ("foo", "bar" :> IComparable) ] |> Map.ofList');
    expect(renderValue(['foo', '"bar"'], 'fsharp')).toBe('[ "foo"; "\\"bar\\"" ]');
    expect(renderValue([{ foo: 'bar' }], 'fsharp')).toBe(
      '[ [ ("foo", "bar" :> IComparable) ] |> Map.ofList ]',
    );
    expect(renderValue(2147483648, 'fsharp')).toBe('2147483648L');
    expect(renderValue(-2147483649, 'fsharp')).toBe('-2147483649L');
    expect(renderValue(false, 'fsharp')).toBe('false');
    expect(renderValue(null, 'fsharp')).toBe('None');
    expect(codifyParameters({ foo: 1.1 }, 'fsharp')).toBe('(* Parameters *)\nlet foo = 1.1\n');
  });

  it('F# departures: bigint literal beyond 64 bits, floats kept floats in mixed lists', () => {
    expect(renderValue(2n ** 64n, 'fsharp')).toBe('18446744073709551616I');
    expect(renderValue([1, 2.5], 'fsharp')).toBe('[ 1.0; 2.5 ]');
    expect(renderValue([1, 2], 'fsharp')).toBe('[ 1; 2 ]');
  });

  it("matches papermill's PowerShell translator except for string escapes", () => {
    expect(renderValue(null, 'powershell')).toBe('$Null');
    expect(renderValue(true, 'powershell')).toBe('$True');
    expect(renderValue(false, 'powershell')).toBe('$False');
    expect(renderValue(-5432.1, 'powershell')).toBe('-5432.1');
    expect(renderValue({ foo: ['bar'] }, 'powershell')).toBe('@{"foo" = @("bar")}');
    expect(renderValue({ a: 1, b: 2 }, 'powershell')).toBe('@{"a" = 1\n "b" = 2}');
    expect(codifyParameters({ foo: 'bar', baz: ['buz'] }, 'powershell')).toBe(
      '# Parameters\n$foo = "bar"\n$baz = @("buz")\n',
    );
    expect(renderValue([[1, 2]], 'powershell')).toBe('@(,@(1, 2))');
  });

  it('PowerShell strings escape $, backticks and double quotes, so nothing interpolates', () => {
    expect(renderValue('$(Remove-Item x) ${env:HOME} `n "q" \u201cq\u201d \u201e', 'powershell')).toBe(
      '"`$(Remove-Item x) `${env:HOME} ``n `"q`" `\u201cq`\u201d `\u201e"',
    );
    expect(renderValue("it's \u2018x\u2019 \\n", 'powershell')).toBe('"it\'s \u2018x\u2019 \\n"');
  });

  it('PowerShell strings keep control characters, line breaks and lone surrogates as escapes on one line', () => {
    expect(renderValue('a\r\nb\tc\u0000d\u0007\b\u001b\f\v', 'powershell')).toBe('"a`r`nb`tc`0d`a`b`e`f`v"');
    expect(renderValue('\u0085\u2028\u2029\u202e\u0001\u007f\ud800x\udfff', 'powershell')).toBe(
      '"`u{85}`u{2028}`u{2029}`u{202E}`u{1}`u{7F}`u{D800}x`u{DFFF}"',
    );
    expect(renderValue('\n#!csharp\n#r "nuget: Evil"', 'powershell')).toBe(
      '"`n#!csharp`n#r `"nuget: Evil`""',
    );
    expect(renderValue('\u00e9\u{1f600}\u{e0041}', 'powershell')).toBe('"\u00e9\u{1f600}`u{E0041}"');
  });

  it("property: a PowerShell string reads back as the same value under PowerShell's tokenizer rules", () => {
    fc.assert(
      fc.property(hostileString, (value) => {
        expect(readPowerShellString(renderValue(value, 'powershell'))).toBe(value);
      }),
      { numRuns: 500, seed },
    );
  });

  it('rejects values that are not JSON, naming where they are', () => {
    for (const bad of [
      Number.NaN,
      Infinity,
      -Infinity,
      undefined,
      () => 1,
      Symbol('s'),
      new Date(0),
      new Map(),
    ]) {
      expect(() => renderValue(bad, 'python')).toThrow(InvalidRequestError);
    }
    expect(() => renderValue({ a: [1, Number.NaN] }, 'csharp')).toThrow(/value\.a\[1\] is NaN/);
    // eslint-disable-next-line no-sparse-arrays -- a hole is not a JSON value
    expect(() => renderValue([1, , 3], 'python')).toThrow(/value\[1\] is undefined/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => renderValue(cyclic, 'fsharp')).toThrow(/cycle/);
    let deep: unknown = 1;
    for (let i = 0; i < 200; i++) deep = [deep];
    expect(() => renderValue(deep, 'python')).toThrow(/nested more than/);
  });
});

/**
 * Reads a PowerShell double-quoted string literal as PowerShell 7's tokenizer does
 * (Tokenizer.ScanStringExpandable, Backtick and ScanUnicodeEscape): any of the four double-quote
 * characters ends it unless doubled, a backtick escapes the next character, and `$` would
 * interpolate, so it must never appear unescaped.
 */
function readPowerShellString(literal: string): string {
  const isQuote = (c: string | undefined) => c !== undefined && '"\u201c\u201d\u201e'.includes(c);
  if (!isQuote(literal[0])) throw new Error(`not a double-quoted string: ${literal}`);
  const escapes: Record<string, string> = {
    '0': '\0',
    a: '\u0007',
    b: '\b',
    e: '\u001b',
    f: '\f',
    n: '\n',
    r: '\r',
    t: '\t',
    v: '\v',
  };
  let out = '';
  let i = 1;
  for (;;) {
    const c = literal[i];
    if (c === undefined) throw new Error(`unterminated: ${literal}`);
    if (isQuote(c)) {
      if (isQuote(literal[i + 1])) {
        out += literal[i + 1];
        i += 2;
        continue;
      }
      if (i !== literal.length - 1) throw new Error(`ends early at ${i}: ${literal}`);
      return out;
    }
    if (c === '$') throw new Error(`unescaped $ at ${i}: ${literal}`);
    if (c === '`') {
      const e = literal[i + 1] ?? '';
      if (e === 'u') {
        const match = /^\{([0-9A-Fa-f]{1,6})\}/.exec(literal.slice(i + 2));
        if (!match?.[1]) throw new Error(`bad \`u escape at ${i}: ${literal}`);
        const code = Number.parseInt(match[1], 16);
        if (code > 0x10ffff) throw new Error(`\`u beyond U+10FFFF: ${literal}`);
        out += code <= 0xffff ? String.fromCharCode(code) : String.fromCodePoint(code);
        i += 2 + match[0].length;
        continue;
      }
      out += escapes[e] ?? e;
      i += 2;
      continue;
    }
    out += c;
    i++;
  }
}

function code(source: string, tags?: string[]): Notebook['cells'][number] {
  return { cell_type: 'code', source, metadata: tags ? { tags } : {}, execution_count: null, outputs: [] };
}

function markdown(source: string): Notebook['cells'][number] {
  return { cell_type: 'markdown', source, metadata: {} };
}

function notebook(cells: Notebook['cells'], minor = 5): Notebook {
  return parseNotebook({
    nbformat: 4,
    nbformat_minor: minor,
    metadata: { kernelspec: { name: 'python3', language: 'python' } },
    cells: cells.map((cell, i) => (minor >= 5 ? { id: `c${i}`, ...cell } : cell)),
  });
}

describe('injectParameters', () => {
  it('inserts a tagged cell right after the parameters cell, leaving the input untouched', () => {
    const nb = notebook([
      markdown('# Title'),
      code('import os'),
      code('alpha = 1', ['parameters']),
      code('print(alpha)'),
    ]);
    const before = structuredClone(nb);
    const out = injectParameters(nb, { alpha: 2, name: 'x' }, 'python');
    expect(nb).toEqual(before);
    expect(out.cells.map((c) => c.source)).toEqual([
      '# Title',
      'import os',
      'alpha = 1',
      '# Parameters\nalpha = 2\nname = "x"\n',
      'print(alpha)',
    ]);
    const injected = out.cells[3];
    expect(injected).toMatchObject({
      cell_type: 'code',
      execution_count: null,
      outputs: [],
      metadata: { tags: ['injected-parameters'] },
      id: 'injected-parameters',
    });
    expect(out.metadata.papermill).toEqual({ parameters: { alpha: 2, name: 'x' } });
    // The result is still a valid notebook.
    expect(parseNotebook(JSON.parse(JSON.stringify(out)))).toEqual(out);
  });

  it('inserts at the top when there is no parameters cell', () => {
    const nb = notebook([code('print(1)'), code('print(2)')]);
    const out = injectParameters(nb, { n: 3 }, 'python');
    expect(out.cells.map((c) => c.source)).toEqual(['# Parameters\nn = 3\n', 'print(1)', 'print(2)']);
  });

  it('replaces an older injected cell instead of adding a second one', () => {
    const nb = notebook([
      code('a = 1', ['parameters']),
      { ...code('# Parameters\na = 5\n', ['injected-parameters']), execution_count: 2 },
      code('print(a)'),
    ]);
    const out = injectParameters(nb, { a: 7 }, 'python');
    expect(out.cells.map((c) => c.source)).toEqual(['a = 1', '# Parameters\na = 7\n', 'print(a)']);
    expect(out.cells.filter((c) => c.metadata.tags?.includes('injected-parameters'))).toHaveLength(1);
    // The old cell's id is free again, so ids stay unique.
    expect(new Set(out.cells.map((c) => c.id)).size).toBe(3);
  });

  it('returns an unchanged copy when there are no parameters', () => {
    const nb = notebook([code('a = 1', ['parameters'])]);
    const out = injectParameters(nb, {}, 'python');
    expect(out).toEqual(nb);
    expect(out).not.toBe(nb);
  });

  it('gives no cell id before nbformat 4.5', () => {
    const out = injectParameters(notebook([code('a = 1', ['parameters'])], 4), { a: 2 }, 'python');
    expect(out.cells[1]?.id).toBeUndefined();
  });

  it('writes the header and assignments of each language, and tags .NET cells with their sub-kernel', () => {
    const nb = notebook([code('x', ['parameters'])]);
    const cases: Array<[KernelLanguage, string, string]> = [
      ['csharp', '.net-csharp', '// Parameters\nvar n = 3;\n'],
      ['fsharp', '.net-fsharp', '(* Parameters *)\nlet n = 3\n'],
      ['powershell', '.net-pwsh', '# Parameters\n$n = 3\n'],
    ];
    for (const [language, kernel, source] of cases) {
      const cell = injectParameters(nb, { n: 3 }, language, kernel).cells[1];
      expect(cell?.source).toBe(source);
      expect(cell?.metadata.dotnet_interactive).toEqual({
        language: language === 'powershell' ? 'pwsh' : language,
      });
    }
  });

  it('rejects names that are not identifiers or are reserved, and non-JSON values, naming the parameter', () => {
    const nb = notebook([code('x = 1', ['parameters'])]);
    expect(() => injectParameters(nb, { 'x; import os': 1 }, 'python')).toThrow(/not allowed/);
    expect(() => injectParameters(nb, { '1x': 1 }, 'python')).toThrow(InvalidRequestError);
    expect(() => injectParameters(nb, { class: 1 }, 'python')).toThrow(/reserved word in python/);
    expect(() => injectParameters(nb, { string: 1 }, 'csharp')).toThrow(/reserved/);
    expect(() => injectParameters(nb, { let: 1 }, 'fsharp')).toThrow(/reserved/);
    expect(() => injectParameters(nb, { True: 1 }, 'powershell')).toThrow(/reserved/);
    expect(() => injectParameters(nb, { rate: Number.NaN }, 'python')).toThrow(
      /parameter "rate": rate is NaN/,
    );
  });
});

describe('injected cells: no value starts a line', () => {
  // Every character some parser takes as a line break (JavaScript, Python's str.splitlines, .NET).
  // eslint-disable-next-line no-control-regex -- these control characters are what is looked for
  const LINE_BREAK = /\r\n|[\n\r\u000b\u000c\u001c\u001d\u001e\u0085\u2028\u2029]/;
  // A .NET Interactive magic command or directive, honoured at the start of any line of a cell.
  const DIRECTIVE = /^[\s\p{Cf}]*#[!ri]/iu;
  const HEADERS: Record<KernelLanguage, string> = {
    python: '# Parameters',
    csharp: '// Parameters',
    fsharp: '(* Parameters *)',
    powershell: '# Parameters',
  };
  const KERNELS: Record<KernelLanguage, string> = {
    python: 'python3',
    csharp: '.net-csharp',
    fsharp: '.net-fsharp',
    powershell: '.net-pwsh',
  };
  const piece = fc.oneof(
    fc.constantFrom('#!csharp', '#!pwsh', '#!fsharp', '#!set --name x --value 1', '#r "nuget: Evil, 1.0"'),
    fc.constantFrom('#i "nuget: https://evil/"', '#R "x.dll"', '#!', '#r', '#i', '  #!csharp', '\t#r'),
    fc.constantFrom('\n', '\r', '\r\n', '\u000b', '\u000c', '\u001c', '\u0085', '\u2028', '\u2029'),
    fc.constantFrom('"', "'", '`', '$', '\\', '\u201c', '\u2018', '@', '{', '}', ';', '\ufeff', '\u202e'),
    anyChar,
  );
  const text = fc.string({ unit: piece, maxLength: 12 });
  const value = fc.oneof(
    fc.jsonValue({ stringUnit: piece, maxDepth: 3 }),
    text,
    fc.array(text, { maxLength: 3 }),
    fc.dictionary(text, fc.oneof(text, fc.array(text, { maxLength: 2 })), { maxKeys: 3 }),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map((n) => Number(n)),
  );
  const names = fc.stringMatching(/^p_[a-z0-9_]{0,6}$/);

  it.each(KERNEL_LANGUAGES)('%s', (language) => {
    const nb = notebook([code('x = 1', ['parameters'])]);
    fc.assert(
      fc.property(fc.dictionary(names, value, { minKeys: 1, maxKeys: 4 }), (params) => {
        const source = cellSource(
          injectParameters(nb, params, language, KERNELS[language]).cells[1] ?? code(''),
        );
        const lines = source.split(LINE_BREAK);
        // The only fixed line the renderer writes is the header comment; none is a directive.
        expect(lines[0]).toBe(HEADERS[language]);
        for (const line of lines) expect(line, source).not.toMatch(DIRECTIVE);
        // No raw control, line-separator, format character or lone surrogate, apart from the
        // newlines between statements (and PowerShell hashtable entries).
        expect(source.replace(/\n/g, ''), source).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u);
      }),
      { numRuns: 300, seed },
    );
  });
});

describe('inspectParameters (Python), papermill cases', () => {
  const cases: Array<[string, Array<[string, string | null, string, string]>]> = [
    ['a = 2', [['a', 'int', '2', '']]],
    ['a: int = 2', [['a', 'int', '2', '']]],
    ['a = 2 # type:int', [['a', 'int', '2', '']]],
    ['a = False # Nice variable a', [['a', 'bool', 'False', 'Nice variable a']]],
    ['a: float = 2.258 # type: int Nice variable a', [['a', 'float', '2.258', 'Nice variable a']]],
    [
      "a = 'this is a string' # type: int Nice variable a",
      [['a', 'int', "'this is a string'", 'Nice variable a']],
    ],
    [
      "a: List[str] = ['this', 'is', 'a', 'string', 'list'] # Nice variable a",
      [['a', 'List[str]', "['this', 'is', 'a', 'string', 'list']", 'Nice variable a']],
    ],
    [
      "a: List[str] = [\n    'this', # First\n    'is',\n    'a',\n    'string',\n    'list' # Last\n] # Nice variable a",
      [['a', 'List[str]', "['this','is','a','string','list']", 'Nice variable a']],
    ],
    [
      "a: List[str] = [\n    'this', # First\n    'is',\n\n    'a',\n    'list' # Last\n] # Nice variable a\n\nb: float = -2.3432 # My b variable\n",
      [
        ['a', 'List[str]', "['this','is','a','list']", 'Nice variable a'],
        ['b', 'float', '-2.3432', 'My b variable'],
      ],
    ],
  ];
  for (const [source, expected] of cases) {
    it(JSON.stringify(source), () => {
      const params = inspectParametersSource(source, 'python');
      expect(params.map((p) => [p.name, p.inferred_type, p.default, p.help])).toEqual(expected);
    });
  }
});

describe('inspectParameters (Python)', () => {
  const source = [
    'import os',
    '%matplotlib inline',
    '!pip install thing',
    '# just a comment',
    'epochs = 10  # training epochs',
    'rate = 1e-3',
    'name = "a#b=c"  # the # is in the string',
    "opts = {'k': [1, 2]}",
    's = {1, 2}',
    't = (1,)',
    'nothing = None',
    'data = b"raw"',
    'path = os.getenv("P")  # from the environment',
    'x = y = 3',
    'def helper(arg=1):',
    '    inner = 2',
    'if True:',
    '    flagged = True',
    'first = 1; second = "two"  # second only',
    'w: "int" = 4',
    'long_text = ("a"',
    '             "b")',
  ].join('\n');

  it('reads names, types, defaults and comments', () => {
    const params = inspectParametersSource(source, 'python');
    expect(params.map((p) => [p.name, p.inferred_type, p.default, p.help])).toEqual([
      ['epochs', 'int', '10', 'training epochs'],
      ['rate', 'float', '1e-3', ''],
      ['name', 'str', '"a#b=c"', 'the # is in the string'],
      ['opts', 'dict', "{'k': [1, 2]}", ''],
      ['s', 'set', '{1, 2}', ''],
      ['t', 'tuple', '(1,)', ''],
      ['nothing', 'None', 'None', ''],
      ['data', 'bytes', 'b"raw"', ''],
      ['path', null, 'os.getenv("P")', 'from the environment'],
      ['flagged', 'bool', 'True', ''],
      ['first', 'int', '1', ''],
      ['second', 'str', '"two"', 'second only'],
      ['w', 'int', '4', ''],
      ['long_text', 'str', '("a""b")', ''],
    ]);
  });

  it('reads the first cell tagged parameters of a notebook, or nothing', () => {
    const nb = notebook([
      code('ignored = 1'),
      code('alpha = 0.5  # step', ['parameters']),
      code('beta = 1', ['parameters']),
    ]);
    expect(inspectParameters(nb, 'python')).toEqual([
      { name: 'alpha', inferred_type: 'float', default: '0.5', help: 'step' },
    ]);
    expect(inspectParameters(notebook([code('a = 1')]), 'python')).toEqual([]);
  });

  it('reads nothing from a cell magic', () => {
    expect(inspectParametersSource('%%bash\nx=1', 'python')).toEqual([]);
  });
});

describe('inspectParameters (.NET and PowerShell)', () => {
  it('C#: var and typed declarations, trailing // comments', () => {
    const source = [
      '#r "nuget: Some.Package, 1.0.0"',
      'var epochs = 10; // training epochs',
      'double rate = 0.01;',
      'string name = "a;b // not a comment"; // the name',
      'var big = 5L;',
      'var items = new List<int> { 1, 2 };',
      'int[] sizes = new[] { 1, 2 };',
      '/* block */ var enabled = true;',
      'if (epochs > 0) { epochs = 2; }',
      'Console.WriteLine(epochs);',
    ].join('\n');
    const params = inspectParametersSource(source, 'csharp');
    expect(params.map((p) => [p.name, p.inferred_type, p.default, p.help])).toEqual([
      ['epochs', 'int', '10', 'training epochs'],
      ['rate', 'double', '0.01', ''],
      ['name', 'string', '"a;b // not a comment"', 'the name'],
      ['big', 'long', '5L', ''],
      ['items', 'List<int>', 'new List<int> { 1, 2 }', ''],
      ['sizes', 'int[]', 'new[] { 1, 2 }', ''],
      ['enabled', 'bool', 'true', ''],
    ]);
  });

  it('F#: let bindings with // or (* *) comments; functions are not parameters', () => {
    const source = [
      'let epochs = 10 // training epochs',
      'let mutable rate: float = 0.01',
      'let name = "a // b" (* the name *)',
      'let sizes = [',
      '    1',
      '    2',
      ']',
      'let add x y = x + y',
      'let big = 5L',
    ].join('\n');
    const params = inspectParametersSource(source, 'fsharp');
    expect(params.map((p) => [p.name, p.inferred_type, p.default, p.help])).toEqual([
      ['epochs', 'int', '10', 'training epochs'],
      ['rate', 'float', '0.01', ''],
      ['name', 'string', '"a // b"', 'the name'],
      ['sizes', 'list', '[ 1 2 ]', ''],
      ['big', 'int64', '5L', ''],
    ]);
  });

  it('PowerShell: $name = value # help, [type]$name = value', () => {
    const source = [
      '$epochs = 10 # training epochs',
      '[double]$rate = 0.01',
      '[string[]]$names = @("a", "b") # the names',
      '$text = "x # y" # help',
      '$opts = @{ a = 1 }',
      '<# block comment #>',
      '$enabled = $true',
      'Write-Host $epochs',
    ].join('\n');
    const params = inspectParametersSource(source, 'powershell');
    expect(params.map((p) => [p.name, p.inferred_type, p.default, p.help])).toEqual([
      ['epochs', 'int', '10', 'training epochs'],
      ['rate', 'double', '0.01', ''],
      ['names', 'string[]', '@("a", "b")', 'the names'],
      ['text', 'string', '"x # y"', 'help'],
      ['opts', 'hashtable', '@{ a = 1 }', ''],
      ['enabled', 'bool', '$true', ''],
    ]);
  });
});

describe('languageForKernel and unknownParameters', () => {
  it('maps kernel names, then declared languages', () => {
    expect(languageForKernel('python3')).toBe('python');
    expect(languageForKernel('python')).toBe('python');
    expect(languageForKernel('python3.12')).toBe('python');
    expect(languageForKernel('.net-csharp')).toBe('csharp');
    expect(languageForKernel('.net-fsharp')).toBe('fsharp');
    expect(languageForKernel('.net-pwsh')).toBe('powershell');
    expect(languageForKernel('conda-env-ml-py', 'python')).toBe('python');
    expect(languageForKernel('custom', 'C#')).toBe('csharp');
    expect(languageForKernel('custom', 'F#')).toBe('fsharp');
    expect(languageForKernel('custom', 'PowerShell')).toBe('powershell');
    expect(languageForKernel('ir', 'R')).toBeNull();
    expect(languageForKernel('custom')).toBeNull();
    expect(languageForKernel('custom', 'constructor')).toBeNull();
  });

  it('lists the names the parameters cell does not declare', () => {
    const known = inspectParametersSource('a = 1\nb = 2', 'python');
    expect(unknownParameters(known, { a: 1, c: 3, d: 4 })).toEqual(['c', 'd']);
    expect(unknownParameters(known, { a: 1, b: 2 })).toEqual([]);
  });
});
