/**
 * Scheduled sweep (every minute): JobService.sweep() stops jobs past their deadline plus grace,
 * settles jobs whose task is gone (DescribeTasks' stop code, by the same rule as task-events: a run
 * lost to infrastructure is requeued, any other stop fails the job), frees leaked slots and
 * dispatches queued jobs. Then it publishes the gauges JobsQueued and JobsRunning (and
 * WarmRunnersIdle with a warm pool; namespace NotebookJobs, no dimensions) as CloudWatch embedded
 * metric format on stdout.
 *
 * The EMF document is written here rather than with Powertools Metrics: Powertools always adds a
 * `service` dimension, and clearing it yields `"Dimensions": []`, which the EMF schema does not allow
 * (at least one dimension set). A dimensionless metric is `"Dimensions": [[]]`.
 */
import type { Context } from 'aws-lambda';
import { readAwsConfig } from '../aws/config.ts';
import { createAwsService, logger, logInvocation, once } from '../aws/wiring.ts';

export const METRICS_NAMESPACE = 'NotebookJobs';
const ready = once(async () => createAwsService(readAwsConfig(process.env)));

export interface SweepOutcome {
  timed_out: string[];
  lost: string[];
  requeued: string[];
  released: string[];
  queued: number;
  running: number;
}

/** The Lambda entry point. */
export async function handler(_event?: unknown, context?: Context): Promise<SweepOutcome> {
  logInvocation(context);
  const { service } = await ready();
  const swept = await service.sweep();
  const { queued, running } = await service.gauges();
  // WarmRunnersIdle only where the stack has a warm pool (NOTEBOOK_JOBS_WARM_KERNEL).
  const warmIdle = await service.idleWarmRunners();
  writeEmf({
    JobsQueued: queued,
    JobsRunning: running,
    ...(warmIdle === null ? {} : { WarmRunnersIdle: warmIdle }),
  });
  const outcome = { ...swept, queued, running };
  if (swept.timed_out.length + swept.lost.length + swept.requeued.length + swept.released.length > 0)
    logger.info('sweep repaired jobs', outcome);
  return outcome;
}

/** One EMF document with dimensionless Count gauges, as a single stdout line. */
export function writeEmf(gauges: Record<string, number>, now = Date.now()): void {
  const document = {
    _aws: {
      Timestamp: now,
      CloudWatchMetrics: [
        {
          Namespace: METRICS_NAMESPACE,
          Dimensions: [[]],
          Metrics: Object.keys(gauges).map((name) => ({ Name: name, Unit: 'Count' })),
        },
      ],
    },
    ...gauges,
  };
  process.stdout.write(`${JSON.stringify(document)}\n`);
}
