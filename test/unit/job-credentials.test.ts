/**
 * The runner's job-scoped credentials: the session policy statement by statement, the exact
 * AssumeRole requests (STS mocked: it cannot run here), refreshing before expiry, and the notebook
 * role's credentials file the kernel reads.
 */
import { readFile, stat } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AssumedRole,
  MAX_SESSION_POLICY_CHARS,
  notebookBrokerPolicy,
  notebookBrokerSession,
  notebookRoleSession,
  policyText,
  runnerSession,
  runnerSessionPolicy,
  warmSession,
  warmSessionPolicy,
  type JobScope,
} from '../../container/runner/job-credentials.ts';
import { credentialsFileText, notebookRoleCredentials } from '../../container/runner/kernel-credentials.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';

const JOB = `job_01JD${'0'.repeat(24)}AB`;
const SCOPE: JobScope = {
  runnerRoleArn: 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole1A2B3C',
  region: 'eu-west-1',
  table: 'NotebookJobs-JobsTable1234',
  bucket: 'nbj-artifacts',
  eventBus: 'default',
  jobId: JOB,
  tenant: 'acme',
};
const TABLE = 'arn:aws:dynamodb:eu-west-1:111122223333:table/NotebookJobs-JobsTable1234';
const NOTEBOOK_ROLE = 'arn:aws:iam::444455556666:role/data/acme-notebooks';

const sts = mockClient(STSClient);
const scratch = mkdtempSync(join(tmpdir(), 'nbj-credentials-'));
afterEach(() => {
  sts.reset();
  vi.useRealTimers();
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function stsCredentials(id: string, expiresInMs: number) {
  return {
    Credentials: {
      AccessKeyId: id,
      SecretAccessKey: `secret-${id}`,
      SessionToken: `token-${id}`,
      Expiration: new Date(Date.now() + expiresInMs),
    },
  };
}

describe('the session policy of a runner', () => {
  it('names its job item, its tenant settings, its input and output folders and its events, one statement each', () => {
    expect(runnerSessionPolicy(SCOPE)).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
          Resource: TABLE,
          Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [`JOB#${JOB}`] } },
        },
        {
          Effect: 'Allow',
          Action: 'dynamodb:GetItem',
          Resource: TABLE,
          Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['TENANT#acme'] } },
        },
        {
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:DeleteObject'],
          Resource: `arn:aws:s3:::nbj-artifacts/inputs/acme/${JOB}/*`,
        },
        {
          Effect: 'Allow',
          Action: 's3:PutObject',
          Resource: `arn:aws:s3:::nbj-artifacts/outputs/acme/${JOB}/*`,
        },
        {
          Effect: 'Allow',
          Action: 'events:PutEvents',
          Resource: 'arn:aws:events:eu-west-1:111122223333:event-bus/default',
          Condition: {
            StringEquals: {
              'events:source': 'notebook-jobs',
              'events:detail-type': 'Notebook Job State Change',
            },
          },
        },
      ],
    });
  });

  it('takes the partition from the runner role, a bus ARN as it is, and allows no events without a bus', () => {
    const china = runnerSessionPolicy({
      ...SCOPE,
      runnerRoleArn: 'arn:aws-cn:iam::111122223333:role/r',
      region: 'cn-north-1',
      eventBus: 'arn:aws-cn:events:cn-north-1:111122223333:event-bus/jobs',
    });
    expect(china.Statement.map((s) => s.Resource)).toEqual([
      'arn:aws-cn:dynamodb:cn-north-1:111122223333:table/NotebookJobs-JobsTable1234',
      'arn:aws-cn:dynamodb:cn-north-1:111122223333:table/NotebookJobs-JobsTable1234',
      `arn:aws-cn:s3:::nbj-artifacts/inputs/acme/${JOB}/*`,
      `arn:aws-cn:s3:::nbj-artifacts/outputs/acme/${JOB}/*`,
      'arn:aws-cn:events:cn-north-1:111122223333:event-bus/jobs',
    ]);
    const noBus = runnerSessionPolicy({ ...SCOPE, eventBus: undefined });
    expect(noBus.Statement).toEqual(runnerSessionPolicy(SCOPE).Statement.slice(0, 4));
    expect(JSON.stringify(noBus)).not.toContain('events:');
  });

  it.each([
    ['a wildcard tenant', { tenant: '*' }, /bad tenant "\*"/],
    ['a tenant with a wildcard', { tenant: 'acme*' }, /bad tenant/],
    ['a tenant with a path', { tenant: 'acme/../globex' }, /bad tenant/],
    ['a malformed job id', { jobId: 'job_*' }, /bad job id/],
    ['a bucket with a wildcard', { bucket: 'nbj-*' }, /bad bucket/],
    ['a table with a wildcard', { table: 'jobs*' }, /bad table/],
    ['a bus with a wildcard', { eventBus: '*' }, /bad event bus/],
    ['a region that is not one', { region: '*' }, /bad region/],
    [
      'a runner role that is not a role',
      { runnerRoleArn: 'arn:aws:iam::111122223333:user/x' },
      /not an IAM role/,
    ],
  ])('refuses %s: it would widen the session', (_what, change, message) => {
    expect(() => runnerSessionPolicy({ ...SCOPE, ...change })).toThrow(message);
  });

  it("stays within STS's limit for the longest table, bucket and tenant names (the stack's bus is default)", () => {
    const longest = runnerSessionPolicy({
      ...SCOPE,
      runnerRoleArn: `arn:aws-us-gov:iam::111122223333:role/${'r'.repeat(64)}`,
      region: 'us-gov-west-1',
      table: 't'.repeat(255),
      bucket: 'b'.repeat(63),
      tenant: 'T'.repeat(128),
    });
    expect(policyText(longest).length).toBeLessThanOrEqual(MAX_SESSION_POLICY_CHARS);
    const broker = notebookBrokerPolicy(
      `arn:aws-us-gov:iam::444455556666:role/${'path/'.repeat(25)}${'n'.repeat(64)}`,
    );
    expect(policyText(broker).length).toBeLessThanOrEqual(MAX_SESSION_POLICY_CHARS);
  });

  it('lets the broker session assume exactly the notebook role, and refuses a hostile ARN', () => {
    expect(notebookBrokerPolicy(NOTEBOOK_ROLE)).toEqual({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: NOTEBOOK_ROLE }],
    });
    for (const hostile of [
      'arn:aws:iam::*:role/*',
      'arn:aws:iam::444455556666:role/*',
      'arn:aws:iam::444455556666:role/a?c',
      `${NOTEBOOK_ROLE}"},{"Effect":"Allow","Action":"*","Resource":"*`,
      `${NOTEBOOK_ROLE}\n`,
    ])
      expect(() => notebookBrokerPolicy(hostile), hostile).toThrow(InvalidRequestError);
  });
});

