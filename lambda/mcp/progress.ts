/**
 * A synchronous execute_notebook that streams: while it waits for the job, it sends
 * notifications/progress on each executed cell, on each state or stage change, and at least every
 * HEARTBEAT_MS, so a client with resetTimeoutOnProgress keeps the call alive. Only used when the
 * client sent a progressToken and the answer is an SSE stream (see http.ts).
 */
import { isTerminal } from '../core/job.ts';
import type { JobView } from '../core/job-service.ts';
import { statusMessage } from './job-task-store.ts';
import type { McpCallContext } from './tools.ts';

/** Below the 5 s the issue asks for, so a poll that lands late still keeps the gap under it. */
export const HEARTBEAT_MS = 4000;
/** How often the job is read while waiting. */
const POLL_MS = 250;

/** Sends one notifications/progress for the call. */
export type ProgressReporter = (
  progress: number,
  total: number | undefined,
  message: string,
) => Promise<void>;

/**
 * Waits for `job` until it ends, until `until` (a performance.now() instant) or until `signal`
 * aborts (the client cancelled the call or its stream closed), reporting progress meanwhile.
 * Returns the job as last read; the job itself is never touched: a stopped wait leaves it running.
 *
 * MCP requires every progress value of a request to be larger than the one before, also for
 * heartbeats. So progress is the number of executed cells, and a notification that comes without a
 * new finished cell adds a growing fraction (k/(k+1) for its k-th since the last whole number): the
 * whole part is always the cells executed. `total` is the code cells plus one for the ending, which
 * is reported as exactly `total`.
 */
export async function waitWithProgress(
  ctx: McpCallContext,
  first: JobView,
  until: number,
  report: ProgressReporter,
  signal: AbortSignal,
  stopReason: () => string,
): Promise<JobView> {
  let job = first;
  let sent = -1;
  let beats = 0;
  let lastState = '';
  let lastSentAt = -Infinity;
  for (;;) {
    const state = `${job.status}/${job.stage ?? ''}/${job.progress.cells_executed}`;
    const ended = isTerminal(job.status);
    if (state !== lastState || ended || performance.now() - lastSentAt >= HEARTBEAT_MS) {
      const whole = Math.max(job.progress.cells_executed, Math.floor(sent));
      beats = whole > sent ? 0 : beats + 1;
      // The cells, then the ending as one more step: until the job ends progress stays below
      // total, and its ending is exactly total, whenever the last cell was recorded.
      const total = job.progress.cells_total + 1;
      const progress = ended ? total : whole + beats / (beats + 1);
      try {
        await report(progress, total, `${job.job_id}: ${statusMessage(job)}`);
      } catch {
        // The stream is gone; the abort that follows ends the wait.
      }
      sent = progress;
      lastState = state;
      lastSentAt = performance.now();
    }
    if (ended || performance.now() >= until) return job;
    if (!(await pause(Math.min(POLL_MS, until - performance.now()), signal))) {
      ctx.log('mcp: stopped waiting; the job goes on', {
        job_id: job.job_id,
        tenant: ctx.tenant,
        reason: stopReason(),
      });
      return job;
    }
    job = await ctx.service.get(ctx.tenant, job.job_id);
  }
}

/** Sleeps `ms`; false when `signal` aborted first (or already had). */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      },
      Math.max(0, ms),
    );
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
