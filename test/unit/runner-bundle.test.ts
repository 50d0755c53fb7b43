/**
 * The runner's bundle is loaded by every cold job before its kernel starts (bench row (a)), so it
 * carries only what the runner runs: no schema library and none of the API's or MCP's packages.
 * zod alone added about 0.7 MB to it (50 ms of CPU on each start) when a core module the runner
 * reads imported it.
 */
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { runnerBuildOptions } from '../../lambda/bundle/esbuild-config.ts';

describe('runner bundle', () => {
  it('takes in no package the runner does not run', async () => {
    const { metafile } = await build({
      ...runnerBuildOptions('runner.mjs', false),
      write: false,
      metafile: true,
    });
    const inputs = Object.keys(metafile.inputs);
    expect(inputs.some((path) => path.startsWith('container/runner/'))).toBe(true);
    const unwanted = inputs.filter((path) =>
      /node_modules\/(zod|jose|@modelcontextprotocol|yauzl|tar-stream|oidc-provider)\//.test(path),
    );
    expect(unwanted).toEqual([]);
  });
});