describe('the session policy of a warm runner waiting for a job', () => {
  const warm = {
    runnerRoleArn: 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole',
    region: 'us-east-1',
    table: 'notebook-jobs',
    kernel: 'python3',
    sessionName: 'warm-0123456789abcdef0123456789abcdef',
  };

  it("allows the kernel's warm runner items only: no job, tenant or bucket", () => {
    expect(warmSessionPolicy(warm)).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
          Resource: 'arn:aws:dynamodb:us-east-1:111122223333:table/notebook-jobs',
          Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['WARM#python3'] } },
        },
      ],
    });
  });

  it.each(['py*', 'a/b', '', 'WARM#x'])(
    'refuses the kernel name %j (a wildcard or separator would widen it)',
    (kernel) => {
      expect(() => warmSessionPolicy({ ...warm, kernel })).toThrow(/bad kernel/);
    },
  );

  it('refuses a session name STS would refuse', () => {
    expect(() => warmSession(new STSClient({}), { ...warm, sessionName: 'arn:aws:ecs:task/x' })).toThrow(
      /not an STS session name/,
    );
  });
});

describe('AssumeRole requests', () => {
  it('the data session: the runner role, the job id as session name, one hour, the policy as compact JSON', async () => {
    sts.on(AssumeRoleCommand).resolves(stsCredentials('ASIADATA', 3_600_000));
    const credentials = await runnerSession(new STSClient({ region: 'eu-west-1' }), SCOPE).provider();

    expect(sts.commandCalls(AssumeRoleCommand).map((call) => call.args[0].input)).toEqual([
      {
        RoleArn: SCOPE.runnerRoleArn,
        RoleSessionName: JOB,
        DurationSeconds: 3600,
        Policy: JSON.stringify(runnerSessionPolicy(SCOPE)),
      },
    ]);
    expect(credentials).toMatchObject({
      accessKeyId: 'ASIADATA',
      secretAccessKey: 'secret-ASIADATA',
      sessionToken: 'token-ASIADATA',
    });
  });

  it("the notebook role: the broker session's policy names the role; the role is assumed with the tenant's external id", async () => {
    sts.on(AssumeRoleCommand).resolves(stsCredentials('ASIANB', 3_600_000));
    const client = new STSClient({ region: 'eu-west-1' });
    await notebookBrokerSession(client, SCOPE, NOTEBOOK_ROLE).provider();
    await notebookRoleSession(client, SCOPE, NOTEBOOK_ROLE).provider();

    expect(sts.commandCalls(AssumeRoleCommand).map((call) => call.args[0].input)).toEqual([
      {
        RoleArn: SCOPE.runnerRoleArn,
        RoleSessionName: JOB,
        DurationSeconds: 3600,
        Policy: JSON.stringify(notebookBrokerPolicy(NOTEBOOK_ROLE)),
      },
      {
        RoleArn: NOTEBOOK_ROLE,
        RoleSessionName: JOB,
        DurationSeconds: 3600,
        ExternalId: 'notebook-jobs:acme',
      },
    ]);
  });

  it('reuses credentials until 10 minutes before expiry, then assumes the role again; callers share one call', async () => {
    let now = Date.now();
    sts
      .on(AssumeRoleCommand)
      .resolvesOnce(stsCredentials('ASIAFIRST', 3_600_000))
      .resolvesOnce(stsCredentials('ASIASECOND', 7_200_000));
    const role = new AssumedRole(
      new STSClient({ region: 'eu-west-1' }),
      { RoleArn: SCOPE.runnerRoleArn, RoleSessionName: JOB, DurationSeconds: 3600 },
      () => now,
    );
    const [a, b] = await Promise.all([role.provider(), role.provider()]);
    expect([a.accessKeyId, b.accessKeyId]).toEqual(['ASIAFIRST', 'ASIAFIRST']);
    now += 49 * 60_000;
    expect((await role.provider()).accessKeyId).toBe('ASIAFIRST');
    now += 2 * 60_000; // 51 minutes in: 9 minutes left
    expect((await role.provider()).accessKeyId).toBe('ASIASECOND');
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(2);
  });

  it('fails with the role named when STS answers without credentials', async () => {
    sts.on(AssumeRoleCommand).resolves({});
    await expect(runnerSession(new STSClient({ region: 'eu-west-1' }), SCOPE).provider()).rejects.toThrow(
      `STS returned no credentials for ${SCOPE.runnerRoleArn}`,
    );
  });
});

