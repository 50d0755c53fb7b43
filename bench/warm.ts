/**
 * Warm kernels (`serve --warm-kernels N`), side by side with the pool off, in one run:
 * (a-warm) the 3-cell notebook as a job, submit to `completed`, with a warm kernel, against the
 *          engine run directly (the same baseline as row (a));
 * (f)      submit to the first cell executing (the cell prints time.time()): warm vs cold medians;
 * (g)      20 jobs submitted at once with --max-concurrent 2: 2 warm kernels vs the pool off;
 * and the memory one idle warm runner holds (its runner, sandbox, driver and kernel: RSS summed).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalServer, type LocalServer } from '../lambda/local/local-server.ts';
import { findPython } from '../lambda/kernels/python.ts';
import { notebookOf } from './soak.ts';

type Notebook = ReturnType<typeof notebookOf>;

export const THREE_CELLS = notebookOf(['x = 1', 'y = x + 1', 'print(y)']);
const FIRST_CELL_CLOCK = notebookOf(['import time; print(repr(time.time()))', 'y = 2']);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

async function serverWith(work: string, name: string, warmKernels: number, maxConcurrentJobs = 5) {
  const python = await findPython({ configured: process.env.NOTEBOOK_JOBS_PYTHON });
  return startLocalServer({
    port: 0,
    dataDir: join(work, name),
    python: python.python,
    warmKernels,
    maxConcurrentJobs,
    progressIntervalMs: 200,
    log: () => undefined,
  });
}

async function submit(server: LocalServer, notebook: Notebook): Promise<string> {
  const response = await fetch(`${server.url}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notebook: { content: notebook } }),
  });
  return ((await response.json()) as { job_id: string }).job_id;
}

async function ended(server: LocalServer, id: string): Promise<void> {
  for (;;) {
    const { status } = (await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as { status: string };
    if (status === 'completed') return;
    if (status === 'failed' || status === 'cancelled') throw new Error(`bench job ${id} ${status}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until the pool has `count` warm runners with their kernel ready. */
async function poolReady(server: LocalServer, count: number): Promise<void> {
  while (server.warmKernels().ready < count) await new Promise((r) => setTimeout(r, 20));
}

/** ms from submit to the first cell running, read from what that cell printed. */
async function firstCellDelay(server: LocalServer): Promise<number> {
  const submitted = Date.now();
  const id = await submit(server, FIRST_CELL_CLOCK);
  await ended(server, id);
  const logs = (await (await fetch(`${server.url}/v1/jobs/${id}/logs?limit=100`)).json()) as {
    lines: Array<{ stream: string; text: string }>;
  };
  const printed = logs.lines.find((line) => line.stream === 'stdout')?.text ?? 'NaN';
  return Number(printed) * 1000 - submitted;
}

/** RSS (MB) of every process whose command line holds `needle`, summed, with their descendants. */
function rssOf(needle: string): number {
  const parents = new Map<number, number>();
  const matching = new Set<number>();
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) matching.add(Number(entry));
    } catch {
      // gone
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid; p && p > 1; p = parents.get(p)) if (matching.has(p)) return true;
    return false;
  };
  let kb = 0;
  for (const pid of parents.keys()) {
    if (!inTree(pid)) continue;
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

export async function warmBench(work: string, runs: number, directMs: number) {
  const warm = await serverWith(work, 'warm', 1);
  const cold = await serverWith(work, 'cold', 0);
  try {
    await poolReady(warm, 1);
    // warm-up of both (tsx cache, first kernel start)
    await ended(cold, await submit(cold, THREE_CELLS));
    await poolReady(warm, 1);
    await ended(warm, await submit(warm, THREE_CELLS));
    const warmJob: number[] = [];
    const coldJob: number[] = [];
    const warmFirst: number[] = [];
    const coldFirst: number[] = [];
    for (let i = 0; i < runs; i++) {
      await poolReady(warm, 1);
      let start = performance.now();
      await ended(warm, await submit(warm, THREE_CELLS));
      warmJob.push(performance.now() - start);
      start = performance.now();
      await ended(cold, await submit(cold, THREE_CELLS));
      coldJob.push(performance.now() - start);
      await poolReady(warm, 1);
      warmFirst.push(await firstCellDelay(warm));
      coldFirst.push(await firstCellDelay(cold));
    }
    await poolReady(warm, 1);
    const idleMb = rssOf('--warm');
    return {
      runs,
      warm_job_ms: median(warmJob),
      cold_job_ms: median(coldJob),
      warm_vs_direct: median(warmJob) / directMs,
      warm_first_cell_ms: median(warmFirst),
      cold_first_cell_ms: median(coldFirst),
      first_cell_ratio: median(warmFirst) / median(coldFirst),
      idle_warm_runner_mb: idleMb,
      burst: await burst(work),
    };
  } finally {
    await warm.close({ killRunners: true });
    await cold.close({ killRunners: true });
  }
}

/** (g): 20 jobs at once, --max-concurrent 2, 2 warm kernels vs none: total time. */
async function burst(work: string) {
  const total: Record<string, number> = {};
  for (const [name, warmKernels] of [
    ['pool_off', 0],
    ['warm_2', 2],
  ] as const) {
    const server = await serverWith(work, `burst-${name}`, warmKernels, 2);
    try {
      await poolReady(server, warmKernels);
      await ended(server, await submit(server, THREE_CELLS)); // warm-up
      await poolReady(server, warmKernels);
      const start = performance.now();
      const ids = await Promise.all(Array.from({ length: 20 }, () => submit(server, THREE_CELLS)));
      await Promise.all(ids.map((id) => ended(server, id)));
      total[name] = performance.now() - start;
    } finally {
      await server.close({ killRunners: true });
    }
  }
  return {
    jobs: 20,
    max_concurrent: 2,
    pool_off_ms: total.pool_off!,
    warm_2_ms: total.warm_2!,
    ratio: total.warm_2! / total.pool_off!,
  };
}
