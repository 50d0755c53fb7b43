/**
 * The soak rows of `npm run bench`: does the local server's memory level off, and does a runner's?
 *
 * Server: `notebook-jobs serve` as a user runs it (its own process, default concurrency), fed
 *     BENCH_SOAK_JOBS small jobs (each prints about 2 KB in 51 lines) in batches of
 *     BENCH_SOAK_BATCH, each batch polled over REST until it has ended. The server's memory is read
 *     at the start, every 100 jobs and after BENCH_SOAK_IDLE_S idle seconds, each time right after a
 *     full GC (bench/memory-probe.ts, loaded into the server by this bench only). Target: memory
 *     after the last job within 10% of memory after the first 100.
 * Runner: one job printing BENCH_SOAK_LINES lines: its runner's resident memory (VmRSS) sampled over
 *     the job's life. Target: the peak while the notebook prints within 10% of the start (once the
 *     kernel runs); the peak while the executed notebook is saved is reported beside it.
 *
 * Environment: BENCH_SOAK_JOBS (default 1000; 0 skips the soak, or with BENCH_ONLY=soak runs the
 * runner row alone), BENCH_SOAK_BATCH (50),
 * BENCH_SOAK_IDLE_S (60), BENCH_SOAK_LINES (1000000; 0 skips the runner row), NOTEBOOK_JOBS_PYTHON.
 * `BENCH_ONLY=soak npm run bench` runs the soak alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROBE_PREFIX } from './memory-probe.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROBE = fileURLToPath(new URL('./memory-probe.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../bin/notebook-jobs.ts', import.meta.url));
const MB = 1024 * 1024;

export interface SoakOptions {
  jobs: number;
  batch: number;
  idleSeconds: number;
  lines: number;
  python?: string;
}

export function soakOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SoakOptions {
  const int = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number >= 0, got "${raw}"`);
    return n;
  };
  return {
    jobs: int('BENCH_SOAK_JOBS', 1000),
    batch: Math.max(1, int('BENCH_SOAK_BATCH', 50)),
    idleSeconds: int('BENCH_SOAK_IDLE_S', 60),
    lines: int('BENCH_SOAK_LINES', 1_000_000),
    python: env.NOTEBOOK_JOBS_PYTHON,
  };
}

/** The server's memory right after a full GC (bench/memory-probe.ts) and its /proc breakdown. */
export interface MemorySample {
  label: string;
  jobs: number;
  rss_mb: number;
  /** RSS just before the GC, as `ps` would have shown it. */
  rss_before_gc_mb: number;
  rss_anon_mb: number;
  rss_file_mb: number;
  /** Resident malloc memory: the main arena (brk heap) plus the other glibc arenas' heaps. */
  malloc_heap_mb: number;
  /** How many glibc arenas beyond the main one hold memory (one per thread that mallocs, capped). */
  malloc_arenas: number;
  heap_used_mb: number;
  heap_total_mb: number;
  external_mb: number;
  array_buffers_mb: number;
  malloced_mb: number;
  /** LevelDB's own count for the embedded store: memtables plus block cache. */
  leveldb_mb: number | null;
  /** Open file descriptors (a leak of pipes or sockets shows here first). */
  open_fds: number;
}

export interface SoakResult {
  options: SoakOptions;
  samples: MemorySample[];
  jobs_per_minute: number;
  failed_jobs: number;
  /** The first few jobs that did not complete, with their error. */
  failures: string[];
  /** Memory after the last job / after the first 100 (target <= 1.1). */
  first_jobs: number;
  rss_ratio: number | null;
  heap_ratio: number | null;
  /**
   * RSS after the idle wait / after the first 100. Right after a busy batch RSS still holds
   * transient memory (V8 pages and malloc arenas grown under load, given back within a minute).
   */
  rss_idle_ratio: number | null;
  runner: RunnerResult | null;
}

