/**
 * The Lambda bundles' stand-in for SDK v2's `_shims` module (lambda/mcp/sdk-shims.ts) and the
 * aliases that put it there (lambdaAliases): same exports as the SDK's Node shim, a validator that
 * validates, and an Ajv alias only between copies of one version.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as nodeShim from '@modelcontextprotocol/server/_shims';
import * as houseShim from '../../lambda/mcp/sdk-shims.ts';
import { lambdaAliases } from '../../lambda/bundle/esbuild-config.ts';

describe('the SDK v2 shim of the Lambda bundles', () => {
  it("exports what the SDK's Node shim exports (an SDK update that adds one fails here)", () => {
    expect(Object.keys(houseShim).sort()).toEqual(Object.keys(nodeShim).sort());
    expect(houseShim.process).toBe(process);
  });

  it('validates JSON Schema for real, with a message for what failed', () => {
    const validate = new houseShim.DefaultJsonSchemaValidator().getValidator<{ n: number }>({
      type: 'object',
      properties: { n: { type: 'integer', minimum: 1 } },
      required: ['n'],
    });
    expect(validate({ n: 3 })).toMatchObject({ valid: true, data: { n: 3 } });
    const refused = validate({ n: 0 });
    expect(refused.valid).toBe(false);
    expect(refused.errorMessage).toMatch(/minimum|1/);
    expect(validate({}).valid).toBe(false);
  });

  it('aliases the module and one Ajv, of the same version as the copy it replaces', () => {
    const aliases = lambdaAliases();
    expect(aliases['@modelcontextprotocol/server/_shims']).toMatch(/lambda[/\\]mcp[/\\]sdk-shims\.ts$/);
    expect(Object.keys(aliases).sort()).toEqual(['@modelcontextprotocol/server/_shims', 'ajv']);
    const version = (manifest: string) =>
      (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    const require = createRequire(import.meta.url);
    const formatsAjv = createRequire(require.resolve('ajv-formats')).resolve('ajv/package.json');
    expect(version(join(aliases.ajv ?? '', 'package.json'))).toBe(version(formatsAjv));
  });
});
