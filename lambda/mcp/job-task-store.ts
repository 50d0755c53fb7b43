/**
 * MCP tasks (protocol 2025-11-25) backed by the job store: a task IS a job (task id = job id), so
 * any instance (any Lambda invocation) can answer tasks/get, tasks/result, tasks/cancel and
 * tasks/list. One store is made per request, bound to the authenticated tenant: another tenant's
 * job is "not found", exactly as over REST.
 */
import type { Result, Task } from '@modelcontextprotocol/sdk/types.js';
import type { TaskStore } from '@modelcontextprotocol/sdk/experimental/tasks/interfaces.js';
import { AppError } from '../core/errors.ts';
import type { JobView } from '../core/job-service.ts';
import { executeResult, guarded, type McpCallContext } from './tools.ts';

/** The task a job is, as tasks/get reports it. */
export function taskOf(job: JobView, ctx: McpCallContext, ttlMs: number | null): Task {
  return {
    taskId: job.job_id,
    status:
      job.status === 'queued' || job.status === 'running'
        ? 'working'
        : job.status === 'completed'
          ? 'completed'
          : job.status,
    statusMessage: statusMessage(job),
    ttl: ttlMs,
    createdAt: job.created_at,
    lastUpdatedAt: job.updated_at,
    pollInterval: ctx.pollIntervalSeconds * 1000,
  };
}

/** One line on where a job is: a task's statusMessage, and the message of a progress notification. */
export function statusMessage(job: JobView): string {
  const { cells_executed, cells_total, percent, current_cell } = job.progress;
  switch (job.status) {
    case 'queued':
      return `queued, position ${job.queue_position ?? '?'}`;
    case 'running':
      return `running (${job.stage ?? 'starting'}): ${cells_executed}/${cells_total} cells, ${percent}%${
        current_cell ? `; cell ${current_cell.index}: ${current_cell.source_preview}` : ''
      }`;
    case 'completed':
      return `completed: ${cells_executed}/${cells_total} cells in ${job.duration_seconds ?? 0} s`;
    case 'failed':
      return `failed (${job.error?.type ?? 'unknown'}): ${job.error?.message ?? ''}`;
    case 'cancelled':
      return `cancelled after ${cells_executed}/${cells_total} cells`;
  }
}

export class JobTaskStore implements TaskStore {
  /**
   * @param ttlMs how long ended jobs (and so task results) are kept, or null when they are kept
   *   until cleaned up.
   */
  constructor(
    private readonly ctx: McpCallContext,
    private readonly ttlMs: number | null,
  ) {}

  /** Tasks are created by execute_notebook itself (the job is the task), never through here. */
  async createTask(): Promise<Task> {
    throw new Error('tasks are created by execute_notebook');
  }

  async getTask(taskId: string): Promise<Task | null> {
    const job = await this.find(taskId);
    return job && taskOf(job, this.ctx, this.ttlMs);
  }

  /** The runner records results in the job; there is nothing to store separately. */
  async storeTaskResult(): Promise<void> {}

  /**
   * What the execute_notebook call would have returned had it waited for the end (the spec: the
   * result of the request that created the task), in that tool's output shape.
   */
  async getTaskResult(taskId: string): Promise<Result> {
    const { ctx } = this;
    return guarded(ctx, async () => executeResult(ctx, await ctx.service.get(ctx.tenant, taskId)), {
      job_id: taskId,
    });
  }

  /** tasks/cancel cancels the job (the SDK has already refused terminal tasks). */
  async updateTaskStatus(taskId: string, status: Task['status']): Promise<void> {
    if (status !== 'cancelled') throw new Error(`task status ${status} is set by the job, not by clients`);
    await this.ctx.service.cancel(this.ctx.tenant, taskId);
  }

  async listTasks(cursor?: string): Promise<{ tasks: Task[]; nextCursor?: string }> {
    const page = await this.ctx.service.list(this.ctx.tenant, { limit: 50, cursor });
    return {
      tasks: page.jobs.map((job) => taskOf(job, this.ctx, this.ttlMs)),
      ...(page.next_cursor ? { nextCursor: page.next_cursor } : {}),
    };
  }

  private async find(jobId: string): Promise<JobView | null> {
    try {
      return await this.ctx.service.get(this.ctx.tenant, jobId);
    } catch (error) {
      // A malformed id is as unknown as a missing one.
      if (error instanceof AppError && (error.code === 'not_found' || error.code === 'invalid_request'))
        return null;
      throw error;
    }
  }
}
