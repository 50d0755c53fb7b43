/**
 * EventBridge `ECS Task State Change` -> reconciliation. When a job's task has STOPPED, the job's
 * runner is gone: JobService.runnerStopped fails the job if it is still running (with why the task
 * stopped and the runner's exit code), or requeues it as a new attempt when the platform stopped
 * the task (a Spot interruption: the rule in adapters/aws/ecs-task-stop.ts, which the sweep applies
 * too), releases its slot and dispatches the next queued job.
 *
 * A task of the warm runner service was not started for a job: its job is the one that records the
 * task as its runner (none: it stopped while idle).
 *
 * Ignored, with a log line: other statuses, tasks of another cluster, tasks not started for a job
 * (startedBy is not a job id) that no job names as its runner, unknown jobs, and a task of an older attempt while the job's current
 * runner is another task (its stop says nothing about the job as it runs now).
 */
import type { Context, EventBridgeEvent } from 'aws-lambda';
import { JOB_ID_PATTERN } from '../core/ids.ts';
import { runnerStop } from '../adapters/aws/ecs-task-stop.ts';
import { readAwsConfig } from '../aws/config.ts';
import { createAwsService, logger, logInvocation, once } from '../aws/wiring.ts';

/** The fields of the task detail this handler reads (the event carries the whole ECS Task). */
export interface EcsTaskStateChangeDetail {
  taskArn: string;
  clusterArn?: string;
  lastStatus: string;
  desiredStatus?: string;
  startedBy?: string;
  stopCode?: string;
  stoppedReason?: string;
  containers?: Array<{ name: string; exitCode?: number; reason?: string; lastStatus?: string }>;
}

export type EcsTaskStateChangeEvent = EventBridgeEvent<'ECS Task State Change', EcsTaskStateChangeDetail>;

export type TaskEventOutcome =
  | { action: 'reconciled'; job_id: string; tenant: string }
  | { action: 'ignored'; reason: string; job_id?: string; tenant?: string };

const ready = once(async () => createAwsService(readAwsConfig(process.env)));

/** The Lambda entry point. */
export async function handler(event: EcsTaskStateChangeEvent, context?: Context): Promise<TaskEventOutcome> {
  logInvocation(context);
  const outcome = await reconcile(event);
  const { action: _action, ...fields } = outcome;
  if (outcome.action === 'ignored')
    logger.info(`ignored task event: ${outcome.reason}`, { taskArn: event.detail?.taskArn, ...fields });
  else logger.info('reconciled a stopped task', { taskArn: event.detail.taskArn, ...fields });
  return outcome;
}

async function reconcile(event: EcsTaskStateChangeEvent): Promise<TaskEventOutcome> {
  const detail = event.detail;
  if (event['detail-type'] !== 'ECS Task State Change' || !detail?.taskArn)
    return { action: 'ignored', reason: `not an ECS task state change (${event['detail-type']})` };
  if (detail.lastStatus !== 'STOPPED') return { action: 'ignored', reason: `task is ${detail.lastStatus}` };
  let jobId = detail.startedBy ?? '';
  // A task of the warm runner service (startedBy "ecs-svc/..."): the job it claimed, if any, has
  // its task ARN as runner ref (lambda/adapters/dynamodb/warm-runners.ts).
  if (!JOB_ID_PATTERN.test(jobId) && jobId.startsWith('ecs-svc/'))
    jobId = (await (await ready()).service.jobOfRunner(detail.taskArn)) ?? jobId;
  if (!JOB_ID_PATTERN.test(jobId))
    return { action: 'ignored', reason: `task was not started for a job (startedBy "${jobId}")` };

  const { config, service } = await ready();
  const cluster = config.ecs.cluster;
  if (cluster.startsWith('arn:') && detail.clusterArn && detail.clusterArn !== cluster)
    return { action: 'ignored', reason: `task of another cluster (${detail.clusterArn})`, job_id: jobId };
  const stop = runnerStop(detail, config.ecs.containerName);
  const stopped = await service.runnerStopped(jobId, stop.reason, detail.taskArn, {
    lostToInfrastructure: stop.lostToInfrastructure,
  });
  if (!stopped.reconciled)
    return {
      action: 'ignored',
      reason: stopped.reason,
      job_id: jobId,
      ...(stopped.tenant ? { tenant: stopped.tenant } : {}),
    };
  return { action: 'reconciled', job_id: jobId, tenant: stopped.tenant };
}
