/**
 * Folder layering: container/ (the runner and its image) builds on lambda/, never the reverse, so
 * the Lambdas and the local server never bundle runner code by accident. Every module specifier of
 * every file under lambda/ (static imports, re-exports, dynamic imports) must resolve outside
 * container/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.(ts|mts|js|mjs)$/.test(entry.name) ? [path] : [];
  });
}

/** Relative module specifiers: `from '…'`, `import '…'`, `import('…')`. */
function specifiers(code: string): string[] {
  const found = code.matchAll(/(?:\bfrom\s+|\bimport\s*\(?\s*)(['"])(\.{1,2}\/[^'"]+)\1/g);
  return [...found].map((match) => match[2] as string);
}

describe('layering', () => {
  it('finds the specifiers it looks for (so the check below can fail)', () => {
    expect(
      specifiers(
        "import { a } from '../../container/x.ts';\nexport * from \"./y.ts\";\nconst m = await import('../z.ts');\nimport './side.ts';",
      ),
    ).toEqual(['../../container/x.ts', './y.ts', '../z.ts', './side.ts']);
  });

  it('no file under lambda/ imports from container/', () => {
    const offending = sources(join(ROOT, 'lambda')).flatMap((file) =>
      specifiers(readFileSync(file, 'utf8'))
        .filter((specifier) => relative(ROOT, resolve(dirname(file), specifier)).startsWith('container/'))
        .map((specifier) => `${relative(ROOT, file)}: ${specifier}`),
    );
    expect(offending).toEqual([]);
  });
});
