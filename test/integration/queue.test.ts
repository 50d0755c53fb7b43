/**
 * The queue: a concurrency limit of 2, eight jobs, priorities. Checked from the jobs' own start and
 * end times, which the runner and the dispatcher write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { isEnded, startTestService, type TestService } from '../helpers/local-service.ts';

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ maxConcurrentJobs: 2 });
});
afterAll(async () => {
  await svc?.close();
});

describe('eight jobs with a concurrency limit of 2', () => {
  it('never runs more than 2, completes all, starts FIFO within priority, and lets a higher priority overtake', async () => {
    const notebook = { content: makeNotebook([codeCell('import time\ntime.sleep(0.5)')]) };
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { status, body } = await svc.request('POST', '/v1/jobs', { notebook, tags: { n: String(i) } });
      expect(status).toBe(201);
      ids.push(body.job_id);
    }
    const urgent = await svc.request('POST', '/v1/jobs', { notebook, priority: 5 });
    expect(urgent.status).toBe(201);
    const queuedNow = await svc.request('GET', `/v1/jobs/${ids[6]}`);
    expect(queuedNow.body.status).toBe('queued');

    const jobs = [];
    for (const id of [...ids, urgent.body.job_id]) jobs.push(await svc.waitFor(id, isEnded, 90_000));
    expect(jobs.map((j) => j.status)).toEqual(Array(8).fill('completed'));

    // At every start, at most one other job was running.
    for (const job of jobs) {
      const t = Date.parse(job.started_at);
      const overlapping = jobs.filter((o) => Date.parse(o.started_at) <= t && t < Date.parse(o.ended_at));
      expect(overlapping.length).toBeLessThanOrEqual(2);
    }
    const startOrder = [...jobs]
      .sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at))
      .map((j) => j.job_id);
    const urgentAt = startOrder.indexOf(urgent.body.job_id);
    // Submitted last, it starts before every normal job still queued when it arrived.
    expect(urgentAt).toBeLessThan(startOrder.indexOf(ids[6] as string));
    const normal = startOrder.filter((id) => id !== urgent.body.job_id);
    expect(normal).toEqual(ids);
  });
});
