/**
 * A warm runner on AWS waiting for its job (docs/architecture.md, "Warm runners (AWS)"): a task of
 * the warm runner service whose kernel is already started registers itself idle in the job table,
 * polls its own item for an offer, claims the offered job (a conditional write on the job, with that
 * job's scoped session), and then runs it like a cold runner. A claim that fails (the offer was
 * withdrawn, the job cancelled) puts it back to idle.
 */
import { errorMessage } from '../../lambda/core/errors.ts';
import {
  WARM_HEARTBEAT_MS,
  type DynamoDbWarmRunners,
  type WarmOffer,
} from '../../lambda/adapters/dynamodb/warm-runners.ts';

/**
 * How often an idle runner reads its item. At on-demand prices a strongly consistent GetItem of a
 * small item is one read request unit, so 300 ms is ~8.6 M reads a month per idle runner
 * (docs/deploy.md, "Warm runners"); a claim then comes within about 0.3 s of the offer.
 */
export const WARM_POLL_MS = 300;
/** Failed polls in a row (about 6 s) after which a warm runner gives up and its task ends. */
const MAX_FAILURES = 20;

export interface WarmWaitOptions {
  /** The runner's own item, reached with its warm session (WARM#<kernel> items only). */
  registry: DynamoDbWarmRunners;
  /** The runner's id and ref: its ECS task ARN. */
  runnerId: string;
  /** Claims the offered job with that job's session; true when the job is now this runner's. */
  claim: (offer: WarmOffer) => Promise<boolean>;
  /** Resolves when the runner must stop waiting (SIGTERM: scale-in or a deploy; its engine died). */
  stopped: Promise<void>;
  log: (text: string) => void;
  pollMs?: number;
  heartbeatMs?: number;
}

/** Waits for a job and claims it: the claimed offer, or null when stopped first (deregistered). */
export async function awaitWarmJob(options: WarmWaitOptions): Promise<WarmOffer | null> {
  const { registry, runnerId, log } = options;
  const pollMs = options.pollMs ?? WARM_POLL_MS;
  const heartbeatMs = options.heartbeatMs ?? WARM_HEARTBEAT_MS;
  let stop = false;
  let beat = Date.now();
  /** One poll: the claimed offer, or null (nothing offered, or the offer was not ours to take). */
  const step = async (): Promise<WarmOffer | null> => {
    const item = await registry.read(runnerId);
    if (!item) {
      // Removed under it (by hand, or TTL after a long stall): register again.
      await registry.register(runnerId, new Date());
      beat = Date.now();
    } else if (item.offer) {
      const offer = item.offer;
      if (await options.claim(offer)) {
        log(`claimed job ${offer.job_id}`);
        return offer;
      }
      log(`job ${offer.job_id} was no longer ours to take (withdrawn or cancelled); idle again`);
      await registry.release(runnerId, offer.job_id, new Date());
    }
    if (Date.now() - beat >= heartbeatMs) {
      beat = Date.now();
      if (!(await registry.heartbeat(runnerId, new Date()))) await registry.register(runnerId, new Date());
    }
    return null;
  };
  void options.stopped.then(() => (stop = true));
  await registry.register(runnerId, new Date());
  log(`warm runner ${runnerId} is idle, waiting for a ${registry.kernel} job`);
  let failures = 0;
  try {
    while (!stop) {
      try {
        const offer = await step();
        if (offer) return offer;
        failures = 0;
      } catch (error) {
        // A throttled or failed call: try again at the next poll; only a lasting failure ends the
        // task (ECS then starts a fresh one).
        failures += 1;
        log(`warm runner: ${errorMessage(error)} (${failures} failure(s) in a row)`);
        if (failures >= MAX_FAILURES) throw error;
      }
      await Promise.race([options.stopped, new Promise((resolve) => setTimeout(resolve, pollMs))]);
    }
    return null;
  } finally {
    // Claimed or stopping: no dispatcher may offer this runner anything more.
    await registry.remove(runnerId).catch((error: unknown) => {
      log(`could not deregister the warm runner: ${errorMessage(error)}`);
    });
  }
}

/**
 * The ECS task ARN of this task, from the task metadata endpoint (version 4) that ECS sets in
 * ECS_CONTAINER_METADATA_URI_V4 for every container on Fargate.
 */
export async function ecsTaskArn(metadataUri: string | undefined): Promise<string> {
  if (!metadataUri)
    throw new Error('ECS_CONTAINER_METADATA_URI_V4 is not set: a warm runner runs as an ECS task');
  const response = await fetch(`${metadataUri}/task`);
  if (!response.ok) throw new Error(`the task metadata endpoint answered ${response.status}`);
  const arn = ((await response.json()) as { TaskARN?: unknown }).TaskARN;
  if (
    typeof arn !== 'string' ||
    !/^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task\/[\w-]+\/[a-f0-9]{32}$/.test(arn)
  )
    throw new Error(`the task metadata endpoint gave no task ARN: ${JSON.stringify(arn)}`);
  return arn;
}

/** The longest scale-in protection ECS grants (48 h); the task's end lifts it anyway. */
export const PROTECTION_MINUTES = 2880;

/**
 * Asks ECS not to stop this task for a scale-in or a deployment while it runs its job (task
 * scale-in protection, through the agent endpoint ECS sets in ECS_AGENT_URI). Best effort: without
 * it a deployment may stop the task, and the job is then requeued as a new attempt.
 */
export async function protectTask(agentUri: string | undefined, log: (text: string) => void): Promise<void> {
  if (!agentUri) {
    log('ECS_AGENT_URI is not set: the task runs its job without scale-in protection');
    return;
  }
  try {
    const response = await fetch(`${agentUri}/task-protection/v1/state`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ProtectionEnabled: true, ExpiresInMinutes: PROTECTION_MINUTES }),
    });
    if (!response.ok)
      throw new Error(`the agent answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  } catch (error) {
    log(`could not protect the task from scale-in: ${errorMessage(error)}`);
  }
}