export interface RunnerResult {
  lines: number;
  status: string;
  seconds: number;
  samples: number;
  /** VmRSS once the kernel runs, before the output starts. */
  start_rss_mb: number;
  /** VmRSS at the last sample while the job still ran. */
  end_rss_mb: number;
  /** The highest VmRSS while the notebook ran and printed (stage `executing`). */
  executing_peak_rss_mb: number;
  /**
   * The median VmRSS while the notebook printed: where the runner sits for most of the job (the
   * peak is often one moment early on, before V8's first full GC frees what start-up left).
   */
  executing_median_rss_mb: number;
  /** The highest VmRSS over the whole job, saving the executed notebook included. */
  peak_rss_mb: number;
  /** executing peak / start: does printing more lines cost the runner more memory (target <= 1.1)? */
  ratio: number;
  /** VmRSS a second into the output (the first sample 2 s into `executing`). */
  settled_rss_mb: number;
  /**
   * The peak from then on / that sample: does memory keep growing with the lines printed once the
   * runner has settled, as the server's soak asks of it after its first 100 jobs (target <= 1.1)?
   */
  plateau_ratio: number;
  /** peak / start over the whole job (reported; the executed notebook is read back to be saved). */
  overall_ratio: number;
}

const smallNotebook = notebookOf(["for i in range(51):\n    print(f'line {i:02d} ' + 'x' * 32)"]);

/** A python3 notebook of code cells (the bench rows' notebooks). */
export function notebookOf(sources: string[]) {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: sources.map((source, i) => ({
      cell_type: 'code',
      id: `c${i}`,
      metadata: {},
      execution_count: null,
      outputs: [],
      source,
    })),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** `notebook-jobs serve` in its own process, with the memory probe loaded. */
export class ServerProcess {
  private probeWaiters: ((line: string) => void)[] = [];
  private stdoutRest = '';
  readonly stderr: string[] = [];

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(
    dataDir: string,
    python: string | undefined,
    nodeArgs: string[] = [],
  ): Promise<ServerProcess> {
    const args = [
      '--expose-gc',
      ...nodeArgs,
      '--import',
      'tsx',
      '--import',
      PROBE,
      CLI,
      'serve',
      '--port',
      '0',
    ];
    // No warm pool: the runner row finds its job's runner by the job id on its command line, and a
    // warm runner's names its slot instead (the server's own memory is the same either way).
    args.push('--data', dataDir, '--workspace', dataDir, '--warm-kernels', '0');
    if (python) args.push('--python', python);
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    const url = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        stderr.push(chunk.toString());
        const match = /listening on (http:\/\/\S+)/.exec(text);
        if (match?.[1]) resolve(match[1]);
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code}): ${text}`)));
    });
    const server = new ServerProcess(child, url);
    server.stderr.push(...stderr);
    child.stderr?.on('data', (chunk: Buffer) => server.stderr.push(chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => server.onStdout(chunk.toString()));
    return server;
  }

  private onStdout(text: string): void {
    const lines = (this.stdoutRest + text).split('\n');
    this.stdoutRest = lines.pop() ?? '';
    for (const line of lines)
      if (line.startsWith(PROBE_PREFIX)) this.probeWaiters.shift()?.(line.slice(PROBE_PREFIX.length));
  }

  async sample(label: string, jobs: number): Promise<MemorySample> {
    const reply = new Promise<string>((resolve) => this.probeWaiters.push(resolve));
    this.child.kill('SIGUSR2');
    const usage = JSON.parse(await reply) as Record<string, number | null>;
    const status = procStatus(this.child.pid as number);
    const arenas = mallocHeaps(this.child.pid as number);
    const mb = (n: number | null | undefined) => Math.round(((n ?? NaN) / MB) * 10) / 10;
    return {
      label,
      jobs,
      rss_mb: mb(usage.rss),
      rss_before_gc_mb: mb(usage.rssBeforeGc),
      rss_anon_mb: mb(status.RssAnon),
      rss_file_mb: mb(status.RssFile),
      malloc_heap_mb: mb(arenas.bytes),
      malloc_arenas: arenas.count,
      heap_used_mb: mb(usage.heapUsed),
      heap_total_mb: mb(usage.heapTotal),
      external_mb: mb(usage.external),
      array_buffers_mb: mb(usage.arrayBuffers),
      malloced_mb: mb(usage.malloced),
      leveldb_mb: usage.levelDb === null ? null : mb(usage.levelDb),
      open_fds: readdirSync(`/proc/${this.child.pid}/fd`).length,
    };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/** Fields of /proc/<pid>/status in bytes (VmRSS, RssAnon, RssFile, ...). */
function procStatus(pid: number): Record<string, number> {
  const fields: Record<string, number> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const match = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (match?.[1] && match[2]) fields[match[1]] = Number(match[2]) * 1024;
  }
  return fields;
}

/**
 * Resident bytes of glibc's malloc heaps from /proc/<pid>/smaps: the main arena's `[heap]` (brk)
 * and each other arena's heap, an anonymous read-write mapping aligned to, and reserved as, 64 MiB
 * (HEAP_MAX_SIZE on 64-bit; the unused rest of the reservation follows it as `---p`). V8's heap and
 * malloc's own large (mmap'd) blocks are neither, so they stay in RSS outside this figure.
 */
function mallocHeaps(pid: number): { bytes: number; count: number } {
  const HEAP_MAX = 64 * MB;
  const regions: { start: number; end: number; perm: string; name: string; rss: number }[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const map = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (map) {
      const [, start, end, perm, name] = map as unknown as [string, string, string, string, string];
      regions.push({ start: parseInt(start, 16), end: parseInt(end, 16), perm, name: name.trim(), rss: 0 });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    const last = regions.at(-1);
    if (rss?.[1] && last) last.rss = Number(rss[1]) * 1024;
  }
  let bytes = 0;
  let count = 0;
  regions.forEach((r, i) => {
    if (r.name === '[heap]') bytes += r.rss;
    if (r.name !== '' || r.perm !== 'rw-p' || r.start % HEAP_MAX !== 0) return;
    const next = regions[i + 1];
    const reserved =
      r.end - r.start === HEAP_MAX ||
      (next?.perm === '---p' && next.start === r.end && next.end - r.start === HEAP_MAX);
    if (reserved) {
      bytes += r.rss;
      count++;
    }
  });
  return { bytes, count };
}

/** The pid of the server's child whose command line names `jobId` (its runner), if running. */
function runnerPid(serverPid: number, jobId: string): number | null {
  for (const task of readdirSync(`/proc/${serverPid}/task`)) {
    let children: string;
    try {
      children = readFileSync(`/proc/${serverPid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const pid of children.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(jobId)) return pid;
      } catch {
        // gone
      }
    }
  }
  return null;
}

