/**
 * DynamoDbTokenStore against dynalite: only hashes are stored, listing reveals no secret, revocation
 * and expiry are enforced by verify, and token items stay out of every job index.
 */
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  DynamoDbTokenStore,
  hashToken,
  parseScopes,
  TOKEN_PATTERN,
} from '../../lambda/adapters/dynamodb/token-store.ts';
import { ALL_INDEXES, INDEXES } from '../../lambda/adapters/dynamodb/table.ts';
import { InvalidRequestError, NotFoundError } from '../../lambda/core/errors.ts';
import { dynaliteForThisFile } from './aws-harness.ts';

const DAY = 86_400_000;
const db = dynaliteForThisFile();
let table: string;
let tokens: DynamoDbTokenStore;

beforeEach(async () => {
  table = await db().newTable();
  tokens = new DynamoDbTokenStore({ client: db().client, tableName: table });
});

async function rawItem(pk: string, sk: string): Promise<Record<string, unknown> | undefined> {
  return (await db().client.send(new GetCommand({ TableName: table, Key: { pk, sk } }))).Item;
}

describe('create', () => {
  it('returns the token once and stores only its SHA-256 hash', async () => {
    const created = await tokens.create({ tenant: 'acme', description: 'CI pipeline' });

    expect(created.token).toMatch(TOKEN_PATTERN);
    expect(created).toMatchObject({
      tenant: 'acme',
      scopes: ['read', 'write'],
      expires_at: null,
      revoked_at: null,
    });
    const hash = hashToken(created.token);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const item = await rawItem(`TOKEN#${hash}`, 'TOKEN');
    expect(item).toMatchObject({ tenant: 'acme', token_id: created.token_id, scopes: ['read', 'write'] });
    const listing = await rawItem('TOKENS#acme', created.token_id);
    expect(listing).toMatchObject({ token_hash: hash, description: 'CI pipeline' });
    for (const stored of [item, listing]) expect(JSON.stringify(stored)).not.toContain(created.token);
  });

  it('gives each token its own secret and id', async () => {
    const a = await tokens.create({ tenant: 'acme' });
    const b = await tokens.create({ tenant: 'acme' });
    expect(a.token).not.toBe(b.token);
    expect(a.token_id).not.toBe(b.token_id);
  });

  it('keeps token items out of every job index', async () => {
    const created = await tokens.create({ tenant: 'acme', expiresInDays: 7 });
    const keys = new Set(ALL_INDEXES.flatMap((i) => [i.partitionKey, i.sortKey].filter(Boolean)));
    for (const item of [
      await rawItem(`TOKEN#${hashToken(created.token)}`, 'TOKEN'),
      await rawItem('TOKENS#acme', created.token_id),
    ]) {
      expect(Object.keys(item ?? {}).filter((k) => keys.has(k))).toEqual([]);
    }
    const byTenant = await db().client.send(
      new QueryCommand({
        TableName: table,
        IndexName: INDEXES.byTenant.name,
        KeyConditionExpression: 'tenant_pk = :t',
        ExpressionAttributeValues: { ':t': 'TENANT#acme' },
      }),
    );
    expect(byTenant.Items).toEqual([]);
  });

  it('uses the TTL attribute deliberately: retention after expiry, none for a token without expiry', async () => {
    const now = new Date('2026-11-23T12:00:00.000Z');
    const expiring = await tokens.create({ tenant: 'acme', expiresInDays: 7 }, now);
    const forever = await tokens.create({ tenant: 'acme' }, now);

    const expiringItem = await rawItem(`TOKEN#${hashToken(expiring.token)}`, 'TOKEN');
    expect(expiring.expires_at).toBe('2026-11-30T12:00:00.000Z');
    // Kept 30 days past expiry so `tokens list` can still show it as expired.
    expect(expiringItem?.expires_at).toBe(Date.parse('2026-12-30T12:00:00.000Z') / 1000);
    expect((await rawItem(`TOKEN#${hashToken(forever.token)}`, 'TOKEN'))?.expires_at).toBeUndefined();
  });

  it('rejects bad input naming what is allowed, and writes nothing', async () => {
    await expect(tokens.create({ tenant: 'a b' })).rejects.toThrow(/tenant must be 1-128 characters/);
    await expect(tokens.create({ tenant: 'acme', expiresInDays: 0 })).rejects.toThrow(
      /whole number of days from 1 to 3650/,
    );
    expect(() => parseScopes('read,admin')).toThrow(InvalidRequestError);
    expect(() => parseScopes('read,admin')).toThrow(
      'scopes must be a comma-separated list of read, write, got "read,admin"',
    );
    expect(parseScopes(' write , read ,read')).toEqual(['read', 'write']);
    expect(await tokens.list('acme')).toEqual([]);
  });
});

