/**
 * Warm runners in the job table (AWS warm pool; docs/architecture.md, "Warm runners (AWS)").
 *
 * Items: `WARM#<kernel>` / `<runner id>` (the runner's ECS task ARN, also its runner ref):
 * `state` idle | offered, `heartbeat_at` (epoch ms), `expires_at` (TTL, so a runner that died
 * unseen leaves nothing for long), and while offered `job_id`, `tenant`, `attempt`,
 * `offer_deadline` (epoch ms). The job item carries `warm_offer` (the runner it is offered to) while
 * an offer stands; it is no JobRecord field, so no view shows it.
 *
 * The job item decides the hand-off: the runner's claim (SET runner_ref) and the dispatcher's or
 * sweeper's withdrawal (REMOVE warm_offer) are both conditional on `warm_offer` naming the runner
 * and no runner being recorded, so exactly one of them succeeds. The claim is also conditional on
 * `running` at the offered attempt: a job cancelled (or requeued) while offered is never run.
 * The runner item only says whom to offer to, and tells the runner which job to claim.
 */
import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { JobRecord } from '../../core/job.ts';
import type { WarmRunners } from '../../core/ports.ts';
import { INDEXES, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, jobKey, sendConditional } from './table.ts';

/** The variable naming the warm pool's kernel (runner task and Lambdas; lib/warm-runners.ts). */
export const WARM_KERNEL_VARIABLE = 'NOTEBOOK_JOBS_WARM_KERNEL';
/** A kernel name fit for a key and an IAM condition: no wildcard, no separator. */
export const WARM_KERNEL_PATTERN = /^[\w.-]{1,100}$/;

/** Partition key of a kernel's warm runner items (also an IAM `dynamodb:LeadingKeys` value). */
export function warmPartitionKey(kernel: string): string {
  return `WARM#${kernel}`;
}

/** How often an idle runner refreshes its heartbeat. */
export const WARM_HEARTBEAT_MS = 10_000;
/** A runner whose heartbeat is older than this is not offered jobs (it may be gone). */
export const WARM_STALE_MS = 3 * WARM_HEARTBEAT_MS;
/** TTL of a runner item past its last heartbeat (DynamoDB deletes expired items within days). */
const WARM_TTL_SECONDS = 3600;

/** The job attribute naming the runner a job is offered to. */
const OFFER_ATTRIBUTE = 'warm_offer';

/** An offer as a runner reads it from its own item. */
export interface WarmOffer {
  job_id: string;
  tenant: string;
  attempt: number;
  offer_deadline: number;
}

/** A runner's own item. */
export interface WarmRunnerItem {
  runner_id: string;
  state: 'idle' | 'offered';
  heartbeat_at: number;
  offer: WarmOffer | null;
}

type Item = Record<string, unknown>;

export interface DynamoDbWarmRunnersOptions {
  client: DynamoDBDocumentClient;
  tableName: string;
  kernel: string;
}

/**
 * Both sides of the hand-off. The dispatcher side (the {@link WarmRunners} port) runs in the
 * Lambdas; the runner side (register, heartbeat, read, claim, release, remove) in a warm runner,
 * whose client for its own item is a session allowed only `WARM#<kernel>` items and whose claim is
 * made with its job's scoped session (container/runner/job-credentials.ts).
 */
export class DynamoDbWarmRunners implements WarmRunners {
  readonly kernel: string;
  private readonly client: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(options: DynamoDbWarmRunnersOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.kernel = options.kernel;
  }

  async offer(job: JobRecord, deadline: Date, now: Date): Promise<string | null> {
    const idle = await this.queryRunners(now, 'idle');
    // Dispatchers start at different runners, so two of them rarely race for the same one.
    const start = idle.length ? Math.floor(Math.random() * idle.length) : 0;
    for (let i = 0; i < idle.length; i++) {
      const runnerId = String(idle[(start + i) % idle.length]?.[SORT_KEY]);
      // The job first: a runner that sees its offer can then always find it on the job.
      if (!(await this.writeUnclaimedJob(job.job_id, job.attempt, runnerId, 'offer'))) return null; // the job moved on (cancelled)
      if (await this.reserve(runnerId, job, deadline, now)) return runnerId;
      await this.withdraw(job.job_id, runnerId); // another dispatcher took this runner
    }
    return null;
  }

