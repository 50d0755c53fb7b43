/**
 * The local pool of warm kernels (`serve --warm-kernels N`): a job of the default kernel takes a
 * kernel started ahead of demand; each is used by one job only, the pool refills, and a warm job
 * ends like a cold one, leaving no process behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { processesMentioning, startTestService, type TestService } from '../helpers/local-service.ts';

let service: TestService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

const WHO = makeNotebook([codeCell('import os\nprint(os.getpid(), os.getcwd())')]);

/** The warm runners of this service waiting for a job (the runner, its sandbox and driver). */
const warmRunners = (svc: TestService) =>
  processesMentioning('--warm').filter((pid) => processesMentioning(svc.dataDir).includes(pid));

async function untilWarm(svc: TestService, count: number): Promise<void> {
  for (let i = 0; svc.server && i < 600; i++) {
    if (svc.server.warmKernels().ready === count) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the pool never had ${count} ready kernel(s): ${JSON.stringify(svc.server.warmKernels())}`);
}

async function run(svc: TestService, notebook: unknown, extra: Record<string, unknown> = {}) {
  const created = await svc.request('POST', '/v1/jobs', { notebook: { content: notebook }, ...extra });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const job = await svc.waitFor(created.body.job_id, (j) =>
    ['completed', 'failed', 'cancelled'].includes(j.status),
  );
  const logs = await svc.request('GET', `/v1/jobs/${job.job_id}/logs?limit=1000`);
  const lines: string[] = logs.body.lines.map((line: { text: string }) => line.text);
  return { job, lines, warm: lines.includes('using a warm kernel') };
}

describe('warm kernels', () => {
  it('are used by one job each, in a fresh folder, and replaced after use', async () => {
    service = await startTestService({ warmKernels: 1 });
    await untilWarm(service, 1);
    const first = await run(service, WHO);
    expect(first.job.status).toBe('completed');
    expect(first.warm).toBe(true);
    await untilWarm(service, 1); // refilled
    const second = await run(service, WHO);
    expect(second.warm).toBe(true);
    const [pid1, dir1] = first.lines.find((l) => /^\d+ \//.test(l))?.split(' ') ?? [];
    const [pid2, dir2] = second.lines.find((l) => /^\d+ \//.test(l))?.split(' ') ?? [];
    expect(pid1).toBeTruthy();
    expect(pid2).not.toBe(pid1); // never reused
    expect(dir2).not.toBe(dir1);
    // A job is as fast to report as a cold one is correct: the same outputs and progress.
    expect(second.job.progress).toMatchObject({ cells_total: 1, cells_executed: 1 });
  }, 120_000);

  it('a cancelled and a timed-out warm job leave no process behind', async () => {
    service = await startTestService({ warmKernels: 2 });
    await untilWarm(service, 2);
    const sleeper = makeNotebook([codeCell('import time\nprint("sleeping", flush=True)\ntime.sleep(60)')]);
    const a = await service.request('POST', '/v1/jobs', { notebook: { content: sleeper } });
    const b = await service.request('POST', '/v1/jobs', {
      notebook: { content: sleeper },
      timeout_seconds: 3,
    });
    await service.waitFor(a.body.job_id, (j) => j.progress?.current_cell !== null && j.status === 'running');
    expect((await service.request('POST', `/v1/jobs/${a.body.job_id}/cancel`)).status).toBe(200);
    const cancelled = await service.waitFor(a.body.job_id, (j) => j.status === 'cancelled');
    const timedOut = await service.waitFor(b.body.job_id, (j) => j.status === 'failed', 60_000);
    expect(timedOut.error.type).toBe('timeout');
    for (const job of [cancelled, timedOut]) {
      const logs = await service.request('GET', `/v1/jobs/${job.job_id}/logs?limit=1000`);
      expect(logs.body.lines.map((l: { text: string }) => l.text)).toContain('using a warm kernel');
      for (let i = 0; processesMentioning(job.job_id).length && i < 100; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(processesMentioning(job.job_id)).toEqual([]);
    }
  }, 120_000);

  it('end with the server: killing it leaves no warm runner or kernel', async () => {
    service = await startTestService({ warmKernels: 2 });
    await untilWarm(service, 2);
    const pids = warmRunners(service);
    expect(pids.length).toBeGreaterThanOrEqual(2);
    await service.close();
    service = undefined;
    await new Promise((r) => setTimeout(r, 500));
    expect(pids.filter((pid) => processesMentioning('--warm').includes(pid))).toEqual([]);
  }, 120_000);

  it('0 turns the pool off: jobs start cold', async () => {
    service = await startTestService({ warmKernels: 0 });
    expect(service.server.warmKernels()).toEqual({ idle: 0, ready: 0 });
    const cold = await run(service, WHO);
    expect(cold.job.status).toBe('completed');
    expect(cold.warm).toBe(false);
  }, 120_000);
});
