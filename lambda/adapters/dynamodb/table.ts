/**
 * The single DynamoDB table, defined in one place: key attributes, indexes, the TTL attribute and the
 * key encodings. The store, local mode, tests and the CDK stack all read these names from
 * here, so a renamed attribute cannot drift between the code that writes items and the table that
 * indexes them.
 *
 * Item kinds (pk / sk):
 * - job:         `JOB#<job_id>` / `JOB`            the JobRecord fields plus the index keys below
 * - idempotency: `IDEMP#<tenant>#<key>` / `IDEMP`  job_id, request_hash, created_at, expires_at
 * - slots:       `SLOTS` / `SLOTS`                 holders (string set of job ids)
 * - token:       `TOKEN#<sha256>` / `TOKEN`        an API token's hash, tenant, scopes (token-store.ts)
 * - token list:  `TOKENS#<tenant>` / `<token_id>`  a tenant's tokens, listed by Query
 * - warm runner: `WARM#<kernel>` / `<runner id>`     an AWS warm runner's state (warm-runners.ts)
 *
 * Every index key below is a dedicated attribute that only job items carry, and the sparse ones are
 * present only while they apply (queue: while queued; active: while not terminal; runner: while a
 * runner ref is set). That keeps idempotency, slot and token items out of every index, and lets one
 * UpdateItem move a job between index partitions without reading it first.
 */