  withdraw(jobId: string, runnerId: string): Promise<boolean> {
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: jobKey(jobId),
        UpdateExpression: 'REMOVE #offer',
        ConditionExpression: '#offer = :runner AND attribute_not_exists(#runnerPk)',
        ExpressionAttributeNames: { '#offer': OFFER_ATTRIBUTE, '#runnerPk': INDEXES.byRunner.partitionKey },
        ExpressionAttributeValues: { ':runner': runnerId },
      }),
    );
  }

  async expiredOffers(now: Date): Promise<Array<{ job_id: string; runner_id: string }>> {
    // Stale runners too: an offer whose runner died must still be withdrawn and launched.
    const offered = await this.queryRunners(now, 'offered', false);
    return offered
      .filter((item) => Number(item.offer_deadline) < now.getTime())
      .map((item) => ({ job_id: String(item.job_id), runner_id: String(item[SORT_KEY]) }));
  }

  async countIdle(now: Date): Promise<number> {
    return (await this.queryRunners(now, 'idle')).length;
  }

  // ---- the runner's side ----

  /** Registers an idle runner (or makes it idle again, fresh). */
  async register(runnerId: string, now: Date): Promise<void> {
    await this.client.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          ...this.runnerKey(runnerId),
          state: 'idle',
          heartbeat_at: now.getTime(),
          [TTL_ATTRIBUTE]: ttl(now),
        },
      }),
    );
  }

  /** Refreshes the heartbeat; false when the item is gone (the runner registers again). */
  heartbeat(runnerId: string, now: Date): Promise<boolean> {
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: this.runnerKey(runnerId),
        UpdateExpression: 'SET heartbeat_at = :now, #ttl = :ttl',
        ConditionExpression: 'attribute_exists(#pk)',
        ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#ttl': TTL_ATTRIBUTE },
        ExpressionAttributeValues: { ':now': now.getTime(), ':ttl': ttl(now) },
      }),
    );
  }

  /** The runner's own item (strongly consistent: an offer is seen as soon as it is made). */
  async read(runnerId: string): Promise<WarmRunnerItem | null> {
    const { Item: item } = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: this.runnerKey(runnerId), ConsistentRead: true }),
    );
    if (!item) return null;
    const offered = item.state === 'offered';
    return {
      runner_id: runnerId,
      state: offered ? 'offered' : 'idle',
      heartbeat_at: Number(item.heartbeat_at),
      offer: offered
        ? {
            job_id: String(item.job_id),
            tenant: String(item.tenant),
            attempt: Number(item.attempt),
            offer_deadline: Number(item.offer_deadline),
          }
        : null,
    };
  }

  /**
   * Takes the offered job: records this runner on it, only while the job is running at the offered
   * attempt, still offered to this runner, and has no runner. False when the offer was withdrawn,
   * the job was cancelled or moved on: the runner must not run it.
   */
  async claim(offer: WarmOffer, runnerId: string): Promise<boolean> {
    try {
      return await this.writeUnclaimedJob(offer.job_id, offer.attempt, runnerId, 'claim');
    } catch (error) {
      // The answer may have been lost after the write applied: the job says whether it is ours
      // (a claimed job whose runner thinks otherwise would wait for its deadline).
      const { Item: job } = await this.client.send(
        new GetCommand({ TableName: this.tableName, Key: jobKey(offer.job_id), ConsistentRead: true }),
      );
      if (job?.runner_ref === runnerId && job.status === 'running') return true;
      throw error;
    }
  }

  /** Back to idle after an offer that could not be claimed (only if it is still that offer). */
  release(runnerId: string, jobId: string, now: Date): Promise<boolean> {
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: this.runnerKey(runnerId),
        UpdateExpression:
          'SET #state = :idle, heartbeat_at = :now REMOVE job_id, tenant, attempt, offer_deadline',
        ConditionExpression: '#state = :offered AND job_id = :job',
        ExpressionAttributeNames: { '#state': 'state' },
        ExpressionAttributeValues: {
          ':idle': 'idle',
          ':offered': 'offered',
          ':job': jobId,
          ':now': now.getTime(),
        },
      }),
    );
  }

  /** Deregisters (the runner took a job or is stopping). */
  async remove(runnerId: string): Promise<void> {
    await this.client.send(new DeleteCommand({ TableName: this.tableName, Key: this.runnerKey(runnerId) }));
  }

  // ---- internals ----

  private runnerKey(runnerId: string): Item {
    return { [PARTITION_KEY]: warmPartitionKey(this.kernel), [SORT_KEY]: runnerId };
  }

  /** Runners of this kernel in a state, with a fresh heartbeat (one Query: the pool is small). */
  private async queryRunners(now: Date, state: 'idle' | 'offered', fresh = true): Promise<Item[]> {
    const items: Item[] = [];
    let startKey: Item | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :pk',
          FilterExpression: fresh ? '#state = :state AND heartbeat_at >= :fresh' : '#state = :state',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#state': 'state' },
          ExpressionAttributeValues: {
            ':pk': warmPartitionKey(this.kernel),
            ':state': state,
            ...(fresh ? { ':fresh': now.getTime() - WARM_STALE_MS } : {}),
          },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      items.push(...(page.Items ?? []));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  /**
   * The job-item side of a hand-off, only while the job is running at `attempt` with no runner
   * recorded: an offer marks the job as offered to `runnerId`; a claim (only of that offer) records
   * the runner and ends the offer.
   */
  private writeUnclaimedJob(
    jobId: string,
    attempt: number,
    runnerId: string,
    write: 'offer' | 'claim',
  ): Promise<boolean> {
    const claim = write === 'claim';
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: jobKey(jobId),
        UpdateExpression: claim
          ? 'SET #ref = :runner, #runnerPk = :runner REMOVE #offer'
          : 'SET #offer = :runner',
        ConditionExpression: `#status = :running AND #attempt = :attempt AND attribute_not_exists(#runnerPk)${claim ? ' AND #offer = :runner' : ''}`,
        ExpressionAttributeNames: {
          '#offer': OFFER_ATTRIBUTE,
          '#status': 'status',
          '#attempt': 'attempt',
          '#runnerPk': INDEXES.byRunner.partitionKey,
          ...(claim && { '#ref': 'runner_ref' }),
        },
        ExpressionAttributeValues: { ':runner': runnerId, ':running': 'running', ':attempt': attempt },
      }),
    );
  }

  private reserve(runnerId: string, job: JobRecord, deadline: Date, now: Date): Promise<boolean> {
    return sendConditional(
      this.client,
      new UpdateCommand({
        TableName: this.tableName,
        Key: this.runnerKey(runnerId),
        UpdateExpression:
          'SET #state = :offered, job_id = :job, tenant = :tenant, attempt = :attempt, offer_deadline = :deadline',
        ConditionExpression: '#state = :idle AND heartbeat_at >= :fresh',
        ExpressionAttributeNames: { '#state': 'state' },
        ExpressionAttributeValues: {
          ':offered': 'offered',
          ':idle': 'idle',
          ':job': job.job_id,
          ':tenant': job.tenant,
          ':attempt': job.attempt,
          ':deadline': deadline.getTime(),
          ':fresh': now.getTime() - WARM_STALE_MS,
        },
      }),
    );
  }
}

function ttl(now: Date): number {
  return Math.floor(now.getTime() / 1000) + WARM_TTL_SECONDS;
}
