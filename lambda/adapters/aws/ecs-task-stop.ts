/**
 * Why an ECS task stopped, read the same way from an EventBridge `ECS Task State Change` event
 * (task-events) and from DescribeTasks (the sweep, for a STOPPED event it never got): one rule
 * decides whether the platform lost the run (requeue it as a new attempt) or the run ended on its
 * own or by a person (fail the job).
 */
import type { RunnerStop } from '../../core/ports.ts';

/** The fields of an ECS Task both the event's detail and DescribeTasks carry. */
export interface EcsTaskStopFields {
  taskArn?: string;
  stopCode?: string;
  stoppedReason?: string;
  containers?: Array<{ name?: string; exitCode?: number; reason?: string }>;
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
export function lostToInfrastructure(task: Pick<EcsTaskStopFields, 'stopCode'>): boolean {
  return task.stopCode !== undefined && INFRASTRUCTURE_STOP_CODES.has(task.stopCode);
}

/**
 * Why the task stopped, for the job's error message: stop code and reason, and the runner
 * container's exit code (137 = killed after the stop timeout) and reason if ECS gave one.
 */
export function stopReason(task: EcsTaskStopFields, containerName: string): string {
  const taskId = task.taskArn?.split('/').pop() ?? 'unknown';
  const parts = [
    `ECS task ${taskId} stopped` +
      (task.stopCode ? ` (${task.stopCode})` : '') +
      (task.stoppedReason ? `: ${task.stoppedReason}` : ''),
  ];
  const container = task.containers?.find((c) => c.name === containerName);
  if (container) {
    const exit = container.exitCode === undefined ? 'no exit code' : `exit code ${container.exitCode}`;
    parts.push(`container ${containerName}: ${exit}${container.reason ? ` (${container.reason})` : ''}`);
  } else {
    parts.push(`container ${containerName} not reported`);
  }
  return parts.join('; ');
}

/** The stop as reconciliation takes it: the reason text and whether the platform lost the run. */
export function runnerStop(task: EcsTaskStopFields, containerName: string): RunnerStop {
  return { reason: stopReason(task, containerName), lostToInfrastructure: lostToInfrastructure(task) };
}