describe('list', () => {
  it("lists a tenant's tokens without secrets or hashes, and no other tenant's", async () => {
    const a = await tokens.create({ tenant: 'acme', scopes: ['read'], description: 'dashboard' });
    const b = await tokens.create({ tenant: 'acme' });
    const other = await tokens.create({ tenant: 'globex' });

    const list = await tokens.list('acme');

    expect(list.map((t) => t.token_id).sort()).toEqual([a.token_id, b.token_id].sort());
    expect(list.find((t) => t.token_id === a.token_id)).toEqual({
      token_id: a.token_id,
      tenant: 'acme',
      scopes: ['read'],
      description: 'dashboard',
      created_at: a.created_at,
      expires_at: null,
      revoked_at: null,
    });
    const text = JSON.stringify(list);
    for (const t of [a, b, other]) {
      expect(text).not.toContain(t.token);
      expect(text).not.toContain(hashToken(t.token));
    }
    expect(text).not.toContain(other.token_id);
  });
});

describe('verify and revoke', () => {
  it('accepts a valid token and tells unknown, malformed, revoked and expired ones apart', async () => {
    const valid = await tokens.create({ tenant: 'acme', scopes: ['read'] });
    const revoked = await tokens.create({ tenant: 'acme' });
    await tokens.revoke('acme', revoked.token_id);
    const expired = await tokens.create({ tenant: 'acme', expiresInDays: 1 }, new Date(Date.now() - 2 * DAY));

    expect(await tokens.verify(valid.token)).toEqual({
      ok: true,
      token: expect.objectContaining({ tenant: 'acme', scopes: ['read'], token_id: valid.token_id }),
    });
    expect(await tokens.verify(`nbj_${'A'.repeat(43)}`)).toEqual({ ok: false, reason: 'unknown' });
    expect(await tokens.verify('nbj_short')).toEqual({ ok: false, reason: 'malformed' });
    expect(await tokens.verify(revoked.token)).toEqual({
      ok: false,
      reason: 'revoked',
      token_id: revoked.token_id,
    });
    expect(await tokens.verify(expired.token)).toEqual({
      ok: false,
      reason: 'expired',
      token_id: expired.token_id,
    });
  });

  it('checks expiry itself at the moment of use', async () => {
    const now = new Date('2026-11-23T12:00:00.000Z');
    const created = await tokens.create({ tenant: 'acme', expiresInDays: 1 }, now);
    expect((await tokens.verify(created.token, new Date('2026-11-24T11:59:59.000Z'))).ok).toBe(true);
    expect(await tokens.verify(created.token, new Date('2026-11-24T12:00:00.000Z'))).toMatchObject({
      ok: false,
      reason: 'expired',
    });
  });

  it('revokes idempotently, keeping the first revocation time', async () => {
    const created = await tokens.create({ tenant: 'acme' });
    const first = await tokens.revoke('acme', created.token_id, new Date('2026-11-23T12:00:00.000Z'));
    const again = await tokens.revoke('acme', created.token_id, new Date('2026-11-24T12:00:00.000Z'));

    expect(first.revoked_at).toBe('2026-11-23T12:00:00.000Z');
    expect(again.revoked_at).toBe('2026-11-23T12:00:00.000Z');
    const item = await rawItem(`TOKEN#${hashToken(created.token)}`, 'TOKEN');
    expect(item?.revoked_at).toBe('2026-11-23T12:00:00.000Z');
    expect(item?.expires_at).toBe(Date.parse('2026-12-23T12:00:00.000Z') / 1000);
  });

  it("cannot revoke another tenant's token or an unknown id", async () => {
    const created = await tokens.create({ tenant: 'acme' });

    await expect(tokens.revoke('globex', created.token_id)).rejects.toThrow(NotFoundError);
    await expect(tokens.revoke('acme', 'tok_0000000000000000')).rejects.toThrow(
      'token tok_0000000000000000 not found for tenant acme',
    );
    await expect(tokens.revoke('acme', 'nbj_not-an-id')).rejects.toThrow(InvalidRequestError);
    expect((await tokens.verify(created.token)).ok).toBe(true);
  });
});
