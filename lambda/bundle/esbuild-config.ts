/**
 * The one esbuild configuration of every bundle this project makes: the Lambdas
 * (lib/house-function.ts), the runner bundled by the local server at start-up
 * (lambda/local/runner-bundle.ts) and the runner in the image (container/Dockerfile runs
 * bundle-runner.ts). Target, format, banner and package entry points are written here only.
 */
import type { BuildOptions } from 'esbuild';
import { fileURLToPath } from 'node:url';

/**
 * The oldest Node.js any bundle runs on. The Lambdas run on nodejs22.x and the image ships
 * Node 22, but the runner bundle also runs under whatever Node runs `notebook-jobs serve`, which
 * package.json `engines` allows from 20.19 (test/unit/bundle-config.test.ts holds them together).
 * A target names the oldest runtime the output must run on, so it is this one; every bundle
 * comes out byte for byte the same with node22 today, so the Lambdas lose nothing by it.
 */
export const NODE_TARGET = 'node20.19';

/** ES modules: what the handlers and the runner are written as (top-level await, import.meta). */
export const FORMAT = 'esm' as const;

/**
 * ESM bundles still contain CommonJS dependencies that call require(); an ES module has none, so
 * the bundle gets one made for it. The local alias avoids clashing with bundled identifiers.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __houseCreateRequire } from 'node:module'; const require = __houseCreateRequire(import.meta.url);";

/** Prefer packages' ES module builds (the AWS SDK ships them): better tree shaking. */
export const MAIN_FIELDS = ['module', 'main'];

/**
 * How node runs the runner bundle, locally and in the image (container/Dockerfile's ENTRYPOINT
 * repeats it; test/unit/runner-bundle.test.ts holds them together). Not `--enable-source-maps`:
 * it makes node read and keep the bundle's 3-6 MB source map at every start, which doubled the
 * runner's start-up CPU and its memory (65 MB -> 139 MB peak, farm-bench); the map stays beside
 * the bundle for NODE_OPTIONS=--enable-source-maps when a stack trace needs the TypeScript lines.
 * A small young generation (2 MB semi-spaces): a job that prints a lot allocates ~180 bytes a line,
 * nearly all garbage at once, and V8's default growth of the young generation under that rate was
 * the runner's remaining memory step (bench/README.md, "Runner, second pass": 1.10x -> 1.01-1.03x).
 */
export const RUNNER_NODE_FLAGS = ['--max-semi-space-size=2'];

/** The runner's entry point (container/runner/main.ts): a file to bundle, not a module imported here. */
export const RUNNER_ENTRY = fileURLToPath(new URL('../../container/runner/main.ts', import.meta.url));

/** The runner as one ES module file at `outfile`; `sourcemap` as esbuild takes it. */
export function runnerBuildOptions(outfile: string, sourcemap: BuildOptions['sourcemap']): BuildOptions {
  return {
    entryPoints: [RUNNER_ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    target: NODE_TARGET,
    format: FORMAT,
    mainFields: MAIN_FIELDS,
    banner: { js: ESM_REQUIRE_BANNER },
    sourcemap,
    legalComments: 'none',
    logLevel: 'warning',
  };
}
