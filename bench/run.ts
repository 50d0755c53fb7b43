/**
 * `npm run bench`: performance as ratios against a baseline run side by side (never as timed
 * assertions in tests). Prints a table and writes JSON under bench/results/.
 *
 * (a) a trivial 3-cell notebook as a job (REST create + poll until ended) vs the same notebook run
 *     directly by the engine driver, interleaved; medians and the ratio.
 * (b) create and get latency p50/p99 through the JobService with 10^2 and 10^4 jobs stored, and a
 *     raw store read for comparison.
 * (c) the first list page and one log page with 10^3 and 10^5 records/lines: the ratio.
 * (d) a log tail of 10 lines on a log holding one 50 MB line vs on a 1 MB log: the ratio.
 * (e) AWS log pages: the first page and a tail of 500 read through the S3 log-page reader from the
 *     fake S3 (test/helpers/fake-s3.ts, over HTTP) with 10^4 and BENCH_LARGE lines: the ratio.
 * (h) each Lambda bundle (the shared esbuild config, minified) imported by a fresh node vs a bare
 *     node start: sizes and the ratio.
 * (a-warm), (f), (g) warm kernels vs the pool off, and an idle warm runner's memory: bench/warm.ts.
 * (soak) memory over 1,000 jobs and over one long job: bench/soak.ts, its own table afterwards.
 *
 * Environment: BENCH_RUNS (default 10), BENCH_LARGE (default 100000), NOTEBOOK_JOBS_PYTHON,
 * BENCH_ONLY (run sections alone, comma-separated: logs, warm, aws-logs, bundles or soak), BENCH_SOAK_* (bench/soak.ts; the soak is slow,
 * BENCH_SOAK_JOBS=0 skips it).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { startLocalServer } from '../lambda/local/local-server.ts';
import { JobService } from '../lambda/core/job-service.ts';
import { CursorCodec } from '../lambda/core/cursor.ts';
import { MonotonicJobIds } from '../lambda/core/ids.ts';
import type { JobRecord } from '../lambda/core/job.ts';
import type { Launcher } from '../lambda/core/ports.ts';
import { createDocumentClient } from '../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../lambda/adapters/file-artifacts.ts';
import { FileLogReader, FileLogSink, jobLogPath } from '../lambda/adapters/file-logs.ts';
import { engineScript } from '../lambda/kernels/engines.ts';
import { findPython, staticKernelCatalog } from '../lambda/kernels/python.ts';
import { soakBench } from './soak.ts';
import { THREE_CELLS, warmBench } from './warm.ts';
import { quantile, median, ms, time, run, RUNS } from './measure.ts';
import { awsLogPages, awsLogRows, bundleImports, bundleRows } from './aws.ts';

const LARGE = Number(process.env.BENCH_LARGE ?? 100_000);
const ONLY = process.env.BENCH_ONLY?.split(',').map((name) => name.trim());
const SECTIONS = ['logs', 'warm', 'aws-logs', 'bundles', 'soak'];

const notebook = THREE_CELLS;

async function endToEnd(work: string) {
  const python = await findPython({ configured: process.env.NOTEBOOK_JOBS_PYTHON });
  const server = await startLocalServer({
    port: 0,
    dataDir: join(work, 'e2e'),
    python: python.python,
    warmKernels: 0, // row (a) is the cold start; the warm rows are bench/warm.ts
    log: () => undefined,
  });
  const input = join(work, 'direct.ipynb');
  writeFileSync(input, JSON.stringify(notebook));
  const job: number[] = [];
  const direct: number[] = [];
  const runJob = async () => {
    const response = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ notebook: { content: notebook } }),
    });
    const { job_id: id } = (await response.json()) as { job_id: string };
    for (;;) {
      const status = ((await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as { status: string })
        .status;
      if (status === 'completed') return;
      if (status === 'failed' || status === 'cancelled') throw new Error(`bench job ${id} ${status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const runDirect = () =>
    run(
      python.python,
      [
        engineScript(python.engine),
        '--input',
        input,
        '--output',
        join(work, 'direct-out.ipynb'),
        '--events-fd',
        '1',
      ],
      {
        env: { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: '1' },
      },
    );
  await runJob(); // warm-up: first kernel start, tsx cache
  await runDirect();
  for (let i = 0; i < RUNS; i++) {
    job.push(await time(runJob));
    direct.push(await time(runDirect));
  }
  await server.close({ killRunners: true });
  return { job_ms: median(job), direct_ms: median(direct), ratio: median(job) / median(direct), runs: RUNS };
}

const idleLauncher: Launcher = {
  launch: async (job: JobRecord) => ({ runner_ref: `bench:${job.job_id}` }),
  stop: async () => undefined,
  isAlive: async () => true,
};

async function withStore<T>(
  fn: (store: DynamoDbJobStore, service: JobService, work: string) => Promise<T>,
  work: string,
): Promise<T> {
  const db = dynalite({ createTableMs: 0 });
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  const client = createDocumentClient({ endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}` });
  await createJobTable(client, 'bench');
  const store = new DynamoDbJobStore({ client, tableName: 'bench' });
  const service = new JobService({
    store,
    artifacts: new FileArtifacts({ root: join(work, 'artifacts'), workspace: work }),
    launcher: idleLauncher,
    logs: new FileLogReader(join(work, 'logs')),
    kernels: staticKernelCatalog([{ name: 'python3', language: 'python', display_name: 'Python 3' }]),
    clock: { now: () => new Date() },
    ids: new MonotonicJobIds(),
    cursors: new CursorCodec('bench-secret-0123456789'),
    uploads: { create: async () => 'unused' },
    renderer: { html: async () => Buffer.from('') },
    config: { maxConcurrentJobs: 1_000_000 },
  });
  try {
    return await fn(store, service, work);
  } finally {
    await new Promise<void>((r) => db.close(() => r()));
  }
}

/** Fills the store with `count` completed jobs, 32 writes in flight. */
async function seed(store: DynamoDbJobStore, template: JobRecord, count: number) {
  const ids = new MonotonicJobIds();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) {
        next++;
        const id = ids.jobId();
        await store.create({ ...template, job_id: id, status: 'completed', ended_at: template.created_at });
      }
    }),
  );
}

