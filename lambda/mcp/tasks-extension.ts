/**
 * The tasks extension `io.modelcontextprotocol/tasks` of protocol 2026-07-28, served from the job
 * store: a task IS a job (task id = job id), so any instance (any Lambda invocation) answers
 * tasks/get, tasks/update and tasks/cancel, and another tenant's job is "not found". No package
 * serves this side of the extension (@modelcontextprotocol/ext-tasks is the calling side).
 *
 * Status: a queued or running job is `working`; an ended job is `completed` with the result the
 * execute_notebook call would have returned (a failed notebook is a tool result too, `done` with
 * its error, not a JSON-RPC failure, which is what the task status `failed` means); a cancelled
 * job is `cancelled`.
 */
import { isTerminal } from '../core/job.ts';
import type { JobView } from '../core/job-service.ts';
import { statusMessage } from './job-task-store.ts';
import { executeResult, type McpCallContext } from './tools.ts';

export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';

/** Poll no faster than this: every tasks/get is a store read. */
const MIN_POLL_MS = 500;

/**
 * How long a client should wait before its next tasks/get, from where the job is: the base
 * interval while it waits for a slot or a runner, about one cell's time while it executes (the
 * time per finished cell so far is the estimate), quickly while the kernel starts or the notebook
 * is saved. Nothing once it has ended.
 */
export function pollIntervalMsFor(job: JobView, baseMs: number, now = Date.now()): number | undefined {
  if (isTerminal(job.status)) return undefined;
  if (job.status === 'queued' || job.stage === 'provisioning' || job.stage === null) return baseMs;
  if (job.stage === 'executing' && job.started_at && job.progress.cells_executed > 0) {
    const perCell = (now - Date.parse(job.started_at)) / job.progress.cells_executed;
    return Math.round(Math.min(baseMs, Math.max(MIN_POLL_MS, perCell)));
  }
  return job.stage === 'executing' ? Math.min(baseMs, 1000) : MIN_POLL_MS;
}

/**
 * The task's time to live from its creation: the job is kept `retentionMs` after it ends (null:
 * until it is cleaned up). While it runs its end is unknown, so the TTL grows with it (the spec
 * lets ttlMs change over a task's life).
 */
export function ttlMsFor(job: JobView, retentionMs: number | null, now = Date.now()): number | null {
  if (retentionMs === null) return null;
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  return Math.max(0, end - Date.parse(job.created_at)) + retentionMs;
}

/** The Task a job is (without its result): what tools/call answers with `resultType: "task"`. */
export function extensionTaskOf(job: JobView, ctx: McpCallContext, retentionMs: number | null) {
  const pollIntervalMs = pollIntervalMsFor(job, ctx.pollIntervalSeconds * 1000);
  return {
    taskId: job.job_id,
    status:
      job.status === 'cancelled'
        ? ('cancelled' as const)
        : isTerminal(job.status)
          ? ('completed' as const)
          : ('working' as const),
    statusMessage: statusMessage(job),
    createdAt: job.created_at,
    lastUpdatedAt: job.updated_at,
    ttlMs: ttlMsFor(job, retentionMs),
    ...(pollIntervalMs !== undefined && { pollIntervalMs }),
  };
}

/** tasks/get: the task, with the execute_notebook result once it has completed. */
export async function detailedTaskOf(job: JobView, ctx: McpCallContext, retentionMs: number | null) {
  const task = extensionTaskOf(job, ctx, retentionMs);
  if (task.status !== 'completed') return task;
  return { ...task, result: await executeResult(ctx, job) };
}
