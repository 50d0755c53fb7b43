/**
 * One settings module (lambda/core/settings.ts): every entry point that takes a setting (serve,
 * the AWS Lambdas, the runner, the stack) gets the same default and the same bounds from it, under
 * one variable name; a renamed variable still works with a warning.
 */
import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { readServeConfig } from '../../bin/serve.ts';
import { readRunnerConfig } from '../../container/runner/config.ts';
import { readAwsConfig } from '../../lambda/aws/config.ts';
import { SETTINGS } from '../../lambda/core/settings.ts';
import { readStackConfig } from '../../lib/stack-config.ts';
import { stackEnv } from '../aws/aws-harness.ts';

type Env = Record<string, string | undefined>;
type Warn = (message: string) => void;
const ignore: Warn = () => undefined;

// The stack's environment without the settings under test, so that their defaults show.
const awsEnv = (): Env => ({
  ...(stackEnv('table', 'http://127.0.0.1:4567') as Env),
  [SETTINGS.maxConcurrentJobs.variable]: undefined,
  [SETTINGS.retentionDays.variable]: undefined,
});
const runnerEnv = {
  NOTEBOOK_JOBS_JOB_ID: 'job_01JD0000000000000000000000',
  NOTEBOOK_JOBS_TABLE: 't',
  NOTEBOOK_JOBS_DATA: '/d',
};

/**
 * How each entry point reads a setting: from an environment (or, for the stack, the same value as
 * context under the setting's key), unset keys removed.
 */
const READERS = {
  serve: {
    maxConcurrentJobs: (env: Env, warn: Warn) => readServeConfig(env, {}, warn).maxConcurrentJobs as number,
    port: (env: Env, warn: Warn) => readServeConfig(env, {}, warn).port as number,
  },
  aws: {
    maxConcurrentJobs: (env: Env, warn: Warn) =>
      readAwsConfig({ ...awsEnv(), ...env }, warn).maxConcurrentJobs,
    retentionDays: (env: Env, warn: Warn) => readAwsConfig({ ...awsEnv(), ...env }, warn).retentionDays,
  },
  runner: {
    retentionDays: (env: Env) => readRunnerConfig({ ...runnerEnv, ...env }).retentionDays,
    progressIntervalMs: (env: Env) => readRunnerConfig({ ...runnerEnv, ...env }).progressIntervalMs,
    maxLogLineBytes: (env: Env) => readRunnerConfig({ ...runnerEnv, ...env }).limits.maxLogLineBytes,
  },
  stack: {
    maxConcurrentJobs: (env: Env) => stackRead(env, 'maxConcurrentJobs'),
    retentionDays: (env: Env) => stackRead(env, 'retentionDays'),
  },
} satisfies Record<string, Partial<Record<keyof typeof SETTINGS, (env: Env, warn: Warn) => number>>>;

/** The stack takes a setting from context under its key, given the value its variable would have. */
function stackRead(env: Env, name: 'maxConcurrentJobs' | 'retentionDays'): number {
  const setting = SETTINGS[name];
  const value = env[setting.variable];
  const config = readStackConfig(
    new App({ context: value === undefined ? {} : { [setting.context]: value } }).node,
  );
  return config[name];
}

const cases = Object.entries(READERS).flatMap(([entry, readers]) =>
  Object.entries(readers).map(([name, read]) => ({
    entry,
    name: name as keyof typeof SETTINGS,
    read: read as (env: Env, warn: Warn) => number,
  })),
);

describe.each(cases)('$entry reads $name from the settings module', ({ entry, name, read }) => {
  const setting = SETTINGS[name] as (typeof SETTINGS)[typeof name] & { variable: string };

  it('defaults to its one default', () => {
    expect(read({}, ignore)).toBe(setting.default);
  });

  it('takes its bounds, and refuses a value past them naming where it came from', () => {
    expect(read({ [setting.variable]: String(setting.min) }, ignore)).toBe(setting.min);
    if (setting.max < Number.MAX_SAFE_INTEGER) {
      expect(read({ [setting.variable]: String(setting.max) }, ignore)).toBe(setting.max);
      const key =
        entry === 'stack' ? `context ${(setting as { context: string }).context}` : setting.variable;
      expect(() => read({ [setting.variable]: String(setting.max + 1) }, ignore)).toThrow(
        `${key} must be an integer from ${setting.min} to ${setting.max}`,
      );
    }
  });
});

describe.each([
  ['serve', READERS.serve.maxConcurrentJobs],
  ['aws', READERS.aws.maxConcurrentJobs],
])('%s: the old NOTEBOOK_JOBS_MAX_CONCURRENT', (_entry, read) => {
  it('still works, with a warning to rename it', () => {
    const warnings: string[] = [];
    expect(read({ NOTEBOOK_JOBS_MAX_CONCURRENT: '7' }, (message) => warnings.push(message))).toBe(7);
    expect(warnings).toEqual([
      'NOTEBOOK_JOBS_MAX_CONCURRENT is deprecated: rename it NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS',
    ]);
  });

  it('is ignored, with a warning, when the new name is set too', () => {
    const warnings: string[] = [];
    const env = { NOTEBOOK_JOBS_MAX_CONCURRENT: '7', NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS: '3' };
    expect(read(env, (message) => warnings.push(message))).toBe(3);
    expect(warnings).toEqual([
      'NOTEBOOK_JOBS_MAX_CONCURRENT is ignored: NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS is set',
    ]);
  });
});
