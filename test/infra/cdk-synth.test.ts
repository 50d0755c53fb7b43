/**
 * The real CDK CLI synthesizes the app offline with no AWS credentials: esbuild bundles the five
 * Lambdas locally (no Docker), the runner image's build context is staged but not built, and
 * cdk-nag (registered in bin/cdk.ts) passes. About 10-15 s on this machine.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CDK_JSON_CONTEXT = (
  JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }
).context;

/** The environment minus anything that could give the CLI credentials, an account or a region. */
function offlineEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(AWS_|CDK_)/.test(key)) env[key] = value;
  }
  return {
    ...env,
    // No instance metadata lookups for credentials either, and no shared config files.
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SHARED_CREDENTIALS_FILE: join(tmpdir(), 'notebook-jobs-no-credentials'),
    AWS_CONFIG_FILE: join(tmpdir(), 'notebook-jobs-no-config'),
    ...extra,
  };
}

interface Template {
  Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
  Outputs: Record<string, unknown>;
}

describe('npx cdk synth', () => {
  let out: string;
  let result: { stdout: string; stderr: string };

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'notebook-jobs-synth-'));
    result = await run('npx', ['cdk', 'synth', '--quiet', '-o', out], {
      cwd: ROOT,
      env: offlineEnv(),
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  }, 130_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('writes an environment-agnostic template with the five bundled Lambdas and the outputs', async () => {
    const template = JSON.parse(await readFile(join(out, 'NotebookJobs.template.json'), 'utf8')) as Template;
    const functions = Object.values(template.Resources).filter(
      (resource) => resource.Type === 'AWS::Lambda::Function' && resource.Properties.Runtime === 'nodejs22.x',
    );
    expect(functions).toHaveLength(5);
    expect(Object.keys(template.Outputs).sort()).toEqual([
      'ApiUrl',
      'BucketName',
      'DashboardUrl',
      'McpUrl',
      'RunnerRoleArn',
      'TableName',
    ]);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as {
      artifacts: Record<string, { type: string; environment?: string }>;
    };
    expect(manifest.artifacts.NotebookJobs?.environment).toBe('aws://unknown-account/unknown-region');
  });

  it('bundled each handler with esbuild into a minified ESM file with a source map and require shim', async () => {
    const assets = JSON.parse(await readFile(join(out, 'NotebookJobs.assets.json'), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
      dockerImages: Record<string, { source: { directory: string; dockerFile: string; platform: string } }>;
    };
    const zips = Object.values(assets.files).filter((file) => file.source.packaging === 'zip');
    const bundles = zips.filter((file) => existsSync(join(out, file.source.path, 'index.mjs')));
    expect(bundles).toHaveLength(5);
    // The one other Lambda code asset: CDK's own provider that empties the default security group.
    expect(zips.filter((file) => !bundles.includes(file)).map((file) => file.source.path)).toEqual([
      expect.stringMatching(/^asset\./),
    ]);
    let ajvCopies = 0;
    for (const bundle of bundles) {
      const code = await readFile(join(out, bundle.source.path, 'index.mjs'), 'utf8');
      // One of Ajv's own error messages, once per copy of Ajv in the bundle.
      ajvCopies += code.split('schema with key or id').length - 1;
      expect(code.startsWith("import { createRequire as __houseCreateRequire } from 'node:module';")).toBe(
        true,
      );
      // Linked source map: node --enable-source-maps finds it through this comment.
      expect(code.trimEnd().endsWith('//# sourceMappingURL=index.mjs.map')).toBe(true);
      expect(existsSync(join(out, bundle.source.path, 'index.mjs.map'))).toBe(true);
      // Minified: long lines (the few short ones are the bundled packages' license comments).
      expect(code.length / code.split('\n').length).toBeGreaterThan(1000);
    }
    // The esbuild aliases (lambdaAliases) held: the mcp bundle has SDK v1's Ajv only, not its second
    // npm copy nor the one SDK v2 inlines; no other bundle has any.
    expect(ajvCopies).toBe(1);
    // The image is staged for building at deploy time, not built here.
    const images = Object.values(assets.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0]?.source).toMatchObject({ dockerFile: 'container/Dockerfile', platform: 'linux/arm64' });
    expect(existsSync(join(out, images[0]?.source.directory ?? '', 'container', 'Dockerfile'))).toBe(true);
  });

  it('bundles that load in Node as Lambda loads them, each exporting its handler', async () => {
    const assets = JSON.parse(await readFile(join(out, 'NotebookJobs.assets.json'), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
    };
    const bundles = Object.values(assets.files).filter(
      (file) => file.source.packaging === 'zip' && existsSync(join(out, file.source.path, 'index.mjs')),
    );
    expect(bundles).toHaveLength(5);
    for (const bundle of bundles) {
      // Loading runs every top-level statement of the bundle (imports, the require shim, module
      // state); configuration is read at the first event, not here.
      const module = (await import(pathToFileURL(join(out, bundle.source.path, 'index.mjs')).href)) as {
        handler?: unknown;
      };
      expect(typeof module.handler, bundle.source.path).toBe('function');
    }
  });

  it('printed no cdk-nag finding', () => {
    expect(result.stderr).not.toMatch(/AwsSolutions/);
  });
});

