/** The kernel's environment: an allow-list over the runner's, never a copy of it. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lambda/core/config.ts';
import { kernelEnvironment, kernelEnvPass } from '../../lambda/kernels/kernel-env.ts';

/** What a runner's environment looks like: settings, credentials, and what a kernel needs. */
const RUNNER_ENV = {
  PATH: '/opt/conda/bin:/usr/bin',
  HOME: '/home/runner',
  USER: 'runner',
  LOGNAME: 'runner',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  LC_TIME: 'en_GB.UTF-8',
  TZ: 'Europe/Berlin',
  CONDA_PREFIX: '/opt/conda',
  CONDA_CHANNELS: 'https://token@conda.example.com/t/abc',
  DOTNET_ROOT: '/usr/share/dotnet',
  DOTNET_NOLOGO: '1',
  NUGET_PACKAGES: '/srv/nuget',
  VSS_NUGET_EXTERNAL_FEED_ENDPOINTS: '{"endpointCredentials":[{"password":"pat"}]}',
  JUPYTER_PATH: '/opt/kernels',
  JUPYTER_RUNTIME_DIR: '/srv/jupyter/.runtime',
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/credentials/secret',
  AWS_SECRET_ACCESS_KEY: 'secret',
  AWS_REGION: 'eu-west-1',
  ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/x',
  NOTEBOOK_JOBS_TABLE: 'jobs',
  NOTEBOOK_JOBS_MCP_TOKEN: 'secret',
  GITHUB_TOKEN: 'secret',
  SSH_AUTH_SOCK: '/run/ssh-agent',
  TERM: 'xterm',
};

describe('kernelEnvironment', () => {
  it('copies the allow-listed names and families, and sets the fixed engine switches', () => {
    const env = kernelEnvironment({ from: RUNNER_ENV, workDir: '/jobs/job_1' });
    expect(env).toEqual({
      PATH: '/opt/conda/bin:/usr/bin',
      HOME: '/home/runner',
      USER: 'runner',
      LOGNAME: 'runner',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      LC_TIME: 'en_GB.UTF-8',
      TZ: 'Europe/Berlin',
      CONDA_PREFIX: '/opt/conda',
      DOTNET_ROOT: '/usr/share/dotnet',
      DOTNET_NOLOGO: '1',
      NUGET_PACKAGES: '/srv/nuget',
      JUPYTER_PATH: '/opt/kernels',
      PYTHONUNBUFFERED: '1',
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
    });
  });

  it('gives a separate kernel user the working folder as HOME and its own name', () => {
    const env = kernelEnvironment({ from: RUNNER_ENV, workDir: '/jobs/job_1', kernelUser: 'kernel' });
    expect(env).toMatchObject({ HOME: '/jobs/job_1', USER: 'kernel', LOGNAME: 'kernel' });
  });

  it('lets operator-listed names through, but never a denied one', () => {
    const env = kernelEnvironment({
      from: { ...RUNNER_ENV, GDAL_DATA: '/opt/conda/share/gdal' },
      workDir: '/w',
      extraNames: ['GDAL_DATA', 'AWS_SECRET_ACCESS_KEY', 'NOTEBOOK_JOBS_TABLE'],
    });
    expect(env.GDAL_DATA).toBe('/opt/conda/share/gdal');
    expect(Object.keys(env).filter((name) => /^(AWS_|NOTEBOOK_JOBS_)/.test(name))).toEqual([]);
  });

  it("puts the job's own variables last", () => {
    const env = kernelEnvironment({
      from: RUNNER_ENV,
      workDir: '/w',
      extraNames: ['GDAL_DATA'],
      jobVariables: { API_KEY: 'the job’s own', GDAL_DATA: '/job/gdal' },
    });
    expect(env).toMatchObject({ API_KEY: 'the job’s own', GDAL_DATA: '/job/gdal' });
  });

  it('refuses a job variable with a reserved name (secrets may not set TZ, PATH, LD_*...)', () => {
    for (const name of ['TZ', 'PATH', 'LD_PRELOAD', 'PYTHONPATH', 'AWS_REGION', 'NOTEBOOK_JOBS_TABLE'])
      expect(() =>
        kernelEnvironment({ from: RUNNER_ENV, workDir: '/w', jobVariables: { [name]: 'x' } }),
      ).toThrow(/reserved/);
  });

  it('never passes anything that holds a marker of the runner’s secrets', () => {
    const env = kernelEnvironment({ from: RUNNER_ENV, workDir: '/w', kernelUser: 'kernel' });
    expect(JSON.stringify(env)).not.toMatch(/secret|token|password|pat"/i);
  });
});

describe('kernelEnvPass (NOTEBOOK_JOBS_KERNEL_ENV_PASS)', () => {
  it('reads a comma-separated list of names', () => {
    expect(kernelEnvPass({ NOTEBOOK_JOBS_KERNEL_ENV_PASS: ' GDAL_DATA, PROJ_DATA ,' })).toEqual([
      'GDAL_DATA',
      'PROJ_DATA',
    ]);
    expect(kernelEnvPass({})).toEqual([]);
  });

  it.each(['AWS_SESSION_TOKEN', 'NOTEBOOK_JOBS_TABLE', 'ECS_CONTAINER_METADATA_URI', 'BAD-NAME'])(
    'refuses %s naming the variable',
    (name) => {
      expect(() => kernelEnvPass({ NOTEBOOK_JOBS_KERNEL_ENV_PASS: name })).toThrow(ConfigError);
      expect(() => kernelEnvPass({ NOTEBOOK_JOBS_KERNEL_ENV_PASS: name })).toThrow(name);
    },
  );
});
