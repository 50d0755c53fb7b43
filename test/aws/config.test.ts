/** The AWS entry points' configuration: one typed object, failing fast with the variable's name. */
import { describe, expect, it } from 'vitest';
import { readAwsConfig, readTokenTableConfig } from '../../lambda/aws/config.ts';
import { ConfigError } from '../../lambda/core/config.ts';
import { stackEnv } from './aws-harness.ts';

const env = () =>
  stackEnv('notebook-jobs-Jobs1A2B3C', 'http://127.0.0.1:4567') as Record<string, string | undefined>;

describe('readAwsConfig', () => {
  it('reads the stack settings into one typed object', () => {
    expect(readAwsConfig(env())).toEqual({
      region: 'us-west-2',
      table: 'notebook-jobs-Jobs1A2B3C',
      dynamodbEndpoint: 'http://127.0.0.1:4567',
      retentionDays: 30,
      bucket: 'notebook-jobs-artifacts-111122223333',
      tenantSources: {},
      ecs: {
        cluster: 'arn:aws:ecs:us-west-2:111122223333:cluster/notebook-jobs',
        taskDefinition: 'arn:aws:ecs:us-west-2:111122223333:task-definition/notebook-jobs-runner:7',
        containerName: 'runner',
        subnets: ['subnet-0abc1234def567890', 'subnet-0def5678abc123456'],
        securityGroups: ['sg-0123456789abcdef0'],
        assignPublicIp: false,
        capacity: 'FARGATE',
      },
      logs: { logGroup: '/notebook-jobs/runner', streamPrefix: 'runner' },
      eventBus: 'default',
      maxConcurrentJobs: 5,
      launchDeadlineSeconds: 900,
      maxAttempts: 3,
      maxInputFiles: 1000,
      maxInputFilesBytes: 100 * 1024 * 1024,
      cursorSecretArn: 'arn:aws:secretsmanager:us-west-2:111122223333:secret:notebook-jobs-cursor-AbCdEf',
    });
  });

  it.each([
    'NOTEBOOK_JOBS_TABLE',
    'NOTEBOOK_JOBS_BUCKET',
    'NOTEBOOK_JOBS_CLUSTER',
    'NOTEBOOK_JOBS_TASK_DEFINITION',
    'NOTEBOOK_JOBS_CONTAINER',
    'NOTEBOOK_JOBS_SUBNETS',
    'NOTEBOOK_JOBS_SECURITY_GROUPS',
    'NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP',
    'NOTEBOOK_JOBS_CAPACITY',
    'NOTEBOOK_JOBS_LOG_GROUP',
    'NOTEBOOK_JOBS_LOG_STREAM_PREFIX',
    'NOTEBOOK_JOBS_EVENT_BUS',
    'NOTEBOOK_JOBS_CURSOR_SECRET_ARN',
  ])('fails naming %s when it is missing or empty', (name) => {
    const missing = env();
    delete missing[name];
    const empty = { ...env(), [name]: '' };
    for (const e of [missing, empty]) {
      expect(() => readAwsConfig(e)).toThrow(ConfigError);
      expect(() => readAwsConfig(e)).toThrow(`missing required environment variable ${name}`);
    }
  });

  it('rejects malformed values, naming the variable and what is allowed', () => {
    const cases: Array<[string, string, string]> = [
      [
        'NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP',
        'yes',
        'NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP must be one of ENABLED, DISABLED, got "yes"',
      ],
      [
        'NOTEBOOK_JOBS_CAPACITY',
        'EC2',
        'NOTEBOOK_JOBS_CAPACITY must be one of FARGATE, FARGATE_SPOT, got "EC2"',
      ],
      [
        'NOTEBOOK_JOBS_SUBNETS',
        'sg-0123,subnet-1',
        'NOTEBOOK_JOBS_SUBNETS must be a comma-separated list of subnet-... ids',
      ],
      [
        'NOTEBOOK_JOBS_SECURITY_GROUPS',
        ' , ',
        'NOTEBOOK_JOBS_SECURITY_GROUPS must be a comma-separated list of sg-... ids',
      ],
      [
        'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS',
        'many',
        'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS must be an integer from 1 to 1000,',
      ],
      [
        'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS',
        '0',
        'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS must be an integer from 1 to 1000,',
      ],
      [
        'NOTEBOOK_JOBS_RETENTION_DAYS',
        '-1',
        'NOTEBOOK_JOBS_RETENTION_DAYS must be an integer from 1 to 3650',
      ],
      [
        'NOTEBOOK_JOBS_TENANT_SOURCES',
        '{"acme": ["s3://acme-data/notebooks"]}',
        'NOTEBOOK_JOBS_TENANT_SOURCES "acme": "s3://acme-data/notebooks" is not an s3://bucket/prefix/ ending in "/"',
      ],
      ['NOTEBOOK_JOBS_TENANT_SOURCES', 'acme', 'NOTEBOOK_JOBS_TENANT_SOURCES must be a JSON object'],
    ];
    for (const [name, value, message] of cases) {
      expect(() => readAwsConfig({ ...env(), [name]: value }), `${name}=${value}`).toThrow(message);
    }
  });

  it('reads Fargate Spot, a public IP and a concurrency limit', () => {
    const config = readAwsConfig({
      ...env(),
      NOTEBOOK_JOBS_CAPACITY: 'FARGATE_SPOT',
      NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP: 'ENABLED',
      NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS: '12',
      NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: undefined,
    });
    expect(config.ecs).toMatchObject({ capacity: 'FARGATE_SPOT', assignPublicIp: true });
    expect(config.maxConcurrentJobs).toBe(12);
    expect(config.dynamodbEndpoint).toBeUndefined();
  });
});

describe('readTokenTableConfig', () => {
  it('needs only the table', () => {
    expect(readTokenTableConfig({ NOTEBOOK_JOBS_TABLE: 't' })).toEqual({
      region: undefined,
      table: 't',
      dynamodbEndpoint: undefined,
    });
    expect(() => readTokenTableConfig({})).toThrow(
      'missing required environment variable NOTEBOOK_JOBS_TABLE',
    );
  });
});
