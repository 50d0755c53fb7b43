/**
 * The runner's bundle is loaded by every cold job before its kernel starts (bench row (a)), so it
 * carries only what the runner runs: no schema library and none of the API's or MCP's packages.
 * zod alone added about 0.7 MB to it (50 ms of CPU on each start) when a core module the runner
 * reads imported it.
 */
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { RUNNER_NODE_FLAGS, runnerBuildOptions } from '../../lambda/bundle/esbuild-config.ts';

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

describe('how node runs the runner', () => {
  it('the image runs it with the same node flags as the local server', () => {
    const dockerfile = readFileSync(new URL('../../container/Dockerfile', import.meta.url), 'utf8');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(entrypoint && JSON.parse(entrypoint)).toEqual(['node', ...RUNNER_NODE_FLAGS, '/app/runner.mjs']);
    expect(RUNNER_NODE_FLAGS).not.toContain('--enable-source-maps');
  });
});
