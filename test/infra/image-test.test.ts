/**
 * The parts of `npm run image:test` (bin/image-test.ts) that run without Docker: the `docker run`
 * options it derives from the synthesized task definition (the production conditions the image is
 * tested under), and its answer on a machine without Docker.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { productionRunArgs } from '../../bin/image-test.ts';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../../lib/stack-config.ts';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '../..');
const CDK_JSON = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

function template(context: Record<string, unknown> = {}): Template {
  const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context } });
  return Template.fromStack(new NotebookJobsStack(app, 'ImageArgs', { config: readStackConfig(app.node) }));
}

const RESOURCE_NAMES = {
  NOTEBOOK_JOBS_TABLE: 'jobs',
  NOTEBOOK_JOBS_BUCKET: 'bucket',
  NOTEBOOK_JOBS_RUNNER_ROLE_ARN: 'arn:aws:iam::111122223333:role/Runner',
  NOTEBOOK_JOBS_EVENT_BUS: 'default',
  AWS_REGION: 'us-east-1',
};

describe('image:test', () => {
  it('runs the container as the task definition does: user, read-only root, init, /tmp volume, size, environment', () => {
    const args = productionRunArgs(template({ taskCpu: '2048', taskMemory: '8192' }), RESOURCE_NAMES);
    expect(args.slice(0, 11)).toEqual([
      '--user',
      '0:0',
      '--read-only',
      '--init',
      '--volume',
      '/tmp',
      '--cpus',
      '2',
      '--memory',
      '8192m',
      '--env',
    ]);
    const environment = args.filter((_, i) => args[i - 1] === '--env');
    expect(environment.sort()).toEqual(
      [
        'NOTEBOOK_JOBS_RETENTION_DAYS=30',
        'NOTEBOOK_JOBS_ARTIFACTS=s3',
        'NOTEBOOK_JOBS_ENGINE=papermill',
        'NOTEBOOK_JOBS_PYTHON=/opt/conda/bin/python',
        'NOTEBOOK_JOBS_ENGINES_DIR=/app/engines',
        'NOTEBOOK_JOBS_KERNEL_USER=kernel',
        ...Object.entries(RESOURCE_NAMES).map(([name, value]) => `${name}=${value}`),
      ].sort(),
    );
  }, 120_000);

  it('refuses to guess a deployed resource name it was not given', () => {
    const { NOTEBOOK_JOBS_BUCKET: _bucket, ...withoutBucket } = RESOURCE_NAMES;
    expect(() => productionRunArgs(template(), withoutBucket)).toThrow(
      'no value for NOTEBOOK_JOBS_BUCKET (a deployed resource',
    );
  }, 120_000);

  it('says it needs Docker, and exits 2, where there is no docker command', () => {
    // PATH holds node only.
    const bin = mkdtempSync(join(tmpdir(), 'image-test-path-'));
    try {
      symlinkSync(process.execPath, join(bin, 'node'));
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'bin/image-test.ts'], {
        cwd: ROOT,
        env: { PATH: bin, HOME: process.env.HOME },
        encoding: 'utf8',
      });
      expect(run.status).toBe(2);
      expect(run.stderr).toContain('image:test needs Docker, and there is no `docker` command here');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  }, 60_000);
});
