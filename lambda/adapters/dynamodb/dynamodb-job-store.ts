/**
 * JobStore on one DynamoDB table (see table.ts for the layout). Every state write is a single
 * conditional write; no transactions, so the same code runs on DynamoDB and on dynalite.
 *
 * Index reads (list, listQueued, listRunning, findByRunnerRef) are eventually consistent, as every
 * GSI read is: a job that changed a moment ago may still show its old status there. Callers act on
 * such a job through conditional updates, which read and write the base item consistently.
 *
 * Over 500 lines on purpose: it is one port's one adapter, and what it knows is one piece of
 * knowledge (the item layout, its conditional writes, the queue and idempotency items and the
 * indexes that read them); split, each part would have to know the layout the others write.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, InvalidRequestError, NotFoundError, StateConflictError } from '../../core/errors.ts';
import { isTerminal, type JobChanges, type JobRecord, type JobStatus } from '../../core/job.ts';
import type { IdempotencyClaim, JobStore, ListJobsQuery, Page } from '../../core/ports.ts';
import { jobIdTimeBound } from '../../core/ids.ts';
import { SETTINGS } from '../../core/settings.ts';
import {
  IDEMPOTENCY_SORT_KEY,
  INDEXES,
  PARTITION_KEY,
  QUEUE_PARTITION,
  SLOTS_KEY,
  SORT_KEY,
  TTL_ATTRIBUTE,
  idempotencyPartitionKey,
  queueSortKey,
  statusSortKey,
  tenantPartitionKey,
  type IndexDefinition,
  isConditionFailure,
  jobKey,
  sendConditional,
} from './table.ts';

/** Options for {@link DynamoDbJobStore}. */
export interface DynamoDbJobStoreOptions {
  /** Created once per process by the caller (default marshalling options: plain JS numbers). */
  client: DynamoDBDocumentClient;
  tableName: string;
  /** Days a terminal job (and an idempotency claim) is kept before DynamoDB TTL removes it (default: the retentionDays setting). */
  retentionDays?: number;
}

/**
 * Bounds the work of one list call: with a tag or created_before filter DynamoDB still reads (and
 * bills) the items the filter drops, so a rare tag could otherwise make one call read a tenant's
 * whole history. Past this many Query pages the call returns what it has plus a cursor.
 */
export const MAX_QUERY_PAGES_PER_LIST = 5;
/** Items read per Query page when a filter is set (a page stays well under DynamoDB's 1 MB). */
const FILTERED_PAGE_ITEMS = 100;

const DAY_SECONDS = 86_400;

/** Every JobRecord field; `satisfies` makes adding a field to JobRecord a compile error here. */
const JOB_FIELDS = {
  job_id: true,
  tenant: true,
  status: true,
  stage: true,
  notebook: true,
  parameters: true,
  kernel: true,
  language: true,
  progress: true,
  created_at: true,
  started_at: true,
  updated_at: true,
  ended_at: true,
  timeout_seconds: true,
  cell_timeout_seconds: true,
  deadline_at: true,
  priority: true,
  tags: true,
  attempt: true,
  cpu: true,
  memory: true,
  output_uri: true,
  output_saved: true,
  input_parameterized: true,
  input_files: true,
  secrets: true,
  redact_parameters: true,
  error: true,
  attempts: true,
  launch_attempts: true,
  launch_retry_at: true,
  launch_deadline_at: true,
  last_launch_error: true,
  launch_generation: true,
  runner_ref: true,
  idempotency_key: true,
  request_hash: true,
} as const satisfies Record<keyof JobRecord, true>;

const CHANGE_FIELDS = {
  status: true,
  stage: true,
  progress: true,
  started_at: true,
  ended_at: true,
  deadline_at: true,
  error: true,
  runner_ref: true,
  attempt: true,
  updated_at: true,
  output_saved: true,
  attempts: true,
  launch_attempts: true,
  launch_retry_at: true,
  launch_deadline_at: true,
  last_launch_error: true,
  launch_generation: true,
  priority: true,
} as const satisfies Record<keyof JobChanges, true>;