async function latency(work: string, stored: number) {
  return withStore(
    async (store, service) => {
      const first = await service.create('bench', { notebook: { content: notebook } });
      const template = (await store.get(first.job_id)) as JobRecord;
      await seed(store, template, stored);
      const create: number[] = [];
      const get: number[] = [];
      const raw: number[] = [];
      for (let i = 0; i < 200; i++)
        create.push(await time(() => service.create('bench', { notebook: { content: notebook } })));
      for (let i = 0; i < 300; i++) {
        get.push(await time(() => service.get('bench', first.job_id)));
        raw.push(await time(() => store.get(first.job_id)));
      }
      return {
        stored,
        create_p50_ms: median(create),
        create_p99_ms: quantile(create, 0.99),
        get_p50_ms: median(get),
        get_p99_ms: quantile(get, 0.99),
        raw_get_p50_ms: median(raw),
        get_vs_raw: median(get) / median(raw),
      };
    },
    join(work, `latency-${stored}`),
  );
}

async function pageCost(work: string, records: number) {
  return withStore(
    async (store, service, dir) => {
      const first = await service.create('bench', { notebook: { content: notebook } });
      await seed(store, (await store.get(first.job_id)) as JobRecord, records);
      const logs = join(dir, 'logs');
      mkdirSync(logs, { recursive: true });
      const sink = new FileLogSink(jobLogPath(logs, first.job_id));
      for (let i = 0; i < records; i++)
        sink.write({ ts: new Date().toISOString(), stream: 'stdout', text: `line ${i}` });
      await sink.close();
      const list: number[] = [];
      const logPage: number[] = [];
      const logTail: number[] = [];
      for (let i = 0; i < 50; i++) {
        list.push(await time(() => service.list('bench', { limit: 20 })));
        logPage.push(await time(() => service.logs('bench', first.job_id, { limit: 500 })));
        logTail.push(await time(() => service.logs('bench', first.job_id, { limit: 500, tail: 500 })));
      }
      return { records, list_ms: median(list), log_page_ms: median(logPage), log_tail_ms: median(logTail) };
    },
    join(work, `pages-${records}`),
  );
}

