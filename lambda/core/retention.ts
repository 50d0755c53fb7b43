/**
 * Retention: deleting an ended job (record, notebooks, logs, idempotency key) on request, and
 * cleanup of a tenant's ended jobs older than a cutoff.
 */
import { ConflictError } from './errors.ts';
import { isTerminal, TERMINAL_STATUSES, type JobRecord } from './job.ts';
import type { CleanupResult, DeleteResult } from './contract.ts';
import { getOwned, type ServiceContext } from './service-context.ts';

export class Retention {
  constructor(private readonly ctx: ServiceContext) {}

  /** Deletes a terminal job: record, notebooks and logs. */
  async delete(tenant: string, jobId: string): Promise<DeleteResult> {
    const job = await getOwned(this.ctx, tenant, jobId);
    if (!isTerminal(job.status)) {
      throw new ConflictError(
        `job ${jobId} is ${job.status}; cancel it first, only ended jobs can be deleted`,
        {
          job_id: jobId,
          status: job.status,
        },
      );
    }
    await this.removeJob(job);
    return { job_id: jobId, deleted: true };
  }

  /** Deletes this tenant's ended jobs that ended more than `olderThanHours` ago. */
  async cleanup(tenant: string, olderThanHours: number): Promise<CleanupResult> {
    const cutoff = new Date(this.ctx.deps.clock.now().getTime() - olderThanHours * 3600_000).toISOString();
    const deleted: string[] = [];
    for (const status of TERMINAL_STATUSES) {
      let cursor: string | undefined;
      do {
        const page = await this.ctx.deps.store.list({
          tenant,
          status,
          limit: 100,
          cursor,
          created_before: cutoff,
        });
        for (const job of page.items) {
          if (job.ended_at && job.ended_at <= cutoff) {
            await this.removeJob(job);
            deleted.push(job.job_id);
          }
        }
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
    }
    return { deleted, count: deleted.length };
  }

  private async removeJob(job: JobRecord): Promise<void> {
    await this.ctx.deps.artifacts.deleteJob(job.tenant, job.job_id);
    await this.ctx.deps.logs.delete(job);
    if (job.idempotency_key)
      await this.ctx.deps.store.releaseIdempotencyKey(job.tenant, job.idempotency_key, job.job_id);
    await this.ctx.deps.store.delete(job.job_id);
  }
}