type Item = Record<string, unknown>;

/** DynamoDB implementation of the {@link JobStore} port. */
export class DynamoDbJobStore implements JobStore {
  private readonly client: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly retentionSeconds: number;

  constructor(options: DynamoDbJobStoreOptions) {
    const retentionDays = options.retentionDays ?? SETTINGS.retentionDays.default;
    if (!(retentionDays > 0)) throw new RangeError(`retentionDays must be positive, got ${retentionDays}`);
    this.client = options.client;
    this.tableName = options.tableName;
    this.retentionSeconds = Math.round(retentionDays * DAY_SECONDS);
  }

  async create(job: JobRecord): Promise<void> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: this.toItem(job),
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY },
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) {
        throw new ConflictError(`job ${job.job_id} already exists`, { job_id: job.job_id });
      }
      throw error;
    }
  }

  async get(jobId: string): Promise<JobRecord | null> {
    const item = await this.getItem(jobKey(jobId));
    return item ? toRecord(item) : null;
  }

  async update(
    jobId: string,
    from: readonly JobStatus[],
    changes: JobChanges,
    attempt?: number,
  ): Promise<JobRecord> {
    if (from.length === 0) throw new Error('update needs at least one expected status');
    const expr = new Expression();
    const sets: string[] = [];
    const removes: string[] = [];
    for (const [field, value] of Object.entries(changes)) {
      if (!Object.hasOwn(CHANGE_FIELDS, field)) throw new Error(`update cannot change ${field}`);
      if (value === undefined) continue;
      sets.push(`${expr.name(field)} = ${expr.value(clean(value))}`);
    }
    const set = (attribute: string, value: unknown) =>
      sets.push(`${expr.name(attribute)} = ${expr.value(value)}`);
    const remove = (...attributes: string[]) => removes.push(...attributes.map((a) => expr.name(a)));

    // Index keys move with the fields they mirror, in the same write, so an index never lags the item.
    const status = changes.status;
    if (status !== undefined) {
      set(INDEXES.byTenantStatus.sortKey, statusSortKey(status, jobId));
      if (status === 'queued') {
        // Back into the queue (a deferred launch, a requeued attempt): the queue key needs the
        // priority, which such a change carries; it keeps its place by its id (its age).
        if (from.some((s) => s !== 'queued')) {
          if (changes.priority === undefined)
            throw new Error('a job re-entering the queue needs its priority');
          set(INDEXES.queue.partitionKey, QUEUE_PARTITION);
          set(INDEXES.queue.sortKey, queueSortKey(changes.priority, jobId));
          set(INDEXES.active.partitionKey, status);
        }
      } else {
        remove(INDEXES.queue.partitionKey, INDEXES.queue.sortKey);
        if (isTerminal(status)) {
          remove(INDEXES.active.partitionKey);
          set(TTL_ATTRIBUTE, this.expiresAt(changes.ended_at ?? changes.updated_at ?? null));
        } else {
          set(INDEXES.active.partitionKey, status);
        }
      }
    }
    if (changes.runner_ref !== undefined) {
      if (changes.runner_ref === null) remove(INDEXES.byRunner.partitionKey);
      else set(INDEXES.byRunner.partitionKey, changes.runner_ref);
    }

    if (sets.length === 0 && removes.length === 0) {
      // Nothing to write: a consistent read answers the same question without a write.
      const current = await this.getItem(jobKey(jobId));
      if (!current) throw new NotFoundError(`job ${jobId} not found`, { job_id: jobId });
      const record = toRecord(current);
      if (!from.includes(record.status) || (attempt !== undefined && record.attempt !== attempt))
        throw new StateConflictError(record);
      return record;
    }

    const updateExpression = [
      sets.length > 0 ? `SET ${sets.join(', ')}` : '',
      removes.length > 0 ? `REMOVE ${removes.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join(' ');
    const condition = `attribute_exists(${expr.name(PARTITION_KEY)}) AND ${expr.name('status')} IN (${from
      .map((s) => expr.value(s))
      .join(', ')})${attempt === undefined ? '' : ` AND ${expr.name('attempt')} = ${expr.value(attempt)}`}`;
    try {
      const result = await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: jobKey(jobId),
          UpdateExpression: updateExpression,
          ConditionExpression: condition,
          ...expr.attributes(),
          ReturnValues: 'ALL_NEW',
          // DynamoDB hands back the item that failed the condition, so a lost race costs no read.
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      if (!result.Attributes) throw new Error(`UpdateItem on job ${jobId} returned no attributes`);
      return toRecord(result.Attributes);
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // dynalite (and older endpoints) ignore ReturnValuesOnConditionCheckFailure: read instead.
      const current = error.Item ? fromAttributeMap(error.Item) : await this.getItem(jobKey(jobId));
      if (!current) throw new NotFoundError(`job ${jobId} not found`, { job_id: jobId });
      throw new StateConflictError(toRecord(current));
    }
  }

  async delete(jobId: string): Promise<void> {
    await this.client.send(new DeleteCommand({ TableName: this.tableName, Key: jobKey(jobId) }));
  }

  async list(query: ListJobsQuery): Promise<Page<JobRecord>> {
    if (!Number.isInteger(query.limit) || query.limit < 1) {
      throw new InvalidRequestError(`limit must be a positive integer, got ${query.limit}`);
    }
    const index: IndexDefinition = query.status ? INDEXES.byTenantStatus : INDEXES.byTenant;
    const tenantKey = tenantPartitionKey(query.tenant);
    const statusPrefix = query.status ? statusSortKey(query.status, '') : null;
    const expr = new Expression();
    let keyCondition = `${expr.name(index.partitionKey)} = ${expr.value(tenantKey)}`;
    // created_before is a key condition: job ids begin with their creation time, so "created before
    // T" is "id below the bound for T" and the query reads only those items.
    const bound = query.created_before === undefined ? null : jobIdTimeBound(new Date(query.created_before));
    if (statusPrefix) {
      const sortKey = expr.name(INDEXES.byTenantStatus.sortKey);
      keyCondition += bound
        ? ` AND ${sortKey} BETWEEN ${expr.value(statusPrefix)} AND ${expr.value(statusPrefix + bound)}`
        : ` AND begins_with(${sortKey}, ${expr.value(statusPrefix)})`;
    } else if (bound) {
      keyCondition += ` AND ${expr.name(INDEXES.byTenant.sortKey)} < ${expr.value(bound)}`;
    }
    // A tag filter is applied after DynamoDB reads the items, so dropped items still cost reads; the
    // page cap below keeps that bounded.
    const filters: string[] = [];
    if (query.tag) {
      filters.push(`${expr.name('tags')}.${expr.name(query.tag.key)} = ${expr.value(query.tag.value)}`);
    }
    const filtered = filters.length > 0;
    let startKey = query.cursor ? decodeCursor(query.cursor, index, tenantKey, statusPrefix) : undefined;

    const items: Item[] = [];
    for (let pages = 0; pages < MAX_QUERY_PAGES_PER_LIST; pages++) {
      const wanted = query.limit - items.length;
      // One item more than wanted tells "there is more" from "the index ended" without an extra call.
      const result = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: index.name,
          KeyConditionExpression: keyCondition,
          ...(filtered ? { FilterExpression: filters.join(' AND ') } : {}),
          ...expr.attributes(),
          ScanIndexForward: false,
          Limit: filtered ? Math.max(wanted + 1, FILTERED_PAGE_ITEMS) : wanted + 1,
          ExclusiveStartKey: startKey,
        }),
      );
      const page = result.Items ?? [];
      if (page.length > wanted) {
        // More matches than room: stop after the last item we return and resume right after it.
        items.push(...page.slice(0, wanted));
        const last = items[items.length - 1];
        if (!last) throw new Error('list page overflow without a last item'); // wanted >= 1
        return { items: items.map(toRecord), next_cursor: encodeCursor(keyOf(last, index)) };
      }
      items.push(...page);
      startKey = result.LastEvaluatedKey;
      if (!startKey || items.length === query.limit) break;
    }
    // A short page with a cursor means the page cap was hit, not the end: only a null cursor ends.
    return { items: items.map(toRecord), next_cursor: startKey ? encodeCursor(startKey) : null };
  }

  async listQueued(limit: number): Promise<JobRecord[]> {
    if (!Number.isInteger(limit)) throw new RangeError(`limit must be an integer, got ${limit}`);
    if (limit < 1) return [];
    return this.queryIndex(INDEXES.queue, QUEUE_PARTITION, limit);
  }

  async countQueuedAhead(job: JobRecord): Promise<number> {
    // A COUNT over the queue keys below this job's: reads only the jobs ahead of it.
    return this.countQueue(queueSortKey(job.priority, job.job_id));
  }

  async countQueued(): Promise<number> {
    return this.countQueue();
  }

  /** COUNT on the queue index (keys only, no items returned), below `sortBelow` when given. */
  private async countQueue(sortBelow?: string): Promise<number> {
    let count = 0;
    let startKey: Record<string, unknown> | undefined;
    do {
      const result = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: INDEXES.queue.name,
          KeyConditionExpression: sortBelow === undefined ? '#k = :k' : '#k = :k AND #s < :s',
          ExpressionAttributeNames: {
            '#k': INDEXES.queue.partitionKey,
            ...(sortBelow === undefined ? {} : { '#s': INDEXES.queue.sortKey }),
          },
          ExpressionAttributeValues: {
            ':k': QUEUE_PARTITION,
            ...(sortBelow === undefined ? {} : { ':s': sortBelow }),
          },
          Select: 'COUNT',
          ExclusiveStartKey: startKey,
        }),
      );
      count += result.Count ?? 0;
      startKey = result.LastEvaluatedKey;
    } while (startKey);
    return count;
  }

  async listRunning(): Promise<JobRecord[]> {
    // A Query on the sparse active index: cost follows the number of running jobs, not the table.
    return this.queryIndex(INDEXES.active, 'running', Number.POSITIVE_INFINITY);
  }

  /**
   * The job a runner ref (ECS task ARN, local pid ref) belongs to, or null: how a stopped warm
   * runner task, which was not started for a job, is traced to the job it claimed.
   */
  async findByRunnerRef(runnerRef: string): Promise<JobRecord | null> {
    const result = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: INDEXES.byRunner.name,
        KeyConditionExpression: '#k = :k',
        ExpressionAttributeNames: { '#k': INDEXES.byRunner.partitionKey },
        ExpressionAttributeValues: { ':k': runnerRef },
        Limit: 1,
      }),
    );
    const key = result.Items?.[0];
    if (!key) return null;
    // The index projects keys only; read the job itself, consistently.
    const item = await this.getItem({ [PARTITION_KEY]: key[PARTITION_KEY], [SORT_KEY]: key[SORT_KEY] });
    return item && item.runner_ref === runnerRef ? toRecord(item) : null;
  }

  async claimIdempotencyKey(
    tenant: string,
    key: string,
    jobId: string,
    requestHash: string,
    now = new Date(),
  ): Promise<IdempotencyClaim> {
    const itemKey = idempotencyKey(tenant, key);
    // A claim that vanishes between our failed put and our read (released meanwhile) is retried.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.client.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { ...itemKey, ...this.claimAttributes(jobId, requestHash, now) },
            // TTL deletes lazily (up to days late), so an expired claim is treated as free here.
            ConditionExpression: 'attribute_not_exists(#pk) OR #exp < :now',
            ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#exp': TTL_ATTRIBUTE },
            ExpressionAttributeValues: { ':now': epochSeconds(now) },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return { job_id: jobId, request_hash: requestHash, created_at: now.toISOString(), created: true };
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
        const existing = error.Item ? fromAttributeMap(error.Item) : await this.getItem(itemKey);
        if (existing) {
          return {
            job_id: String(existing.job_id),
            request_hash: String(existing.request_hash),
            created_at: String(existing.created_at),
            created: false,
          };
        }
      }
    }
    throw new ConflictError(`idempotency key "${key}" is being claimed and released concurrently; retry`, {
      idempotency_key: key,
    });
  }

  async replaceIdempotencyKey(
    tenant: string,
    key: string,
    staleJobId: string,
    jobId: string,
    requestHash: string,
    now = new Date(),
  ): Promise<boolean> {
    return sendConditional(
      this.client,
      new PutCommand({
        TableName: this.tableName,
        Item: { ...idempotencyKey(tenant, key), ...this.claimAttributes(jobId, requestHash, now) },
        // Only the stale claim we saw may be replaced; anyone else who replaced it first wins.
        ConditionExpression: '#job = :stale',
        ExpressionAttributeNames: { '#job': 'job_id' },
        ExpressionAttributeValues: { ':stale': staleJobId },
      }),
    );
  }

  async releaseIdempotencyKey(tenant: string, key: string, jobId: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: idempotencyKey(tenant, key),
          // Only our own claim: the key may have been taken over by another request meanwhile.
          ConditionExpression: '#job = :job',
          ExpressionAttributeNames: { '#job': 'job_id' },
          ExpressionAttributeValues: { ':job': jobId },
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
  }

  async acquireSlot(jobId: string, limit: number): Promise<boolean> {
    if (!Number.isInteger(limit)) throw new RangeError(`limit must be an integer, got ${limit}`);
    const expr = new Expression();
    const holders = expr.name('holders');
    const mine = expr.value(jobId);
    // A holder re-acquiring always succeeds (idempotent, even if the limit was lowered since);
    // a newcomer needs a free slot. ADD on a string set is a no-op for an existing member.
    const condition =
      limit >= 1
        ? `attribute_not_exists(${holders}) OR size(${holders}) < ${expr.value(limit)} OR contains(${holders}, ${mine})`
        : `contains(${holders}, ${mine})`;
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: slotsKey(),
        UpdateExpression: `ADD ${holders} ${expr.value(new Set([jobId]))}`,
        ConditionExpression: condition,
        ...expr.attributes(),
      }),
    );
  }

  async releaseSlot(jobId: string): Promise<void> {
    // DELETE of a non-member is a no-op, so releasing twice (crash + sweep) is harmless.
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: slotsKey(),
        UpdateExpression: 'DELETE #h :j',
        ExpressionAttributeNames: { '#h': 'holders' },
        ExpressionAttributeValues: { ':j': new Set([jobId]) },
      }),
    );
  }

  async slotHolders(): Promise<string[]> {
    const item = await this.getItem(slotsKey());
    const holders = item?.holders;
    // DynamoDB drops an emptied set attribute, so a missing attribute means no holders.
    return holders instanceof Set ? [...(holders as Set<string>)].sort() : [];
  }

  private async getItem(key: Item): Promise<Item | null> {
    const result = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return result.Item ?? null;
  }

  private toItem(job: JobRecord): Item {
    const item: Item = {};
    // Only the declared fields: an object carrying extra properties must not write stray attributes
    // (or overwrite a key attribute).
    for (const field of Object.keys(JOB_FIELDS) as (keyof JobRecord)[]) item[field] = clean(job[field]);
    Object.assign(item, jobKey(job.job_id), {
      // User-supplied JSON: stored as text because DynamoDB numbers cannot hold every JSON number
      // (1e200 is out of range, 1e20 reads back as a BigInt), and text round-trips exactly.
      parameters: JSON.stringify(job.parameters),
      [INDEXES.byTenant.partitionKey]: tenantPartitionKey(job.tenant),
      [INDEXES.byTenantStatus.sortKey]: statusSortKey(job.status, job.job_id),
    });
    if (job.status === 'queued') {
      item[INDEXES.queue.partitionKey] = QUEUE_PARTITION;
      item[INDEXES.queue.sortKey] = queueSortKey(job.priority, job.job_id);
    }
    if (!isTerminal(job.status)) item[INDEXES.active.partitionKey] = job.status;
    else item[TTL_ATTRIBUTE] = this.expiresAt(job.ended_at ?? job.updated_at);
    if (job.runner_ref !== null) item[INDEXES.byRunner.partitionKey] = job.runner_ref;
    return item;
  }

  private expiresAt(endedAt: string | null): number {
    const ended = endedAt === null ? Number.NaN : Date.parse(endedAt);
    const base = Number.isNaN(ended) ? Date.now() : ended;
    return Math.floor(base / 1000) + this.retentionSeconds;
  }

  private claimAttributes(jobId: string, requestHash: string, now: Date): Item {
    return {
      job_id: jobId,
      request_hash: requestHash,
      created_at: now.toISOString(),
      [TTL_ATTRIBUTE]: epochSeconds(now) + this.retentionSeconds,
    };
  }

  /** Queries one index partition in ascending key order until `limit` items or its end. */
  private async queryIndex(index: IndexDefinition, partition: string, limit: number): Promise<JobRecord[]> {
    const records: JobRecord[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const input: QueryCommandInput = {
        TableName: this.tableName,
        IndexName: index.name,
        KeyConditionExpression: '#k = :k',
        ExpressionAttributeNames: { '#k': index.partitionKey },
        ExpressionAttributeValues: { ':k': partition },
        ExclusiveStartKey: startKey,
      };
      if (Number.isFinite(limit)) input.Limit = limit - records.length;
      const result = await this.client.send(new QueryCommand(input));
      records.push(...(result.Items ?? []).map(toRecord));
      startKey = result.LastEvaluatedKey;
    } while (startKey && records.length < limit);
    return records;
  }
}

/** Placeholder allocation for expressions: every name and value gets `#nN` / `:vN`, used once. */
class Expression {
  private readonly names: Record<string, string> = {};
  private readonly nameIds = new Map<string, string>();
  private readonly values: Record<string, unknown> = {};
  private valueCount = 0;

  name(attribute: string): string {
    let id = this.nameIds.get(attribute);
    if (!id) {
      id = `#n${this.nameIds.size}`;
      this.nameIds.set(attribute, id);
      this.names[id] = attribute;
    }
    return id;
  }

  value(value: unknown): string {
    const id = `:v${this.valueCount++}`;
    this.values[id] = value;
    return id;
  }

  attributes(): { ExpressionAttributeNames?: Record<string, string>; ExpressionAttributeValues?: Item } {
    // DynamoDB rejects empty maps, so leave out whichever is empty.
    return {
      ...(this.nameIds.size > 0 ? { ExpressionAttributeNames: this.names } : {}),
      ...(this.valueCount > 0 ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

function idempotencyKey(tenant: string, key: string): Item {
  return { [PARTITION_KEY]: idempotencyPartitionKey(tenant, key), [SORT_KEY]: IDEMPOTENCY_SORT_KEY };
}

function slotsKey(): Item {
  return { [PARTITION_KEY]: SLOTS_KEY, [SORT_KEY]: SLOTS_KEY };
}

function epochSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/** Maps an item back to exactly the JobRecord fields, leaving out keys, index attributes and TTL. */
function toRecord(item: Item): JobRecord {
  const record: Record<string, unknown> = {};
  for (const field of Object.keys(JOB_FIELDS)) {
    if (item[field] !== undefined) record[field] = item[field];
  }
  if (typeof record.parameters === 'string') record.parameters = JSON.parse(record.parameters) as unknown;
  return record as unknown as JobRecord;
}

/**
 * Drops undefined object members (and turns undefined array entries into null), as JSON would, so
 * an optional field left undefined never reaches the marshaller, whatever its options. Objects go
 * to the marshaller as Maps: it tells an object's kind by `value.constructor.name`, so a plain
 * object holding a key "constructor" (a tag, a parameter value) would otherwise be refused, or
 * with {"constructor": {"name": "Set"}} written as something else.
 */
function clean(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((entry) => (entry === undefined ? null : clean(entry)));
  if (value !== null && typeof value === 'object' && isPlainObject(value)) {
    const out = new Map<string, unknown>();
    for (const [key, entry] of Object.entries(value)) if (entry !== undefined) out.set(key, clean(entry));
    return out;
  }
  return value;
}

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Converts a raw attribute map, as found on ConditionalCheckFailedException.Item: the document
 * client unmarshalls responses but not errors.
 */
function fromAttributeMap(map: Record<string, AttributeValue>): Item {
  const out: Item = {};
  for (const [key, value] of Object.entries(map)) out[key] = fromAttributeValue(value);
  return out;
}

function fromAttributeValue(value: AttributeValue): unknown {
  if (value.S !== undefined) return value.S;
  if (value.N !== undefined) return Number(value.N);
  if (value.BOOL !== undefined) return value.BOOL;
  if (value.NULL !== undefined) return null;
  if (value.M !== undefined) return fromAttributeMap(value.M);
  if (value.L !== undefined) return value.L.map(fromAttributeValue);
  if (value.SS !== undefined) return new Set(value.SS);
  if (value.NS !== undefined) return new Set(value.NS.map(Number));
  if (value.B !== undefined) return value.B;
  if (value.BS !== undefined) return new Set(value.BS);
  throw new Error(`unsupported attribute value: ${Object.keys(value).join(', ')}`);
}

/** The index key of an item, as DynamoDB's LastEvaluatedKey would have it: table keys + index keys. */
function keyOf(item: Item, index: IndexDefinition): Record<string, unknown> {
  const key: Record<string, unknown> = { [PARTITION_KEY]: item[PARTITION_KEY], [SORT_KEY]: item[SORT_KEY] };
  key[index.partitionKey] = item[index.partitionKey];
  if (index.sortKey) key[index.sortKey] = item[index.sortKey];
  return key;
}

function encodeCursor(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Decodes a list cursor and checks it is a key of this query's index and partition, so a cursor
 * from another tenant's or another status's listing cannot steer this query elsewhere.
 */
function decodeCursor(
  cursor: string,
  index: IndexDefinition,
  tenantKey: string,
  statusPrefix: string | null,
): Record<string, string> {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidRequestError('cursor is malformed');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InvalidRequestError('cursor is malformed');
  }
  const key = parsed as Record<string, unknown>;
  const expected = [PARTITION_KEY, SORT_KEY, index.partitionKey, ...(index.sortKey ? [index.sortKey] : [])];
  const entries = Object.entries(key);
  if (entries.some(([, value]) => typeof value !== 'string'))
    throw new InvalidRequestError('cursor is malformed');
  const matches =
    entries.length === expected.length &&
    expected.every((name) => typeof key[name] === 'string') &&
    key[index.partitionKey] === tenantKey &&
    (statusPrefix === null || String(key[INDEXES.byTenantStatus.sortKey]).startsWith(statusPrefix));
  if (!matches) throw new InvalidRequestError('cursor does not belong to this listing');
  return key as Record<string, string>;
}
