/**
 * API tokens in the job table. A token (`nbj_` + 43 base64url characters of 32 random bytes) is shown
 * once at creation; only its SHA-256 hash is stored. Each token is bound to a tenant and scopes
 * (`read`: GET requests, `write`: everything else) and may expire.
 *
 * Item kinds (pk / sk), both outside every job index (they carry none of the index key attributes):
 * - token:   `TOKEN#<sha256 hex>` / `TOKEN`       what the authorizer reads: one GetItem by hash
 * - listing: `TOKENS#<tenant>` / `<token_id>`      per-tenant listing, so list is a Query, never a Scan
 *
 * The listing item is written first and the token item second: a crash in between leaves a listed
 * token that does not work (harmless, revocable), never a working token nobody can list or revoke.
 *
 * TTL (`expires_at`, epoch seconds) is used deliberately: an expired or revoked token's items are
 * kept `retentionDays` for the record, then DynamoDB removes them. TTL deletes late (up to days),
 * so `verify` always checks expiry and revocation itself and never relies on the item being gone.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { InvalidRequestError, NotFoundError } from '../../core/errors.ts';
import { isConditionFailure, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE } from './table.ts';
import { SETTINGS } from '../../core/settings.ts';

export const TOKEN_SCOPES = ['read', 'write'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

/** The shape of a token; anything else is rejected before a lookup. */
export const TOKEN_PATTERN = /^nbj_[A-Za-z0-9_-]{43}$/;
export const TOKEN_ID_PATTERN = /^tok_[0-9a-f]{16}$/;
/** Tenants become job owners and log fields: a conservative, printable alphabet. */
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/;

const TOKEN_SORT_KEY = 'TOKEN';
const MAX_DESCRIPTION = 200;
const MAX_EXPIRES_IN_DAYS = 3650;
const DAY_MS = 86_400_000;

/** A token as listed: never the token itself, never its hash. */
export interface TokenInfo {
  token_id: string;
  tenant: string;
  scopes: TokenScope[];
  description: string | null;
  created_at: string;
  /** ISO time after which the token no longer works; null = no expiry. */
  expires_at: string | null;
  revoked_at: string | null;
}

export interface CreatedToken extends TokenInfo {
  /** The secret, returned once. */
  token: string;
}

export interface CreateTokenRequest {
  tenant: string;
  scopes?: readonly TokenScope[];
  expiresInDays?: number;
  description?: string;
}

export type TokenCheck =
  | { ok: true; token: TokenInfo }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' | 'expired'; token_id?: string };

export interface DynamoDbTokenStoreOptions {
  client: DynamoDBDocumentClient;
  tableName: string;
  /** Days a revoked or expired token's items are kept before TTL removes them (default: the retentionDays setting). */
  retentionDays?: number;
}

type Item = Record<string, unknown>;

/** The SHA-256 of a token, hex: the only form in which a token is stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Parses `read,write`; throws InvalidRequestError naming the allowed scopes. */
export function parseScopes(text: string): TokenScope[] {
  const scopes = [...new Set(text.split(',').map((s) => s.trim()))].filter(Boolean);
  const unknown = scopes.filter((s) => !(TOKEN_SCOPES as readonly string[]).includes(s));
  if (scopes.length === 0 || unknown.length > 0) {
    throw new InvalidRequestError(
      `scopes must be a comma-separated list of ${TOKEN_SCOPES.join(', ')}, got "${text}"`,
    );
  }
  return TOKEN_SCOPES.filter((s) => scopes.includes(s));
}

export class DynamoDbTokenStore {
  private readonly client: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly retentionMs: number;

  constructor(options: DynamoDbTokenStoreOptions) {
    const retentionDays = options.retentionDays ?? SETTINGS.retentionDays.default;
    if (!(retentionDays > 0)) throw new RangeError(`retentionDays must be positive, got ${retentionDays}`);
    this.client = options.client;
    this.tableName = options.tableName;
    this.retentionMs = retentionDays * DAY_MS;
  }

  /** Creates a token; the returned `token` is the only time the secret exists outside the caller. */
  async create(request: CreateTokenRequest, now = new Date()): Promise<CreatedToken> {
    checkTenant(request.tenant);
    const scopes = request.scopes ? parseScopes(request.scopes.join(',')) : [...TOKEN_SCOPES];
    const days = request.expiresInDays;
    if (days !== undefined && !(Number.isInteger(days) && days >= 1 && days <= MAX_EXPIRES_IN_DAYS)) {
      throw new InvalidRequestError(
        `expires-in-days must be a whole number of days from 1 to ${MAX_EXPIRES_IN_DAYS}, got ${days}`,
      );
    }
    const description = request.description?.trim() || null;
    if (description && description.length > MAX_DESCRIPTION) {
      throw new InvalidRequestError(`description must be at most ${MAX_DESCRIPTION} characters`);
    }
    const token = `nbj_${randomBytes(32).toString('base64url')}`;
    const hash = hashToken(token);
    const expiresAt = days === undefined ? null : new Date(now.getTime() + days * DAY_MS);
    const info: TokenInfo = {
      token_id: `tok_${randomBytes(8).toString('hex')}`,
      tenant: request.tenant,
      scopes,
      description,
      created_at: now.toISOString(),
      expires_at: expiresAt?.toISOString() ?? null,
      revoked_at: null,
    };
    // Absent, not null: revoke sets revoked_at with if_not_exists, which a stored NULL would defeat.
    const attributes: Item = {
      token_id: info.token_id,
      tenant: info.tenant,
      scopes: info.scopes,
      created_at: info.created_at,
    };
    if (description) attributes.description = description;
    if (expiresAt) {
      attributes.expires_at_iso = info.expires_at;
      attributes[TTL_ATTRIBUTE] = this.ttlAfter(expiresAt);
    }
    await this.put({ ...listingKey(info.tenant, info.token_id), ...attributes, token_hash: hash });
    await this.put({ ...tokenKey(hash), ...attributes });
    return { ...info, token };
  }

