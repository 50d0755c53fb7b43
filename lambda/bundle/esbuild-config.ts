/**
 * The one esbuild configuration of every bundle this project makes: the Lambdas
 * (lib/house-function.ts), the runner bundled by the local server at start-up
 * (lambda/local/runner-bundle.ts) and the runner in the image (container/Dockerfile runs
 * bundle-runner.ts). Target, format, banner and package entry points are written here only.
 */
import type { BuildOptions } from 'esbuild';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
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
 * Import paths the Lambda bundles resolve elsewhere (esbuild `alias`; lib/house-function.ts passes
 * them as `--alias`, bench/aws.ts as the option), to absolute paths:
 * - `@modelcontextprotocol/server/_shims` -> lambda/mcp/sdk-shims.ts: SDK v2's JSON Schema
 *   validator is the `@cfworker/json-schema` one the SDK uses off Node, not its inlined Ajv.
 * - `ajv` -> the one copy SDK v1 uses: npm installs Ajv twice (under @modelcontextprotocol/sdk and
 *   under ajv-formats; eslint's Ajv 6 holds the top level) and esbuild would bundle both. Only when
 *   both are the same version, so each gets exactly the code it was installed with.
 * Together they take about 250 KiB out of the mcp bundle (bench/README.md, rows (h)).
 */
export function lambdaAliases(): Record<string, string> {
  const aliases: Record<string, string> = {
    '@modelcontextprotocol/server/_shims': fileURLToPath(new URL('../mcp/sdk-shims.ts', import.meta.url)),
  };
  const ajvOf = (from: string) => {
    const manifest = createRequire(createRequire(import.meta.url).resolve(from)).resolve('ajv/package.json');
    return {
      dir: dirname(manifest),
      version: (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version,
    };
  };
  const sdk = ajvOf('@modelcontextprotocol/sdk/server/index.js');
  const formats = ajvOf('ajv-formats');
  if (sdk.version === formats.version) aliases.ajv = sdk.dir;
  return aliases;
}

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