/** Submits `count` small jobs, polls them until all have ended; returns the ones not completed. */
export async function runBatch(server: ServerProcess, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    // A timeout, so that a job whose kernel never starts fails instead of stalling the soak.
    const job = await server.request<{ job_id: string }>('POST', '/v1/jobs', {
      notebook: { content: smallNotebook },
      timeout_seconds: 300,
    });
    ids.push(job.job_id);
  }
  const failed: string[] = [];
  let pending = ids;
  while (pending.length) {
    await sleep(250);
    const still: string[] = [];
    for (const id of pending) {
      const job = await server.request<{ status: string; error: { message: string } | null }>(
        'GET',
        `/v1/jobs/${id}`,
      );
      if (!TERMINAL.has(job.status)) still.push(id);
      else if (job.status !== 'completed') failed.push(`${id} ${job.status}: ${job.error?.message ?? ''}`);
    }
    pending = still;
  }
  return failed;
}

/**
 * One job printing `lines` lines; its runner's VmRSS sampled every 200 ms. The notebook waits a
 * second after its kernel starts, so the first samples in stage `executing` come before any output.
 * Start: the first sample once the kernel runs (stage `executing`, before any output); end: the
 * last sample while the job still runs. The ratio is the peak while executing / start, so a backlog
 * that drains before the end still counts; the peak of the whole job (the `saving` stage reads the
 * executed notebook back) is reported beside it.
 *
 * A sample counts for a stage only when the job's stage read just before it and just after it agree:
 * a stage read 200 ms earlier would put the first samples of `saving` (the executed notebook read
 * back) into `executing`, and the first samples of the output into the start.
 */
