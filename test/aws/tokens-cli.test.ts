/**
 * `notebook-jobs tokens create|list|revoke` as a user runs it: the CLI in a child process, against a
 * table in dynalite (NOTEBOOK_JOBS_DYNAMODB_ENDPOINT), checked against the raw items it wrote.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbTokenStore, hashToken, TOKEN_PATTERN } from '../../lambda/adapters/dynamodb/token-store.ts';
import { Dynalite } from './aws-harness.ts';
import { DynamoDbTenantSettings } from '../../lambda/adapters/dynamodb/tenant-settings.ts';
import { runCli, type CliRun } from '../helpers/cli.ts';

let db: Dynalite;
let table: string;

beforeAll(async () => {
  db = await Dynalite.start();
  table = await db.newTable();
});

afterAll(async () => {
  await db?.close();
});

function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(args, { NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: db.endpoint, NOTEBOOK_JOBS_TABLE: table, ...env });
}

describe('notebook-jobs tokens', () => {
  it('creates a token, printing it once; only its hash is stored', async () => {
    const run = await cli([
      'tokens',
      'create',
      '--tenant',
      'acme',
      '--scopes',
      'read',
      '--expires-in-days',
      '30',
      '--description',
      'nightly CI',
    ]);

    expect(run.code, run.stderr).toBe(0);
    const [token, idLine, advice] = run.stdout.trim().split('\n');
    expect(token).toMatch(TOKEN_PATTERN);
    expect(idLine).toMatch(
      /^id tok_[0-9a-f]{16} {2}scopes read {2}expires \d{4}-\d\d-\d\dT.*Z {2}tenant acme$/,
    );
    expect(advice).toContain('only time the token is shown');
    const item = (
      await db.client.send(
        new GetCommand({ TableName: table, Key: { pk: `TOKEN#${hashToken(token as string)}`, sk: 'TOKEN' } }),
      )
    ).Item;
    expect(item).toMatchObject({ tenant: 'acme', scopes: ['read'], description: 'nightly CI' });
    expect(JSON.stringify(item)).not.toContain(token);
    const store = new DynamoDbTokenStore({ client: db.client, tableName: table });
    expect(await store.verify(token as string)).toMatchObject({
      ok: true,
      token: { tenant: 'acme', scopes: ['read'] },
    });
  });

  it('lists without secrets, revokes by id, and shows the revocation', async () => {
    const created = await cli(['tokens', 'create', '--tenant', 'globex', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { token, token_id: id } = JSON.parse(created.stdout) as { token: string; token_id: string };

    const listed = await cli(['tokens', 'list', '--tenant', 'globex']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(
      new RegExp(`^${id} {2}scopes read,write {2}expires never {2}active {2}created `),
    );
    expect(listed.stdout).not.toContain(token);
    expect(listed.stdout).not.toContain(hashToken(token));
    const json = await cli(['tokens', 'list', '--tenant', 'globex', '--json']);
    expect(JSON.stringify(JSON.parse(json.stdout))).not.toContain(hashToken(token));

    const revoked = await cli(['tokens', 'revoke', '--tenant', 'globex', id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked ${id} \\(tenant globex\\) at \\d{4}-`));

    const after = await cli(['tokens', 'list', '--tenant', 'globex']);
    expect(after.stdout).toMatch(new RegExp(`^${id} .* revoked \\d{4}-`));
    const store = new DynamoDbTokenStore({ client: db.client, tableName: table });
    expect(await store.verify(token)).toMatchObject({ ok: false, reason: 'revoked' });
  });

  it('explains usage errors (exit 2) and refusals (exit 1)', async () => {
    const noTenant = await cli(['tokens', 'create']);
    expect(noTenant.code).toBe(2);
    expect(noTenant.stderr).toContain('tokens create needs --tenant TENANT');

    const badScope = await cli(['tokens', 'create', '--tenant', 'acme', '--scopes', 'admin']);
    expect(badScope.code).toBe(2);
    expect(badScope.stderr).toContain('scopes must be a comma-separated list of read, write, got "admin"');

    const noTable = await cli(['tokens', 'list', '--tenant', 'acme'], { NOTEBOOK_JOBS_TABLE: '' });
    expect(noTable.code).toBe(2);
    expect(noTable.stderr).toContain('--table NAME or NOTEBOOK_JOBS_TABLE');

    const unknown = await cli(['tokens', 'revoke', '--tenant', 'acme', 'tok_0000000000000000']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('token tok_0000000000000000 not found for tenant acme');

    const missingTable = await cli(['tokens', 'list', '--tenant', 'acme', '--table', 'no-such-table']);
    expect(missingTable.code).toBe(1);
    expect(missingTable.stderr).toContain('cannot use table no-such-table');
  });

  it("stores the tenant's notebook role with the token and prints the external id its trust policy needs", async () => {
    const arn = 'arn:aws:iam::444455556666:role/data/initech-notebooks';
    const run = await cli(['tokens', 'create', '--tenant', 'initech', '--notebook-role', arn]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim().split('\n').at(-1)).toBe(
      `notebook role ${arn}: its trust policy must allow the stack's RunnerRoleArn output with sts:ExternalId notebook-jobs:initech (docs/deploy.md)`,
    );
    const item = (
      await db.client.send(
        new GetCommand({ TableName: table, Key: { pk: 'TENANT#initech', sk: 'SETTINGS' } }),
      )
    ).Item;
    expect(item).toMatchObject({ tenant: 'initech', notebook_role_arn: arn });
    expect(await new DynamoDbTenantSettings({ client: db.client, tableName: table }).get('initech')).toEqual({
      notebook_role_arn: arn,
    });

    const json = await cli(['tokens', 'create', '--tenant', 'initech', '--notebook-role', arn, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      tenant: 'initech',
      notebook_role: { arn, external_id: 'notebook-jobs:initech' },
    });
  });

  it.each([
    ['a wildcard', 'arn:aws:iam::444455556666:role/*'],
    ['an account wildcard', 'arn:aws:iam::*:role/notebooks'],
    ['a user, not a role', 'arn:aws:iam::444455556666:user/alice'],
    ['a policy injection', 'arn:aws:iam::444455556666:role/x","Action":"*'],
    ['a line break', 'arn:aws:iam::444455556666:role/x\n[default]'],
    ['an option', '--json'],
    ['not an ARN', 'notebooks'],
  ])('refuses %s as a notebook role (exit 2) and writes nothing', async (_what, hostile) => {
    const tenant = `hostile-${Math.random().toString(36).slice(2, 8)}`;
    const run = await cli(['tokens', 'create', '--tenant', tenant, `--notebook-role=${hostile}`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'notebook role must be an IAM role ARN like arn:aws:iam::123456789012:role/',
    );
    const items = await db.client.send(
      new GetCommand({ TableName: table, Key: { pk: `TENANT#${tenant}`, sk: 'SETTINGS' } }),
    );
    expect(items.Item).toBeUndefined();
    const listed = await cli(['tokens', 'list', '--tenant', tenant]);
    expect(listed.stdout.trim()).toBe(`no tokens for tenant ${tenant}`);
  });

  it('documents the tokens commands in --help', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const line of [
      'tokens create --tenant T',
      'tokens list --tenant T',
      'tokens revoke --tenant T ID',
      '--notebook-role ARN',
    ])
      expect(help.stdout).toContain(line);
  });

  it('sends NOTEBOOK_JOBS_TOKEN as a Bearer token to an AWS deployment', async () => {
    const seen: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: 'job job_X not found' } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const token = `nbj_${'b'.repeat(43)}`;
    try {
      const run = await cli(['status', 'job_X'], { NOTEBOOK_JOBS_URL: url, NOTEBOOK_JOBS_TOKEN: token });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('404: job job_X not found');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(seen).toEqual([`Bearer ${token}`]);
  });
});