describe('bin/cdk.ts', () => {
  it('registers the AwsSolutions checks on the app, and its synth passes them', async () => {
    // Records every plugin registration, then runs the app as the CLI would (bundling skipped).
    const probe = `
      import { Validations } from 'aws-cdk-lib';
      const original = Validations.prototype.addPlugins;
      Validations.prototype.addPlugins = function (...plugins) {
        const scope = Object.values(this).find((value) => value?.node?.path !== undefined);
        for (const plugin of plugins) console.log('plugin ' + plugin.name + ' on ' + (scope.node.path === '' ? 'app' : scope.node.path));
        return original.apply(this, plugins);
      };
      await import('./bin/cdk.ts');
    `;
    const out = await mkdtemp(join(tmpdir(), 'notebook-jobs-app-'));
    try {
      const { stdout } = await run('node', ['--import', 'tsx', '--input-type=module', '-e', probe], {
        cwd: ROOT,
        env: offlineEnv({
          CDK_CONTEXT_JSON: JSON.stringify({ ...CDK_JSON_CONTEXT, 'aws:cdk:bundling-stacks': [] }),
          CDK_OUTDIR: out,
        }),
        timeout: 60_000,
      });
      expect(stdout.trim().split('\n')).toEqual(['plugin AwsSolutions on app']);
      expect(existsSync(join(out, 'NotebookJobs.template.json'))).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 70_000);

  it('refuses a vpcId without an account and region to look it up in, saying why', async () => {
    const failure = await run('node', ['--import', 'tsx', 'bin/cdk.ts'], {
      cwd: ROOT,
      env: offlineEnv({
        CDK_CONTEXT_JSON: JSON.stringify({ vpcId: 'vpc-0123456789abcdef0' }),
        CDK_OUTDIR: join(tmpdir(), 'notebook-jobs-unused-outdir'),
      }),
      timeout: 60_000,
    }).then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).not.toBe(0);
    expect(failure?.stderr).toContain(
      'context vpcId=vpc-0123456789abcdef0 needs the target account and region',
    );
  }, 70_000);

  it('refuses a malformed context value, naming the key and what is allowed', async () => {
    const failure = await run('node', ['--import', 'tsx', 'bin/cdk.ts'], {
      cwd: ROOT,
      env: offlineEnv({
        CDK_CONTEXT_JSON: JSON.stringify({ taskCpu: 1024, taskMemory: 1000 }),
        CDK_OUTDIR: join(tmpdir(), 'notebook-jobs-unused-outdir'),
      }),
      timeout: 60_000,
    }).then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.stderr).toContain(
      'context taskCpu/taskMemory: memory 1000 MiB does not fit cpu 1024 on Fargate; with cpu 1024 memory must be 2048-8192 in steps of 1024 MiB',
    );
  }, 70_000);
});