export async function longJob(server: ServerProcess, lines: number): Promise<RunnerResult> {
  const notebook = notebookOf(['import time\ntime.sleep(1)', `for i in range(${lines}):\n    print(i)`]);
  const { job_id: id } = await server.request<{ job_id: string }>('POST', '/v1/jobs', {
    notebook: { content: notebook },
    timeout_seconds: 3600,
  });
  const started = Date.now();
  const samples: { stage: string | null; rss: number; at: number }[] = [];
  type Seen = { status: string; stage: string | null };
  let job: Seen = { status: 'queued', stage: null };
  let pid: number | null = null;
  while (!TERMINAL.has(job.status)) {
    pid ??= runnerPid(server.child.pid as number, id);
    const rss = pid ? readRss(pid) : null;
    const before = job;
    job = await server.request<Seen>('GET', `/v1/jobs/${id}`);
    if (rss !== null && before.status === 'running')
      samples.push({ stage: before.stage === job.stage ? job.stage : null, rss, at: Date.now() });
    await sleep(200);
  }
  const executing = samples.filter((s) => s.stage === 'executing');
  const start = executing[0]?.rss ?? NaN;
  const peak = Math.max(...samples.map((s) => s.rss));
  // NaN, not -Infinity, when the job ended before a sample caught it executing (a short job).
  const executingPeak = executing.length ? Math.max(...executing.map((s) => s.rss)) : NaN;
  const sorted = executing.map((s) => s.rss).sort((a, b) => a - b);
  const median = sorted.length ? (sorted[Math.floor((sorted.length - 1) / 2)] as number) : NaN;
  // The plateau, as the server's soak judges it (after its first 100 jobs): from the first sample
  // 2 s into `executing` (the notebook's 1 s wait, then a second of output) to the end of printing.
  const settled = executing.findIndex((s) => s.at >= (executing[0]?.at ?? 0) + 2000);
  const after = settled < 0 ? [] : executing.slice(settled);
  const mb = (n: number) => Math.round((n / MB) * 10) / 10;
  return {
    lines,
    status: job.status,
    seconds: Math.round((Date.now() - started) / 1000),
    samples: samples.length,
    start_rss_mb: mb(start),
    end_rss_mb: mb(samples.at(-1)?.rss ?? NaN),
    executing_peak_rss_mb: mb(executingPeak),
    executing_median_rss_mb: mb(median),
    peak_rss_mb: mb(peak),
    ratio: executingPeak / start,
    overall_ratio: peak / start,
    settled_rss_mb: mb(after[0]?.rss ?? NaN),
    plateau_ratio: after.length
      ? Math.max(...after.map((s) => s.rss)) / (after[0] as { rss: number }).rss
      : NaN,
  };
}

function readRss(pid: number): number | null {
  try {
    return procStatus(pid).VmRSS ?? null;
  } catch {
    return null; // the runner has exited; the job's status follows
  }
}

/** Runs the soak against a fresh server with its data under `work`. */
export async function soak(work: string, options: SoakOptions, log = console.error): Promise<SoakResult> {
  const dataDir = join(work, 'soak');
  mkdirSync(dataDir, { recursive: true });
  const server = await ServerProcess.start(dataDir, options.python);
  try {
    const samples = [await server.sample('start', 0)];
    log(`  start: ${describe(samples[0] as MemorySample)}`);
    let done = 0;
    const failed: string[] = [];
    const started = Date.now();
    while (done < options.jobs) {
      const count = Math.min(options.batch, options.jobs - done);
      failed.push(...(await runBatch(server, count)));
      const before = done;
      done += count;
      if (Math.floor(done / 100) > Math.floor(before / 100) || done === options.jobs) {
        const sample = await server.sample(`${done} jobs`, done);
        samples.push(sample);
        log(`  ${done} jobs: ${describe(sample)}`);
      }
    }
    const minutes = (Date.now() - started) / 60_000;
    if (options.jobs > 0) await sleep(options.idleSeconds * 1000);
    const idle = await server.sample(`after ${options.idleSeconds} s idle`, done);
    samples.push(idle);
    log(`  idle: ${describe(idle)}`);
    const runner = options.lines > 0 ? await longJob(server, options.lines) : null;
    const first = samples.find((s) => s.jobs >= Math.min(100, options.jobs) && s.label !== 'start');
    const last = samples.filter((s) => s.label.endsWith('jobs')).at(-1);
    return {
      options,
      samples,
      jobs_per_minute: done ? Math.round(done / minutes) : 0,
      first_jobs: first?.jobs ?? 0,
      failed_jobs: failed.length,
      failures: failed.slice(0, 10),
      rss_ratio: first && last ? last.rss_mb / first.rss_mb : null,
      heap_ratio: first && last ? last.heap_used_mb / first.heap_used_mb : null,
      rss_idle_ratio: first ? idle.rss_mb / first.rss_mb : null,
      runner,
    };
  } finally {
    await server.stop();
  }
}

