/**
 * Golden outputs of the parameters module: exact rendered literals, injected cells, error messages
 * and inspection results for a fixed corpus in every language, recorded in
 * test/fixtures/parameters-golden.txt. The property tests in parameters.test.ts check that output is
 * safe and reads back right; this file pins it to the byte, so a refactor that changes what any
 * language writes or reads fails here. Re-record on purpose with `npx vitest run -u <this file>`.
 */
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import { parseNotebook, type Notebook } from '../../lambda/notebook/notebook.ts';
import {
  codifyParameters,
  injectParameters,
  inspectParametersSource,
  KERNEL_LANGUAGES,
  languageForKernel,
  renderValue,
} from '../../lambda/notebook/parameters.ts';

const STRINGS = [
  '',
  'plain',
  `"); __import__('os').system('x') #`,
  `'''`,
  `""" + x + """`,
  '\\',
  'a\\',
  '\\x41\\u0041\\N{BULLET}',
  '\n\r\t\r\n',
  '\u0000\u0007\b\u001b\f\v\u007f',
  '\u0085\u00a0\u00e9\u00ff\u0100',
  '\u2028\u2029\u200e\u202e\ufeff',
  '\ud800',
  '\udc00\ud800',
  '\u{1f600}',
  '{x} ${x} $(whoami) `n',
  "'; exit # \u2018\u2019\u201a\u201b",
  '\u201c\u201d\u201e"',
  '#!csharp',
  '#r "nuget: x"',
];

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31),
  -(2 ** 31) - 1,
  2 ** 53 + 2,
  9007199254740993n,
  2n ** 63n - 1n,
  2n ** 63n,
  -(2n ** 63n),
  -(2n ** 63n) - 1n,
  2n ** 80n,
  1e20,
  1e21,
  -1e300,
  0.1,
  1e-7,
  1.5,
  -2.5,
  Number.MIN_VALUE,
  Number.MAX_VALUE,
];

const STRUCTURES: unknown[] = [
  null,
  true,
  false,
  [],
  [1],
  [1, 2],
  [1, 2.5, 2n ** 70n],
  [[1, 2]],
  [[]],
  [[1], [2]],
  ['a', 1],
  ['a', 'b'],
  [true, false],
  [null],
  [null, 1],
  [{}],
  [{ a: 1 }, { b: [2] }],
  {},
  { a: 1 },
  { a: 1, b: 'two', c: [3.5, null], d: { e: false } },
  { 'weird key': 'v', é: [1], '': null, 'a"b': '$x' },
  { nested: { deeper: { deepest: [[{ x: -0 }]] } } },
];

/** Values that are not JSON, each with how it is refused. */
function badValues(): Array<[string, unknown]> {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const cycleList: unknown[] = [1];
  cycleList.push(cycleList);
  let deep: unknown = 1;
  for (let i = 0; i < 101; i++) deep = [deep];
  const sparse: unknown[] = [1];
  sparse[2] = 3;
  return [
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', [Number.NEGATIVE_INFINITY]],
    ['undefined', undefined],
    ['function', { f: () => 1 }],
    ['symbol', Symbol('s')],
    ['Date', new Date(0)],
    ['Map', { 'a b': new Map() }],
    ['cycle', cycle],
    ['list cycle', cycleList],
    ['101 levels', deep],
    ['sparse array', sparse],
  ];
}

const NAMES = [
  'x',
  '_private',
  'CamelCase9',
  '1x',
  'x-y',
  'x; import os',
  'é',
  '',
  'class',
  'None',
  'string',
  'var',
  'let',
  'mod',
  'True',
  'PSItem',
  'args',
];

/** A small seeded generator, so the random sources are the same on every run and version. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [
  'x',
  'y',
  'name',
  ' = ',
  '=',
  '==',
  ' ',
  '    ',
  '\n',
  '\n',
  '\n',
  '\r\n',
  ';',
  ',',
  ':',
  '1',
  '2.5',
  '-3',
  '1e-3',
  '0x1F',
  '5L',
  '7uy',
  '2.0f',
  '10m',
  '"s#t"',
  '"a;b"',
  "'c'",
  "'''",
  '"""',
  '@"q""q"',
  '$"{x}"',
  '`',
  '`n',
  '\\',
  '#',
  '# help',
  '// help',
  '/*',
  '*/',
  '(*',
  '*)',
  '(*)',
  '<#',
  '#>',
  '{',
  '}',
  '[',
  ']',
  '(',
  ')',
  '[|',
  '|]',
  'let ',
  'let mutable ',
  'var ',
  'int ',
  'string ',
  'const ',
  'new[] { 1 }',
  'new List<int> { 1 }',
  '$y',
  '$true',
  '[int]',
  '[string[]]',
  '@(1, 2)',
  '@{ a = 1 }',
  'def f():',
  'class C:',
  'if x:',
  'True',
  'None',
  'Some 1',
  'b"raw"',
  'f"{x}"',
  ': int',
  '# type: int',
  '%matplotlib',
  '!pip',
  '%%bash',
  '#r "nuget: x"',
  '#!csharp',
  'return ',
  '|> Map.ofList',
  '\u2018q\u2019',
  '\u201cq\u201d',
  'ñ',
  '@"',
  '$@"',
  "'a",
  "x'",
];

