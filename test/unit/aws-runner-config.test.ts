/**
 * The runner's configuration: AWS mode (S3 artifacts, stdout logs, optional event bus) and local
 * mode read from the environment, failing fast naming the variable that is missing or wrong.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRunnerConfig } from '../../container/runner/config.ts';
import { DEFAULT_LIMITS } from '../../container/runner/limits.ts';
import { ConfigError } from '../../lambda/core/config.ts';

const AWS_ENV = {
  NOTEBOOK_JOBS_JOB_ID: 'job_01JD0000000000000000000000',
  NOTEBOOK_JOBS_TABLE: 'notebook-jobs',
  NOTEBOOK_JOBS_ARTIFACTS: 's3',
  NOTEBOOK_JOBS_BUCKET: 'nbj-artifacts',
  NOTEBOOK_JOBS_EVENT_BUS: 'default',
  NOTEBOOK_JOBS_ENGINE: 'papermill',
  NOTEBOOK_JOBS_PYTHON: '/opt/conda/bin/python',
  NOTEBOOK_JOBS_ENGINES_DIR: '/app/container/engines',
  NOTEBOOK_JOBS_RETENTION_DAYS: '14',
  NOTEBOOK_JOBS_KERNEL_USER: 'kernel',
  NOTEBOOK_JOBS_RUNNER_ROLE_ARN: 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole',
  NOTEBOOK_JOBS_TENANT: 'acme',
  AWS_REGION: 'eu-west-1',
};
const SCOPED = {
  runnerRoleArn: 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole',
  tenant: 'acme',
  region: 'eu-west-1',
};

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('readRunnerConfig', () => {
  it('AWS mode: S3 bucket, event bus, scratch space in the temp folder, no data folder needed', () => {
    expect(readRunnerConfig(AWS_ENV)).toEqual({
      jobId: 'job_01JD0000000000000000000000',
      table: 'notebook-jobs',
      dynamodbEndpoint: undefined,
      region: 'eu-west-1',
      engine: 'papermill',
      python: '/opt/conda/bin/python',
      enginesDir: '/app/container/engines',
      progressIntervalMs: 2000,
      retentionDays: 14,
      watchStdin: false,
      workRoot: join(tmpdir(), 'work'),
      kernelUser: 'kernel',
      kernelEnvPass: [],
      storage: { mode: 's3', bucket: 'nbj-artifacts', eventBus: 'default', s3Endpoint: undefined, ...SCOPED },
      limits: DEFAULT_LIMITS,
      secrets: { envPrefix: 'NOTEBOOK_SECRET_', secretsDir: undefined },
    });
  });

  it('AWS mode fails fast naming NOTEBOOK_JOBS_BUCKET when it is missing or empty', () => {
    const { NOTEBOOK_JOBS_BUCKET: _, ...withoutBucket } = AWS_ENV;
    expect(configError(() => readRunnerConfig(withoutBucket))).toBe(
      'missing required environment variable NOTEBOOK_JOBS_BUCKET',
    );
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_BUCKET: '' }))).toContain(
      'NOTEBOOK_JOBS_BUCKET',
    );
  });

  it('AWS mode: no event bus means no events; a data folder holds the scratch space', () => {
    const { NOTEBOOK_JOBS_EVENT_BUS: _, ...env } = AWS_ENV;
    const config = readRunnerConfig({ ...env, NOTEBOOK_JOBS_DATA: '/scratch' });
    expect(config.storage).toEqual({
      mode: 's3',
      bucket: 'nbj-artifacts',
      eventBus: undefined,
      s3Endpoint: undefined,
      ...SCOPED,
    });
    expect(config.workRoot).toBe(join('/scratch', 'work'));
  });

  it('local mode (the default) keeps everything under the data folder and ignores AWS-only settings', () => {
    const config = readRunnerConfig(
      {
        NOTEBOOK_JOBS_TABLE: 'jobs',
        NOTEBOOK_JOBS_DATA: '/data',
        NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: 'http://127.0.0.1:4567',
        NOTEBOOK_JOBS_EVENT_BUS: 'default',
        NOTEBOOK_JOBS_WATCH_STDIN: '1',
        NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS: '50',
      },
      ['job_01JD0000000000000000000001'],
      '/home/me/project',
    );
    expect(config).toMatchObject({
      jobId: 'job_01JD0000000000000000000001',
      dynamodbEndpoint: 'http://127.0.0.1:4567',
      engine: 'auto',
      progressIntervalMs: 50,
      retentionDays: 30,
      watchStdin: true,
      workRoot: join('/data', 'work'),
      storage: {
        mode: 'file',
        artifactsRoot: join('/data', 'artifacts'),
        logsFolder: join('/data', 'logs'),
        workspace: '/home/me/project',
      },
    });
  });

  it('names what is missing or malformed', () => {
    expect(configError(() => readRunnerConfig({ NOTEBOOK_JOBS_TABLE: 'jobs' }, ['job_1']))).toBe(
      'missing required environment variable NOTEBOOK_JOBS_DATA',
    );
    expect(
      configError(() => readRunnerConfig({ NOTEBOOK_JOBS_TABLE: 'jobs', NOTEBOOK_JOBS_DATA: '/d' })),
    ).toBe('missing required environment variable NOTEBOOK_JOBS_JOB_ID');
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_TABLE: undefined }))).toBe(
      'missing required environment variable NOTEBOOK_JOBS_TABLE',
    );
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_ARTIFACTS: 'gcs' }))).toBe(
      'NOTEBOOK_JOBS_ARTIFACTS must be one of file, s3, got "gcs"',
    );
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_ENGINE: 'jupyter' }))).toBe(
      'NOTEBOOK_JOBS_ENGINE must be one of auto, nbclient, papermill, got "jupyter"',
    );
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_KERNEL_USER: '--grace' }))).toBe(
      'NOTEBOOK_JOBS_KERNEL_USER is not a user name: "--grace"',
    );
    expect(
      configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_KERNEL_ENV_PASS: 'AWS_PROFILE' })),
    ).toBe('NOTEBOOK_JOBS_KERNEL_ENV_PASS: AWS_PROFILE is never passed to kernels');
  });

  it('AWS mode needs the runner role, the tenant and the region, each well-formed', () => {
    for (const name of ['NOTEBOOK_JOBS_RUNNER_ROLE_ARN', 'NOTEBOOK_JOBS_TENANT', 'AWS_REGION'])
      expect(configError(() => readRunnerConfig({ ...AWS_ENV, [name]: undefined }))).toBe(
        `missing required environment variable ${name}`,
      );
    expect(
      configError(() =>
        readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_RUNNER_ROLE_ARN: 'arn:aws:iam::1:user/x' }),
      ),
    ).toBe('NOTEBOOK_JOBS_RUNNER_ROLE_ARN is not an IAM role ARN: "arn:aws:iam::1:user/x"');
    expect(configError(() => readRunnerConfig({ ...AWS_ENV, NOTEBOOK_JOBS_TENANT: 'acme/*' }))).toBe(
      'NOTEBOOK_JOBS_TENANT is not a tenant name: "acme/*"',
    );
  });

  it('the sandbox settings: a work root of its own, a kernel user, more variables for kernels', () => {
    const config = readRunnerConfig(
      {
        NOTEBOOK_JOBS_TABLE: 'jobs',
        NOTEBOOK_JOBS_DATA: '/data',
        NOTEBOOK_JOBS_WORK_ROOT: '/tmp/kernels/work',
        NOTEBOOK_JOBS_KERNEL_USER: 'nbkernel',
        NOTEBOOK_JOBS_KERNEL_ENV_PASS: 'GDAL_DATA,PROJ_DATA',
      },
      ['job_1'],
    );
    expect(config).toMatchObject({
      workRoot: '/tmp/kernels/work',
      kernelUser: 'nbkernel',
      kernelEnvPass: ['GDAL_DATA', 'PROJ_DATA'],
    });
    expect(
      readRunnerConfig({ NOTEBOOK_JOBS_TABLE: 'jobs', NOTEBOOK_JOBS_DATA: '/d' }, ['job_1']),
    ).toMatchObject({
      workRoot: join('/d', 'work'),
      kernelUser: undefined,
    });
  });
});