function describe(s: MemorySample): string {
  return `rss ${s.rss_mb} MB (anon ${s.rss_anon_mb}, file ${s.rss_file_mb}, malloc ${s.malloc_heap_mb} in ${s.malloc_arenas + 1} arenas), heap ${s.heap_used_mb} MB, external ${s.external_mb} MB, leveldb ${s.leveldb_mb} MB, ${s.open_fds} fds`;
}

/** Table rows for bench/run.ts: [what, value, detail, ratio, target]. */
export function soakRows(result: SoakResult): string[][] {
  // With no jobs (the runner row alone) there is no server row to show.
  const samples = result.options.jobs > 0 ? result.samples : [];
  const rows = samples.map((s) => [
    `(soak) server, ${s.label}`,
    `RSS ${s.rss_mb} MB`,
    `heap after GC ${s.heap_used_mb} MB, malloc ${s.malloc_heap_mb} MB, LevelDB ${s.leveldb_mb ?? '?'} MB, ${s.open_fds} fds`,
    '',
    '',
  ]);
  const ratio = (r: number | null) => (r === null ? 'n/a' : `${r.toFixed(2)}x`);
  if (result.options.jobs > 0)
    rows.push([
      `(soak) ${result.options.jobs} vs ${result.first_jobs} jobs`,
      `RSS ${ratio(result.rss_ratio)}`,
      `heap ${ratio(result.heap_ratio)}, RSS after idle ${ratio(result.rss_idle_ratio)}`,
      `${result.jobs_per_minute} jobs/min`,
      '<= 1.10x',
    ]);
  if (result.failed_jobs) rows.push(['(soak) jobs not completed', String(result.failed_jobs), '', '', '0']);
  const r = result.runner;
  if (r && Number.isNaN(r.start_rss_mb)) {
    rows.push([
      `(soak) runner RSS, job printing ${r.lines} lines`,
      'n/a',
      `ended (${r.status}, ${r.seconds} s) before a sample caught it executing; peak ${r.peak_rss_mb} MB`,
      '',
      '<= 1.10x',
    ]);
  } else if (r) {
    rows.push([
      `(soak) runner RSS, job printing ${r.lines} lines`,
      `start ${r.start_rss_mb} MB`,
      `peak while printing ${r.executing_peak_rss_mb} MB (median ${r.executing_median_rss_mb} MB); with saving ${r.peak_rss_mb} MB (${r.overall_ratio.toFixed(2)}x), end ${r.end_rss_mb} MB (${r.seconds} s, ${r.status})`,
      `printing ${r.ratio.toFixed(2)}x`,
      '<= 1.10x',
    ]);
    rows.push([
      '(soak) runner RSS plateau, same job',
      `1 s into output ${r.settled_rss_mb} MB`,
      'peak from then to the end of printing',
      `${r.plateau_ratio.toFixed(2)}x`,
      '<= 1.10x',
    ]);
  }
  return rows;
}

/** Runs the soak as configured by the environment, prints its rows and writes its JSON. */
export async function soakBench(work: string): Promise<void> {
  const options = soakOptionsFromEnv();
  // BENCH_SOAK_JOBS=0 skips the soak, except under BENCH_ONLY=soak: then it runs the runner row alone.
  if (options.jobs === 0 && (process.env.BENCH_ONLY !== 'soak' || options.lines === 0)) return;
  console.error(
    `(soak) ${options.jobs} jobs, then a job printing ${options.lines} lines ` +
      '(about 20-30 jobs a minute on 2 cores; BENCH_SOAK_JOBS=0 skips the soak) ...',
  );
  const result = await soak(work, options);
  const rows = soakRows(result);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
  const out = join('bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ node: process.version, soak: result }, null, 2));
  console.log(`\nwritten: ${file}`);
}