const PREFIXES = [
  '',
  '',
  '    ',
  'let ',
  'let mutable ',
  'var ',
  'int ',
  'string[] ',
  'const double ',
  '$',
  '[int]$',
];
const SUFFIXES = ['', '', '', ';', ': int', ' # type: int'];
const COMMENTS = ['', '', ' # help', ' // help', ' (* help *)', ' /* c */', ' <# c #>', ' #'];

/** Sources of declaration-like lines (every language's forms, mixed) with random values and noise. */
function randomSources(seed: number, count: number): string[] {
  const next = mulberry32(seed);
  const pick = (list: readonly string[]): string => list[Math.floor(next() * list.length)] ?? '';
  return Array.from({ length: count }, () => {
    const lines: string[] = [];
    const length = 1 + Math.floor(next() * 5);
    for (let i = 0; i < length; i++) {
      let value = '';
      for (let k = next() < 0.5 ? 1 : 2 + Math.floor(next() * 3); k > 0; k--) value += pick(TOKENS);
      const eq = next() < 0.8 ? ' = ' : pick(['=', '==', ' := ', ' ']);
      lines.push(
        `${pick(PREFIXES)}${pick(['x', 'y_1', 'Name'])}${pick(SUFFIXES)}${eq}${value}${pick(COMMENTS)}`,
      );
    }
    return lines.join(pick(['\n', '\n', '\r\n', '; ', '\n\n']));
  });
}

const SOURCES = [
  'a = 2\nb: int = 3 # type: float help\nc = "x" # type:str\n',
  "a: List[str] = [\n    'this', # First\n    'is'\n] # Nice\n\nb: float = -2.3432 # My b\n",
  'def f(x=1):\n    y = 2\nz = 3\n@dec\nclass C:\n    w = 4\nv = (1)\nu = ()\nt = {1}\ns = {}\n',
  'x = y = 1\nx == 1\nx: "int" = 4\nlong = ("a"\n  "b")\nr = rb"x"\nc = 1; d = 2 # d only\n',
  '%%bash\nx=1',
  'var epochs = 10; // training\ndouble rate = 0.01;\nstring s = @"a""b"; /* c */\nif (x) { y = 2; }\n',
  'int[] a = new[] { 1 };\nvar b = new Dictionary<string, int> { { "a", 1 } };\nreturn x = 1;\nvar c = 5UL;\n',
  'let a = 1 // one\nlet mutable b: float = 2.\nlet c = [|1;2|]\nlet d =\n    [ 1\n      2 ]\nlet f x = x\n',
  'let m = [ ("a", 1 :> IComparable) ] |> Map.ofList (* map *)\nlet o = Some 3\nlet p = 1I\nlet q = (*) 2 3\n',
  '$a = 10 # ten\n[double]$b = 0.5\n$c = "x `" # y"\n$d = @{ a = 1 }\n<# block\n#> $e = $false\n$f = 1kb\n',
  "$g = 'it''s' # quoted\n$h = @'\nhere\n'@\n$i = 1 `\n + 2\n[ordered]@{ a = 1 }\n",
];

function describeError(error: unknown): string {
  if (error instanceof InvalidRequestError) {
    return `InvalidRequestError: ${error.message} ${JSON.stringify(error.details)}`;
  }
  return `${(error as Error).name}: ${(error as Error).message}`;
}

function attempt(fn: () => string): string {
  try {
    return fn();
  } catch (error) {
    return `! ${describeError(error)}`;
  }
}

function show(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (Object.is(value, -0)) return '-0';
  if (typeof value === 'string') return JSON.stringify(value);
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value);
}

