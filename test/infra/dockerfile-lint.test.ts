/**
 * The runner image's Dockerfile, linted where no Docker engine runs: dockerfile-utils (the linter
 * of the Dockerfile language server) checks instructions, arguments, flags and directives. It cannot
 * build the image; `npm run image:test` does that where Docker is (docs/deploy.md).
 */
import { readFileSync } from 'node:fs';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';

const diagnostics = (text: string) => validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`);

describe('container/Dockerfile', () => {
  it('has no lint problems', () => {
    const text = readFileSync(new URL('../../container/Dockerfile', import.meta.url), 'utf8');
    expect(diagnostics(text)).toEqual([]);
  });

  it('the linter finds the problems it is here for (so the check above can fail)', () => {
    const broken = 'FROM node:22 AS a\nRUNN echo hi\nEXPOSE port\nCOPY --chmod=999 a b\nUSER\n';
    expect(diagnostics(broken).length).toBeGreaterThanOrEqual(3);
  });
});
