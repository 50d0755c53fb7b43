/**
 * Local mode starts one runner process per job. Loading the TypeScript runner through tsx costs
 * about 0.35 s per job; one esbuild bundle made at server start-up brings that to about 0.13 s.
 */
import { build } from 'esbuild';
import { join } from 'node:path';
import { runnerBuildOptions } from '../bundle/esbuild-config.ts';

/** Bundles the runner into `folder`/runner.mjs (its source map beside it) and returns its path. */
export async function bundleRunner(folder: string): Promise<string> {
  const outfile = join(folder, 'runner.mjs');
  await build(runnerBuildOptions(outfile, 'linked'));
  return outfile;
}