  /** A tenant's tokens, oldest first, without secrets. */
  async list(tenant: string): Promise<TokenInfo[]> {
    checkTenant(tenant);
    const items: Item[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const result = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :pk',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY },
          ExpressionAttributeValues: { ':pk': listingPartition(tenant) },
          ExclusiveStartKey: startKey,
        }),
      );
      items.push(...(result.Items ?? []));
      startKey = result.LastEvaluatedKey;
    } while (startKey);
    return items.map(toInfo).sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  /** Revokes a tenant's token by id; idempotent (a second revoke keeps the first time). */
  async revoke(tenant: string, tokenId: string, now = new Date()): Promise<TokenInfo> {
    checkTenant(tenant);
    if (!TOKEN_ID_PATTERN.test(tokenId)) {
      throw new InvalidRequestError(`token id must look like tok_0123456789abcdef, got "${tokenId}"`);
    }
    const listing = await this.get(listingKey(tenant, tokenId));
    if (!listing) {
      throw new NotFoundError(
        `token ${tokenId} not found for tenant ${tenant} (see: notebook-jobs tokens list)`,
        {
          token_id: tokenId,
          tenant,
        },
      );
    }
    const values = { ':now': now.toISOString(), ':ttl': this.ttlAfter(now), ':tenant': tenant };
    const update = {
      UpdateExpression: 'SET revoked_at = if_not_exists(revoked_at, :now), #ttl = if_not_exists(#ttl, :ttl)',
      ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE, '#pk': PARTITION_KEY },
      ExpressionAttributeValues: values,
      ConditionExpression: 'attribute_exists(#pk) AND tenant = :tenant',
    };
    // The token item first: it is what the authorizer reads. It may already be gone (TTL, or a
    // create that died between its two writes); the listing is marked either way.
    try {
      await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: tokenKey(String(listing.token_hash)),
          ...update,
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
    const result = await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: listingKey(tenant, tokenId),
        ...update,
        ReturnValues: 'ALL_NEW',
      }),
    );
    return toInfo(result.Attributes ?? listing);
  }

  /**
   * Checks a presented token. The lookup is by hash, so no secret is ever compared here and there
   * is nothing to compare in constant time: a wrong token simply hashes to an item that does not
   * exist. Expiry and revocation are checked on every call (TTL removal is lazy).
   */
  async verify(token: string, now = new Date()): Promise<TokenCheck> {
    if (!TOKEN_PATTERN.test(token)) return { ok: false, reason: 'malformed' };
    const item = await this.get(tokenKey(hashToken(token)));
    if (!item) return { ok: false, reason: 'unknown' };
    const info = toInfo(item);
    if (info.revoked_at) return { ok: false, reason: 'revoked', token_id: info.token_id };
    if (info.expires_at && !(Date.parse(info.expires_at) > now.getTime()))
      return { ok: false, reason: 'expired', token_id: info.token_id };
    if (!TENANT_PATTERN.test(info.tenant)) return { ok: false, reason: 'unknown', token_id: info.token_id };
    return { ok: true, token: info };
  }

  private ttlAfter(time: Date): number {
    return Math.floor((time.getTime() + this.retentionMs) / 1000);
  }

  private async put(item: Item): Promise<void> {
    await this.client.send(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        // Ids and hashes are random; a collision must fail loudly, never overwrite.
        ConditionExpression: 'attribute_not_exists(#pk)',
        ExpressionAttributeNames: { '#pk': PARTITION_KEY },
      }),
    );
  }

  private async get(key: Item): Promise<Item | null> {
    const result = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return result.Item ?? null;
  }
}

function checkTenant(tenant: string): void {
  if (!TENANT_PATTERN.test(tenant)) {
    throw new InvalidRequestError(
      `tenant must be 1-128 characters of A-Z a-z 0-9 _ . @ : - starting with a letter or digit, got "${tenant}"`,
    );
  }
}

function tokenKey(hash: string): Item {
  return { [PARTITION_KEY]: `TOKEN#${hash}`, [SORT_KEY]: TOKEN_SORT_KEY };
}

function listingPartition(tenant: string): string {
  // The tenant ends the key, so no separator inside it can make two tenants share a partition.
  return `TOKENS#${tenant}`;
}

function listingKey(tenant: string, tokenId: string): Item {
  return { [PARTITION_KEY]: listingPartition(tenant), [SORT_KEY]: tokenId };
}

function toInfo(item: Item): TokenInfo {
  const scopes = Array.isArray(item.scopes) ? (item.scopes as unknown[]) : [];
  return {
    token_id: String(item.token_id),
    tenant: String(item.tenant),
    scopes: TOKEN_SCOPES.filter((s) => scopes.includes(s)),
    description: typeof item.description === 'string' ? item.description : null,
    created_at: String(item.created_at),
    expires_at: typeof item.expires_at_iso === 'string' ? item.expires_at_iso : null,
    revoked_at: typeof item.revoked_at === 'string' ? item.revoked_at : null,
  };
}