/**
 * (d) A tail of 10 on logs holding one 50 MB line, written as a runner without line caps wrote it
 * (`sys.stdout.write('y' * 50_000_000)`), against a tail of 10 on 1 MB of ordinary lines. With ten
 * lines after the long one the tail need not cross it; with three it must scan across it once.
 */
async function longLineTail(work: string) {
  const dir = join(work, 'long-line');
  mkdirSync(dir, { recursive: true });
  const reader = new FileLogReader(dir);
  const ts = new Date().toISOString();
  const lineOf = (text: string) => `${JSON.stringify({ ts, stream: 'stdout', text })}\n`;
  const ordinary = Array.from({ length: 15_000 }, (_, i) => lineOf(`line ${i} ${'x'.repeat(i % 50)}`)).join(
    '',
  );
  const long = lineOf('y'.repeat(50_000_000));
  const after = (n: number) => Array.from({ length: n }, (_, i) => lineOf(`after ${i}`)).join('');
  writeFileSync(jobLogPath(dir, 'job_small'), ordinary);
  writeFileSync(jobLogPath(dir, 'job_after'), ordinary + long + after(10));
  writeFileSync(jobLogPath(dir, 'job_across'), ordinary + long + after(3));
  const tail = (jobId: string) => () =>
    reader.read({ job_id: jobId, runner_ref: null }, { limit: 500, tail: 10 });
  const small: number[] = [];
  const afterLong: number[] = [];
  const across: number[] = [];
  for (let i = 0; i < 51; i++) {
    small.push(await time(tail('job_small')));
    afterLong.push(await time(tail('job_after')));
    across.push(await time(tail('job_across')));
  }
  // The first round warms the page cache and the code: left out.
  return {
    small_log_bytes: Buffer.byteLength(ordinary),
    small_ms: median(small.slice(1)),
    after_long_line_ms: median(afterLong.slice(1)),
    across_long_line_ms: median(across.slice(1)),
  };
}

function longLineRows(d: Awaited<ReturnType<typeof longLineTail>>): string[][] {
  return [
    [
      '(d) log tail 10, one 50 MB line then 10 vs 1 MB log',
      ms(d.small_ms),
      ms(d.after_long_line_ms),
      `${(d.after_long_line_ms / d.small_ms).toFixed(2)}x`,
      '<= 2x',
    ],
    [
      '(d) log tail 10 across the 50 MB line vs 1 MB log',
      ms(d.small_ms),
      ms(d.across_long_line_ms),
      `${(d.across_long_line_ms / d.small_ms).toFixed(2)}x`,
      'one scan (no target)',
    ],
  ];
}

function warmRows(
  a: Awaited<ReturnType<typeof endToEnd>>,
  w: Awaited<ReturnType<typeof warmBench>>,
): string[][] {
  return [
    [
      '(a) 3-cell job end to end (median)',
      ms(a.job_ms),
      `direct ${ms(a.direct_ms)}`,
      `${a.ratio.toFixed(2)}x`,
      '<= 1.25x',
    ],
    [
      '(a-warm) same, warm kernel',
      ms(w.warm_job_ms),
      `direct ${ms(a.direct_ms)}`,
      `${w.warm_vs_direct.toFixed(2)}x`,
      '<= 0.4x',
    ],
    [
      '(f) submit to first cell (median)',
      `warm ${ms(w.warm_first_cell_ms)}`,
      `cold ${ms(w.cold_first_cell_ms)}`,
      `${w.first_cell_ratio.toFixed(2)}x`,
      '<= 0.2x',
    ],
    [
      '(g) 20 jobs, max 2 at once',
      `2 warm ${ms(w.burst.warm_2_ms)}`,
      `pool off ${ms(w.burst.pool_off_ms)}`,
      `${w.burst.ratio.toFixed(2)}x`,
      'reported',
    ],
    ['idle warm runner memory (RSS)', `${w.idle_warm_runner_mb.toFixed(0)} MB`, '', '', 'reported'],
  ];
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
}