function notebook(cells: Notebook['cells'], minor = 5): Notebook {
  return parseNotebook({
    nbformat: 4,
    nbformat_minor: minor,
    metadata: { kernelspec: { name: 'python3', language: 'python' }, papermill: { input_path: 'in.ipynb' } },
    cells: cells.map((cell, i) => (minor >= 5 ? { id: `c${i}`, ...cell } : cell)),
  });
}

function code(source: string, tags?: string[], id?: string): Notebook['cells'][number] {
  return {
    cell_type: 'code',
    source,
    metadata: tags ? { tags } : {},
    execution_count: null,
    outputs: [],
    ...(id ? { id } : {}),
  };
}

function golden(): string {
  const out: string[] = [];
  const section = (title: string, body: string): void => {
    out.push(`=== ${title}`, body);
  };
  for (const language of KERNEL_LANGUAGES) {
    for (const value of [...STRINGS, ...NUMBERS, ...STRUCTURES]) {
      section(
        `render ${language} ${show(value)}`,
        attempt(() => renderValue(value, language)),
      );
    }
    for (const [label, value] of badValues()) {
      section(
        `render ${language} <${label}>`,
        attempt(() => renderValue(value, language)),
      );
      section(
        `codify ${language} <${label}>`,
        attempt(() => codifyParameters({ p: value }, language)),
      );
    }
    for (const name of NAMES) {
      section(
        `codify ${language} name ${JSON.stringify(name)}`,
        attempt(() => codifyParameters({ [name]: 1 }, language)),
      );
    }
    section(
      `codify ${language} several`,
      attempt(() => codifyParameters({ a: 1, b: 'two', c: [3.5, null], d: { e: false, f: [] } }, language)),
    );
  }

  const notebooks: Array<[string, Notebook]> = [
    ['parameters cell', notebook([code('import os'), code('a = 1', ['parameters']), code('print(a)')])],
    ['no parameters cell', notebook([code('print(1)'), code('print(2)')])],
    [
      'old injected cells and a taken id',
      notebook([
        code('# Parameters\na = 5\n', ['injected-parameters'], 'injected-parameters-2'),
        code('a = 1', ['parameters', 'other']),
        code('x', [], 'injected-parameters'),
        code('# Parameters\na = 6\n', ['injected-parameters']),
        code('b = 1', ['parameters']),
      ]),
    ],
    ['nbformat 4.4', notebook([code('a = 1', ['parameters'])], 4)],
  ];
  const kernels = ['python3', '.net-csharp', '.net-fsharp', '.net-pwsh', 'custom', undefined];
  for (const language of KERNEL_LANGUAGES) {
    for (const [label, nb] of notebooks) {
      for (const kernel of kernels) {
        section(
          `inject ${language} ${kernel ?? '(no kernel)'} into ${label}`,
          attempt(() => JSON.stringify(injectParameters(nb, { a: 2, s: 'x\ny' }, language, kernel), null, 1)),
        );
      }
    }
    section(
      `inject ${language} nothing`,
      attempt(() => JSON.stringify(injectParameters(notebooks[0]?.[1] as Notebook, {}, language))),
    );
  }

  const randoms = randomSources(20240611, 300);
  for (const language of KERNEL_LANGUAGES) {
    for (const source of [...SOURCES, ...randoms]) {
      section(
        `inspect ${language} ${JSON.stringify(source)}`,
        attempt(() =>
          inspectParametersSource(source, language)
            .map((p) => JSON.stringify([p.name, p.inferred_type, p.default, p.help]))
            .join('\n'),
        ),
      );
    }
  }

  const kernelNames: Array<[string, string | null | undefined]> = [
    ['python3', undefined],
    [' Python3.12 ', null],
    ['python3-venv', undefined],
    ['python-x.y', undefined],
    ['pythonic', undefined],
    ['pysparkkernel', undefined],
    ['.net-csharp', 'F#'],
    ['.NET-FSharp', undefined],
    ['.net-pwsh', undefined],
    ['.net-powershell', undefined],
    ['custom', ' C# '],
    ['custom', 'fsharp'],
    ['custom', 'pwsh'],
    ['custom', 'Python3'],
    ['custom', 'R'],
    ['custom', 'toString'],
    ['toString', undefined],
    ['', ''],
  ];
  for (const [name, declared] of kernelNames) {
    section(`language ${JSON.stringify(name)} ${show(declared)}`, String(languageForKernel(name, declared)));
  }
  return `${out.join('\n')}\n`;
}

describe('parameters golden outputs', () => {
  it('render, codify, inject, inspect and kernel languages are byte-for-byte as recorded', async () => {
    await expect(golden()).toMatchFileSnapshot('../fixtures/parameters-golden.txt');
  });
});
