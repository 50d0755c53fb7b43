/**
 * EventBridge `ECS Task State Change` -> reconciliation. When a job's task has STOPPED, the job's
 * runner is gone: JobService.runnerStopped fails the job if it is still running (with why the task
 * stopped and the runner's exit code), or requeues it as a new attempt when the platform stopped
 * the task (a Spot interruption: see INFRASTRUCTURE_STOP_CODES), releases its slot and dispatches
 * the next queued job.
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
  const stopped = await service.runnerStopped(
    jobId,
    stopReason(detail, config.ecs.containerName),
    detail.taskArn,
    { lostToInfrastructure: lostToInfrastructure(detail) },
  );
  if (!stopped.reconciled)
    return {
      action: 'ignored',
      reason: stopped.reason,
      job_id: jobId,
      ...(stopped.tenant ? { tenant: stopped.tenant } : {}),
    };
  return { action: 'reconciled', job_id: jobId, tenant: stopped.tenant };
}

/**
 * Stop codes that mean the platform, not the notebook or a person, ended the task (ECS `Task`
 * `stopCode`, "Stopped tasks error codes" in the ECS developer guide): a Fargate Spot interruption
 * (`SpotInterruption`, `TerminationNotice`), a task that never started (`TaskFailedToStart`: image
 * pull, network or capacity trouble), the scheduler or the infrastructure's health
 * (`ServiceSchedulerInitiated`, `InfrastructureHealth`). Such a run is requeued as a new attempt.
 * `UserInitiated` (StopTask: a cancel, a timeout, an operator) and `EssentialContainerExited` (the
 * runner exited: a crash, an out-of-memory kill) are not: the job fails.
 */
const INFRASTRUCTURE_STOP_CODES = new Set([
  'SpotInterruption',
  'TerminationNotice',
  'TaskFailedToStart',
  'ServiceSchedulerInitiated',
  'InfrastructureHealth',
]);

/** Whether the task was stopped by the platform (see INFRASTRUCTURE_STOP_CODES). */
export function lostToInfrastructure(detail: Pick<EcsTaskStateChangeDetail, 'stopCode'>): boolean {
  return detail.stopCode !== undefined && INFRASTRUCTURE_STOP_CODES.has(detail.stopCode);
}

/**
 * Why the task stopped, for the job's error message: stop code and reason, and the runner
 * container's exit code (137 = killed after the stop timeout) and reason if ECS gave one.
 */
export function stopReason(detail: EcsTaskStateChangeDetail, containerName: string): string {
  const taskId = detail.taskArn.split('/').pop();
  const parts = [
    `ECS task ${taskId} stopped` +
      (detail.stopCode ? ` (${detail.stopCode})` : '') +
      (detail.stoppedReason ? `: ${detail.stoppedReason}` : ''),
  ];
  const container = detail.containers?.find((c) => c.name === containerName);
  if (container) {
    const exit = container.exitCode === undefined ? 'no exit code' : `exit code ${container.exitCode}`;
    parts.push(`container ${container.name}: ${exit}${container.reason ? ` (${container.reason})` : ''}`);
  } else {
    parts.push(`container ${containerName} not reported`);
  }
  return parts.join('; ');
}