describe("the kernel's credentials file", () => {
  let folder: string;
  beforeEach(() => {
    folder = join(scratch, `job-${Math.random().toString(36).slice(2)}.aws`);
  });

  it('holds only the notebook role credentials, readable by all and writable by the runner only, and is rewritten before expiry', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    sts
      .on(AssumeRoleCommand)
      .resolvesOnce(stsCredentials('ASIAONE', 11 * 60_000))
      .resolvesOnce(stsCredentials('ASIATWO', 3_600_000));
    const role = notebookRoleSession(new STSClient({ region: 'eu-west-1' }), SCOPE, NOTEBOOK_ROLE);
    const access = await notebookRoleCredentials({ role, folder, region: 'eu-west-1', log: () => undefined });

    const file = join(folder, 'credentials');
    expect(access.env).toEqual({
      AWS_SHARED_CREDENTIALS_FILE: file,
      AWS_REGION: 'eu-west-1',
      AWS_DEFAULT_REGION: 'eu-west-1',
    });
    expect(await readFile(file, 'utf8')).toBe(
      '[default]\naws_access_key_id = ASIAONE\naws_secret_access_key = secret-ASIAONE\naws_session_token = token-ASIAONE\n',
    );
    expect((await stat(file)).mode & 0o777).toBe(0o644);
    expect((await stat(folder)).mode & 0o777).toBe(0o755);

    await vi.advanceTimersByTimeAsync(61_000); // one minute in: within 10 minutes of expiry
    await vi.waitFor(async () => expect(await readFile(file, 'utf8')).toContain('ASIATWO'));
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(2);

    await access.stop();
    await expect(stat(folder)).rejects.toThrow(/ENOENT/);
  });

  it('refuses credentials that would add lines to the file', () => {
    expect(() =>
      credentialsFileText({
        accessKeyId: 'ASIA',
        secretAccessKey: 's\n[other]',
        sessionToken: 't',
        expiration: new Date(),
      }),
    ).toThrow(/line break/);
  });
});
