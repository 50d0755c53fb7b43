/**
 * The stack limits the runner's task role and the authorizer to certain DynamoDB items with
 * `dynamodb:LeadingKeys` patterns. A pattern that does not match the keys the code really uses would
 * only show up on AWS as AccessDenied, so this drives the real stores against dynalite, records the
 * keys of every item request they send, and checks them against the patterns in the template.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IRole } from 'aws-cdk-lib/aws-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbTokenStore } from '../../lambda/adapters/dynamodb/token-store.ts';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../../lib/stack-config.ts';
import { jobRecord } from '../helpers/jobs.ts';
import { runnerSessionPolicy } from '../../container/runner/job-credentials.ts';
import { DynamoDbTenantSettings } from '../../lambda/adapters/dynamodb/tenant-settings.ts';
import { logPageKey, logPagesPrefix } from '../../lambda/adapters/aws/s3-log-pages.ts';
import { htmlOutputKey, inputKey, jobKeyPrefixes, outputKey, uploadsPrefix } from '../../lambda/core/job.ts';

const SCOPE = {
  runnerRoleArn: 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole',
  region: 'eu-west-1',
  table: 'jobs',
  bucket: 'nbj-artifacts',
  eventBus: 'default',
};
const TABLE_ARN = 'arn:aws:dynamodb:eu-west-1:111122223333:table/jobs';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

/** The LeadingKeys patterns of the DynamoDB statements attached to a role. */
function leadingKeyPatterns(template: Template, stack: NotebookJobsStack, role: IRole): string[] {
  const roleId = stack.getLogicalId(role.node.defaultChild as never);
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((policy) => JSON.stringify(policy.Properties.Roles).includes(`"${roleId}"`))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
    .flatMap(
      (statement: { Condition?: Record<string, Record<string, string[]>> }) =>
        statement.Condition?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'] ?? [],
    );
}

