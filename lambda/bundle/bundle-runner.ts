/**
 * `node --import tsx lambda/bundle/bundle-runner.ts <outfile>`: bundles the runner for the image
 * (container/Dockerfile) with the shared configuration, a linked source map beside it.
 */
import { build } from 'esbuild';
import { runnerBuildOptions } from './esbuild-config.ts';

const outfile = process.argv[2];
if (!outfile) {
  console.error('usage: bundle-runner.ts <outfile>');
  process.exit(2);
}
await build(runnerBuildOptions(outfile, 'linked'));
