/**
 * One esbuild configuration (lambda/bundle/esbuild-config.ts): its target is the oldest Node the
 * project supports, no other build names its own target or banner, and the runner it describes
 * bundles into a module that starts with the require shim.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ESM_REQUIRE_BANNER, NODE_TARGET } from '../../lambda/bundle/esbuild-config.ts';
import { bundleRunner } from '../../lambda/local/runner-bundle.ts';

const root = new URL('../../', import.meta.url);

describe('the esbuild configuration', () => {
  it('targets the oldest Node package.json engines allows (the local runner runs on it)', async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as {
      engines: { node: string };
    };
    expect(pkg.engines.node).toBe(`>=${NODE_TARGET.replace(/^node/, '')}`);
  });

  it('is the only place that sets a bundle target or the require banner', () => {
    // git grep: tracked files only; this test file and the configuration itself are the exceptions.
    const hits = execFileSync(
      'git',
      [
        'grep',
        '--untracked',
        '-l',
        '-E',
        'target[:=] ?[\'"]?node[0-9]|--target=node|createRequire as __',
        '--',
        '.',
      ],
      { cwd: root, encoding: 'utf8' },
    )
      .split('\n')
      .filter(Boolean);
    expect(hits.sort()).toEqual([
      'lambda/bundle/esbuild-config.ts',
      'test/infra/cdk-synth.test.ts',
      'test/unit/bundle-config.test.ts',
    ]);
  });

  it("imports zod as a namespace: esbuild cannot shake zod's named `z` export, which adds every locale", () => {
    // `import { z } from 'zod'` is zod's `export { z }` of a namespace object: esbuild keeps all of
    // it (about 370 KB minified, mostly locales) in every bundle that imports it; `import * as z`
    // keeps only what is used. Type-only imports are erased and harmless; tests are not bundled.
    const grep = spawnSync(
      'git',
      ['grep', '--untracked', '-n', '-E', "^import \\{ z \\} from 'zod", '--', 'lambda', 'container'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    expect(grep.status, grep.stderr).toBe(1); // git grep: 1 = no match
    expect(grep.stdout).toBe('');
  });

  it('bundles the runner as an ES module that makes its own require()', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'bundle-config-'));
    try {
      const code = await readFile(await bundleRunner(folder), 'utf8');
      expect(code.startsWith(ESM_REQUIRE_BANNER)).toBe(true);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