function saveResults(results: Record<string, unknown>): void {
  const out = join('bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ node: process.version, ...results }, null, 2));
  console.log(`\nwritten: ${file}`);
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'notebook-jobs-bench-'));
  try {
    // The soak (bench/soak.ts) prints its own table; BENCH_ONLY=soak runs it alone.
    if (ONLY !== undefined) {
      const unknown = ONLY.filter((name) => !SECTIONS.includes(name));
      if (unknown.length > 0)
        throw new Error(
          `BENCH_ONLY=${unknown.join(',')}: the sections that run alone are: ${SECTIONS.join(', ')}`,
        );
      const rows: string[][] = [];
      const results: Record<string, unknown> = {};
      if (ONLY.includes('logs')) {
        console.error('(d) long log line ...');
        results.long_line_tail = await longLineTail(work);
        rows.push(...longLineRows(results.long_line_tail as Awaited<ReturnType<typeof longLineTail>>));
      }
      if (ONLY.includes('warm')) {
        console.error('(a) and warm kernels ...');
        const a = await endToEnd(work);
        const w = await warmBench(work, RUNS, a.direct_ms);
        Object.assign(results, { end_to_end: a, warm: w });
        rows.push(...warmRows(a, w));
      }
      if (ONLY.includes('aws-logs')) {
        console.error('(e) AWS log pages ...');
        const e = [await awsLogPages(10_000), await awsLogPages(LARGE)] as const;
        results.aws_log_pages = e;
        rows.push(...awsLogRows(e[0], e[1]));
      }
      if (ONLY.includes('bundles')) {
        console.error('(h) Lambda bundles ...');
        const f = await bundleImports(work);
        results.bundle_imports = f;
        rows.push(...bundleRows(f));
      }
      if (rows.length > 0) {
        printTable(rows);
        saveResults(results);
      }
      if (ONLY.includes('soak')) await soakBench(work);
      return;
    }
    console.error('(a) end to end ...');
    const a = await endToEnd(work);
    console.error('(a-warm, f, g) warm kernels ...');
    const w = await warmBench(work, RUNS, a.direct_ms);
    console.error('(b) latency ...');
    const b = [await latency(work, 100), await latency(work, 10_000)];
    console.error('(c) page cost ...');
    const c = [await pageCost(work, 1000), await pageCost(work, LARGE)];
    const [small, large] = c as [Awaited<ReturnType<typeof pageCost>>, Awaited<ReturnType<typeof pageCost>>];
    console.error('(d) long log line ...');
    const d = await longLineTail(work);
    console.error('(e) AWS log pages ...');
    const e = [await awsLogPages(10_000), await awsLogPages(LARGE)] as const;
    console.error('(h) Lambda bundles ...');
    const f = await bundleImports(work);

    const rows = [
      ...warmRows(a, w),
      ...b.flatMap((r) => [
        [
          `(b) create, ${r.stored} stored`,
          `p50 ${ms(r.create_p50_ms)}`,
          `p99 ${ms(r.create_p99_ms)}`,
          '',
          'p99 < 50 ms',
        ],
        [
          `(b) get, ${r.stored} stored`,
          `p50 ${ms(r.get_p50_ms)}`,
          `raw read ${ms(r.raw_get_p50_ms)}`,
          `${r.get_vs_raw.toFixed(2)}x`,
          '<= 2x',
        ],
      ]),
      [
        `(c) first list page, ${small.records} vs ${large.records}`,
        ms(small.list_ms),
        ms(large.list_ms),
        `${(large.list_ms / small.list_ms).toFixed(2)}x`,
        '<= 1.2x',
      ],
      [
        `(c) log page, ${small.records} vs ${large.records} lines`,
        ms(small.log_page_ms),
        ms(large.log_page_ms),
        `${(large.log_page_ms / small.log_page_ms).toFixed(2)}x`,
        '<= 1.2x',
      ],
      [
        `(c) log tail, ${small.records} vs ${large.records} lines`,
        ms(small.log_tail_ms),
        ms(large.log_tail_ms),
        `${(large.log_tail_ms / small.log_tail_ms).toFixed(2)}x`,
        '<= 1.2x',
      ],
      ...longLineRows(d),
      ...awsLogRows(e[0], e[1]),
      ...bundleRows(f),
    ];
    printTable(rows);
    saveResults({
      end_to_end: a,
      warm: w,
      latency: b,
      page_cost: c,
      long_line_tail: d,
      aws_log_pages: e,
      bundle_imports: f,
    });
    await soakBench(work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