/** IAM StringLike: `*` any run of characters, `?` one character, the rest literal. */
function iamLike(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** Records the partition key of every single-item request sent through a document client. */
function recordKeys(client: ReturnType<typeof createDocumentClient>): { keys: string[]; commands: string[] } {
  const seen = { keys: [] as string[], commands: [] as string[] };
  const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
  (client as unknown as { send: (command: unknown) => Promise<unknown> }).send = (command) => {
    const input = (command as { input: { Key?: Record<string, unknown>; Item?: Record<string, unknown> } })
      .input;
    seen.commands.push((command as object).constructor.name);
    const key = input.Key ?? input.Item;
    if (key) seen.keys.push(String(key.pk));
    return send(command);
  };
  return seen;
}

describe('dynamodb:LeadingKeys patterns match the keys the code uses', () => {
  let server: Server;
  let endpoint: string;
  let template: Template;
  let stack: NotebookJobsStack;

  beforeAll(async () => {
    server = dynalite({ createTableMs: 0 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await createJobTable(createDocumentClient({ endpoint }), 'jobs');
    const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [] } });
    stack = new NotebookJobsStack(app, 'Keys', { config: readStackConfig(app.node) });
    template = Template.fromStack(stack);
  }, 180_000);

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('the runner role: the job it reads and every update it makes', async () => {
    expect(leadingKeyPatterns(template, stack, stack.runner.taskRole)).toEqual([]);
    const patterns = leadingKeyPatterns(template, stack, stack.runner.runnerRole);
    expect(patterns).toEqual(['JOB#*', 'TENANT#*']);
    const client = createDocumentClient({ endpoint });
    const store = new DynamoDbJobStore({ client, tableName: 'jobs' });
    const job = jobRecord('job_01leadingkeys', { status: 'running', started_at: new Date().toISOString() });
    await store.create(job); // the api does this, not the runner: not recorded
    const seen = recordKeys(client);
    // What container/runner/runner.ts does: read the job, write progress, write the final state.
    await store.get(job.job_id);
    await store.update(job.job_id, ['running'], { stage: 'executing', updated_at: new Date().toISOString() });
    await store.update(job.job_id, ['running'], {
      status: 'completed',
      ended_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    });
    expect(seen.commands).toEqual(['GetCommand', 'UpdateCommand', 'UpdateCommand']);
    for (const key of seen.keys)
      expect(
        patterns.some((p) => iamLike(p).test(key)),
        key,
      ).toBe(true);
  });

  it("a runner's session policy: its own job item and its tenant's settings, nothing else", async () => {
    const client = createDocumentClient({ endpoint });
    const store = new DynamoDbJobStore({ client, tableName: 'jobs' });
    const settings = new DynamoDbTenantSettings({ client, tableName: 'jobs' });
    const job = jobRecord(`job_01JD${'0'.repeat(20)}SESS01`, {
      tenant: 'acme',
      status: 'running',
      started_at: new Date().toISOString(),
    });
    const other = jobRecord(`job_01JD${'0'.repeat(20)}SESS02`, { tenant: 'acme', status: 'running' });
    await store.create(job);
    await store.create(other);
    await settings.setNotebookRole('acme', 'arn:aws:iam::444455556666:role/acme-notebooks');
    await settings.setNotebookRole('globex', 'arn:aws:iam::777788889999:role/globex-notebooks');
    const policy = runnerSessionPolicy({ ...SCOPE, jobId: job.job_id, tenant: 'acme' });
    const allows = (action: string, key: string) =>
      policy.Statement.some(
        (statement) =>
          [statement.Action].flat().includes(action) &&
          iamLike(statement.Resource).test(TABLE_ARN) &&
          [statement.Condition?.['ForAllValues:StringEquals']?.['dynamodb:LeadingKeys'] ?? []]
            .flat()
            .some((pattern) => iamLike(pattern).test(key)),
      );

    // What container/runner/runner.ts and main.ts do with the session.
    const seen = recordKeys(client);
    await store.get(job.job_id);
    await settings.get('acme');
    await store.update(job.job_id, ['running'], { stage: 'executing', updated_at: new Date().toISOString() });
    expect(seen.commands).toEqual(['GetCommand', 'GetCommand', 'UpdateCommand']);
    expect(seen.keys).toEqual([`JOB#${job.job_id}`, 'TENANT#acme', `JOB#${job.job_id}`]);
    expect(allows('dynamodb:GetItem', seen.keys[0] as string)).toBe(true);
    expect(allows('dynamodb:GetItem', seen.keys[1] as string)).toBe(true);
    expect(allows('dynamodb:UpdateItem', seen.keys[2] as string)).toBe(true);

    // The same calls for another job or tenant use keys the session does not allow.
    const denied = recordKeys(client);
    await store.get(other.job_id);
    await store.update(other.job_id, ['running'], { updated_at: new Date().toISOString() });
    await settings.get('globex');
    for (const key of denied.keys) {
      expect(allows('dynamodb:GetItem', key), key).toBe(false);
      expect(allows('dynamodb:UpdateItem', key), key).toBe(false);
    }
    expect(allows('dynamodb:UpdateItem', 'TENANT#acme')).toBe(false);
    expect(allows('dynamodb:GetItem', 'SLOTS')).toBe(false);
    expect(allows('dynamodb:GetItem', `TOKENS#acme`)).toBe(false);
  });

  it("a runner's session policy: its input and output folders in the real key layout, no one else's", () => {
    const jobId = `job_01JD${'0'.repeat(20)}SESS01`;
    const policy = runnerSessionPolicy({ ...SCOPE, jobId, tenant: 'acme' });
    const objectArn = (key: string) => `arn:aws:s3:::nbj-artifacts/${key}`;
    const allows = (action: string, key: string) =>
      policy.Statement.some(
        (statement) =>
          [statement.Action].flat().includes(action) && iamLike(statement.Resource).test(objectArn(key)),
      );
    expect(allows('s3:GetObject', inputKey('acme', jobId, 'train.ipynb'))).toBe(true);
    expect(allows('s3:PutObject', outputKey('acme', jobId, 'train.ipynb'))).toBe(true);
    expect(allows('s3:PutObject', htmlOutputKey('acme', jobId, 'train.ipynb'))).toBe(true);
    // Each folder is exactly what jobKeyPrefixes says belongs to the job.
    expect(jobKeyPrefixes('acme', jobId).map((prefix) => objectArn(`${prefix}*`))).toEqual(
      policy.Statement.filter((statement) => statement.Resource.includes(':s3:::')).map((s) => s.Resource),
    );
    const otherJob = `job_01JD${'0'.repeat(20)}SESS02`;
    for (const key of [
      inputKey('acme', otherJob, 'train.ipynb'),
      inputKey('globex', jobId, 'train.ipynb'),
      outputKey('acme', otherJob, 'train.ipynb'),
      outputKey('globex', jobId, 'train.ipynb'),
      `${uploadsPrefix('acme')}abc/train.ipynb`,
    ]) {
      expect(allows('s3:GetObject', key), key).toBe(false);
      expect(allows('s3:PutObject', key), key).toBe(false);
    }
    expect(allows('s3:PutObject', inputKey('acme', jobId, 'train.ipynb'))).toBe(false);
    expect(allows('s3:GetObject', outputKey('acme', jobId, 'train.ipynb'))).toBe(false);
  });

  it("a runner's session policy: its own job's log pages, in the real page layout, and no one else's", () => {
    const jobId = `job_01JD${'0'.repeat(20)}SESS01`;
    const otherJob = `job_01JD${'0'.repeat(20)}SESS02`;
    const policy = runnerSessionPolicy({ ...SCOPE, jobId, tenant: 'acme' });
    const allows = (action: string, key: string) =>
      policy.Statement.some(
        (statement) =>
          [statement.Action].flat().includes(action) &&
          iamLike(statement.Resource).test(`arn:aws:s3:::nbj-artifacts/${key}`),
      );
    const page = (tenant: string, job: string, attempt: number, seq: number) =>
      logPageKey(logPagesPrefix(tenant, job), { attempt, seq });
    for (const [attempt, seq] of [
      [1, 0],
      [3, 12_345],
    ] as const)
      expect(allows('s3:PutObject', page('acme', jobId, attempt, seq))).toBe(true);
    for (const key of [page('acme', otherJob, 1, 0), page('globex', jobId, 1, 0)]) {
      expect(allows('s3:PutObject', key), key).toBe(false);
      expect(allows('s3:GetObject', key), key).toBe(false);
    }
    // Written, never read back or listed by the runner.
    expect(allows('s3:GetObject', page('acme', jobId, 1, 0))).toBe(false);
    expect(JSON.stringify(policy)).not.toContain('s3:ListBucket');
    // The pages are inside what deleting the job removes.
    expect(jobKeyPrefixes('acme', jobId).some((prefix) => page('acme', jobId, 1, 0).startsWith(prefix))).toBe(
      true,
    );
  });

  it('the authorizer: the token item it reads, and no job item', async () => {
    const patterns = leadingKeyPatterns(template, stack, stack.functions.authorizer.function.role as IRole);
    expect(patterns).toEqual(['TOKEN#*']);
    const client = createDocumentClient({ endpoint });
    const tokens = new DynamoDbTokenStore({ client, tableName: 'jobs' });
    const created = await tokens.create({ tenant: 'acme' });
    const seen = recordKeys(client);
    await expect(tokens.verify(created.token)).resolves.toMatchObject({ ok: true });
    expect(seen.commands).toEqual(['GetCommand']);
    for (const key of seen.keys)
      expect(
        patterns.some((p) => iamLike(p).test(key)),
        key,
      ).toBe(true);
    expect(patterns.some((p) => iamLike(p).test('JOB#job_01'))).toBe(false);
  });
});