import {
  DescribeTableCommand,
  CreateTableCommand,
  type AttributeValue,
  type DynamoDBClient,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import type { DeleteCommand, DynamoDBDocumentClient, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';

/** Table primary key attributes (both strings). */
export const PARTITION_KEY = 'pk';
export const SORT_KEY = 'sk';

/** DynamoDB TTL attribute: epoch seconds, set on terminal jobs and idempotency claims. */
export const TTL_ATTRIBUTE = 'expires_at';

/** One global secondary index: its key attributes (all strings) and what it projects. */
export interface IndexDefinition {
  readonly name: string;
  readonly partitionKey: string;
  readonly sortKey?: string;
  readonly projection: 'ALL' | 'KEYS_ONLY';
}

/**
 * The global secondary indexes. Job ids are time-sortable, so sorting by job id sorts by creation
 * time: a descending Query is newest first.
 */
export const INDEXES = {
  /** A tenant's jobs, newest first: tenant_pk = `TENANT#<tenant>`, sort key = job_id. */
  byTenant: { name: 'by-tenant', partitionKey: 'tenant_pk', sortKey: 'job_id', projection: 'ALL' },
  /**
   * A tenant's jobs in one status, newest first: same partition, sort key status_sk =
   * `<status>#<job_id>` queried with begins_with. Putting the status in the sort key (not the
   * partition key) means a status change rewrites it from the job id alone, with no tenant lookup.
   */
  byTenantStatus: {
    name: 'by-tenant-status',
    partitionKey: 'tenant_pk',
    sortKey: 'status_sk',
    projection: 'ALL',
  },
  /**
   * The dispatch queue (sparse: only queued jobs). queue_pk = `QUEUE`, queue_sk =
   * `<1000 - priority, 4 digits>#<job_id>`: an ascending Query gives the highest priority first and
   * FIFO within a priority. One partition is fine: it holds only waiting jobs.
   */
  queue: { name: 'queue', partitionKey: 'queue_pk', sortKey: 'queue_sk', projection: 'ALL' },
  /** Non-terminal jobs across tenants (sparse): active_pk = `queued` | `running`, sort key = job_id. */
  active: { name: 'active', partitionKey: 'active_pk', sortKey: 'job_id', projection: 'ALL' },
  /** Runner ref (ECS task ARN, local pid) -> job (sparse). Keys only: the caller then reads the job. */
  byRunner: { name: 'by-runner', partitionKey: 'runner_pk', projection: 'KEYS_ONLY' },
} as const satisfies Record<string, IndexDefinition>;

/** Every attribute the store adds to a job item on top of the JobRecord fields. */
export const INDEX_ATTRIBUTES = [
  PARTITION_KEY,
  SORT_KEY,
  'tenant_pk',
  'status_sk',
  'queue_pk',
  'queue_sk',
  'active_pk',
  'runner_pk',
  TTL_ATTRIBUTE,
] as const;

export const JOB_SORT_KEY = 'JOB';
export const IDEMPOTENCY_SORT_KEY = 'IDEMP';
export const SLOTS_KEY = 'SLOTS';
export const QUEUE_PARTITION = 'QUEUE';

/** Priorities the queue sort key can order (the API validates the same range). */
export const MIN_PRIORITY = -1000;
export const MAX_PRIORITY = 1000;

/**
 * Escapes `%` and `#` in a tenant so `#` stays an unambiguous separator: without it tenant `a#b`
 * with key `c` and tenant `a` with key `b#c` would share one idempotency item.
 */
function escapeTenant(tenant: string): string {
  return tenant.replaceAll('%', '%25').replaceAll('#', '%23');
}

/** Partition key of a job item (also usable in an IAM `dynamodb:LeadingKeys` condition). */
export function jobPartitionKey(jobId: string): string {
  return `JOB#${jobId}`;
}

/** The primary key of a job item. */
export function jobKey(jobId: string): Record<string, string> {
  return { [PARTITION_KEY]: jobPartitionKey(jobId), [SORT_KEY]: JOB_SORT_KEY };
}

export function tenantPartitionKey(tenant: string): string {
  return `TENANT#${escapeTenant(tenant)}`;
}

export function statusSortKey(status: string, jobId: string): string {
  return `${status}#${jobId}`;
}

/** Queue sort key; throws RangeError for a priority outside [-1000, 1000] or not an integer. */
export function queueSortKey(priority: number, jobId: string): string {
  if (!Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
    throw new RangeError(
      `priority must be an integer in [${MIN_PRIORITY}, ${MAX_PRIORITY}], got ${priority}`,
    );
  }
  // Inverted so ascending order is descending priority; fixed width so strings sort as numbers.
  return `${String(MAX_PRIORITY - priority).padStart(4, '0')}#${jobId}`;
}

export function idempotencyPartitionKey(tenant: string, key: string): string {
  return `IDEMP#${escapeTenant(tenant)}#${key}`;
}

/** The indexes as a list, for code that iterates them (table creation, the CDK stack). */
export const ALL_INDEXES: readonly IndexDefinition[] = Object.values(INDEXES);

function allKeyAttributes(): string[] {
  const names = new Set<string>([PARTITION_KEY, SORT_KEY]);
  for (const index of ALL_INDEXES) {
    names.add(index.partitionKey);
    if (index.sortKey) names.add(index.sortKey);
  }
  return [...names];
}

const POLL_MS = 100;
const ACTIVE_TIMEOUT_MS = 120_000;

/**
 * Creates the job table (on demand billing, all indexes) unless it exists, then waits until the
 * table and its indexes are ACTIVE. Idempotent; for local mode and tests (AWS gets the table from
 * the CDK stack, which also enables TTL and PITR: dynalite has no UpdateTimeToLive, so it is not
 * attempted here). Throws if an existing table lacks an index this code queries, rather than
 * failing later on the first list.
 */
export async function createJobTable(client: DynamoDBClient, tableName: string): Promise<void> {
  let table = await describe(client, tableName);
  if (!table) {
    try {
      await client.send(
        new CreateTableCommand({
          TableName: tableName,
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: allKeyAttributes().map((name) => ({
            AttributeName: name,
            AttributeType: 'S',
          })),
          KeySchema: [
            { AttributeName: PARTITION_KEY, KeyType: 'HASH' },
            { AttributeName: SORT_KEY, KeyType: 'RANGE' },
          ],
          GlobalSecondaryIndexes: ALL_INDEXES.map((index) => ({
            IndexName: index.name,
            KeySchema: [
              { AttributeName: index.partitionKey, KeyType: 'HASH' as const },
              ...(index.sortKey ? [{ AttributeName: index.sortKey, KeyType: 'RANGE' as const }] : []),
            ],
            Projection: { ProjectionType: index.projection },
          })),
        }),
      );
    } catch (error) {
      // Another process created it between our describe and create: wait for theirs.
      if (!(error instanceof Error && error.name === 'ResourceInUseException')) throw error;
    }
  }
  const deadline = Date.now() + ACTIVE_TIMEOUT_MS;
  for (;;) {
    table = await describe(client, tableName);
    if (table && isActive(table)) break;
    if (Date.now() > deadline) throw new Error(`table ${tableName} did not become ACTIVE within 120 s`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const present = new Set((table.GlobalSecondaryIndexes ?? []).map((index) => index.IndexName));
  const missing = ALL_INDEXES.filter((index) => !present.has(index.name));
  if (missing.length > 0) {
    throw new Error(
      `table ${tableName} exists but lacks the indexes ${missing.map((index) => index.name).join(', ')}; ` +
        'it was created by an older version: delete it (or its data folder) and start again',
    );
  }
}

async function describe(client: DynamoDBClient, tableName: string): Promise<TableDescription | null> {
  try {
    const result = await client.send(new DescribeTableCommand({ TableName: tableName }));
    return result.Table ?? null;
  } catch (error) {
    if (error instanceof Error && error.name === 'ResourceNotFoundException') return null;
    throw error;
  }
}

function isActive(table: TableDescription): boolean {
  return (
    table.TableStatus === 'ACTIVE' &&
    (table.GlobalSecondaryIndexes ?? []).every((index) => index.IndexStatus === 'ACTIVE')
  );
}

export interface ConditionFailure extends Error {
  name: 'ConditionalCheckFailedException';
  Item?: Record<string, AttributeValue>;
}

/** The SDK's ConditionalCheckFailedException, recognised by name (not a message or an HTTP status). */
export function isConditionFailure(error: unknown): error is ConditionFailure {
  return error instanceof Error && error.name === 'ConditionalCheckFailedException';
}

/** Sends a conditional write: true when it applied, false when its condition failed. */
export async function sendConditional(
  client: DynamoDBDocumentClient,
  command: PutCommand | UpdateCommand | DeleteCommand,
): Promise<boolean> {
  try {
    await client.send(command as UpdateCommand);
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}
