/**
 * Bench rows for the AWS side (split from run.ts): (e) log pages read through the S3 log-page reader, (h) each Lambda bundle's size and its load time.
 */
import { join } from 'node:path';
import { build } from 'esbuild';
import { statSync } from 'node:fs';
import { S3Client } from '@aws-sdk/client-s3';
import { S3LogPageReader } from '../lambda/adapters/aws/s3-log-page-reader.ts';
import { S3LogPageSink } from '../lambda/adapters/aws/s3-log-page-sink.ts';
import {
  ESM_REQUIRE_BANNER,
  FORMAT,
  lambdaAliases,
  MAIN_FIELDS,
  NODE_TARGET,
} from '../lambda/bundle/esbuild-config.ts';
import { startFakeS3 } from '../test/helpers/fake-s3.ts';
import { median, ms, run, RUNS, time } from './measure.ts';

/**
 * (e) The AWS log adapter on `lines` lines: the runner's sink writes them as pages to the fake S3,
 * then the first page (500 lines) and a tail of 500 are read through the api's reader.
 */
export async function awsLogPages(lines: number) {
  const s3 = await startFakeS3();
  try {
    const client = new S3Client({
      region: 'us-east-1',
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    });
    const job = { job_id: `job_01JD${'0'.repeat(20)}BENCH1`, runner_ref: null, tenant: 'bench', attempt: 1 };
    const sink = new S3LogPageSink(client, {
      bucket: 'bench',
      tenant: job.tenant,
      jobId: job.job_id,
      attempt: 1,
    });
    for (let i = 0; i < lines; i++)
      sink.write({ ts: new Date().toISOString(), stream: 'stdout', text: `line ${i}` });
    await sink.flush();
    const reader = new S3LogPageReader(client, { bucket: 'bench' });
    const page: number[] = [];
    const tail: number[] = [];
    for (let i = 0; i < 51; i++) {
      page.push(await time(() => reader.read(job, { limit: 500 })));
      tail.push(await time(() => reader.read(job, { limit: 500, tail: 500 })));
    }
    // The first round warms the code and the connection: left out.
    return {
      lines,
      objects: s3.objects.size,
      page_ms: median(page.slice(1)),
      tail_ms: median(tail.slice(1)),
    };
  } finally {
    await s3.close();
  }
}

export function awsLogRows(small: Awaited<ReturnType<typeof awsLogPages>>, large: typeof small): string[][] {
  return [
    [
      `(e) AWS log page (S3 pages), ${small.lines} vs ${large.lines} lines`,
      ms(small.page_ms),
      ms(large.page_ms),
      `${(large.page_ms / small.page_ms).toFixed(2)}x`,
      '<= 1.2x',
    ],
    [
      `(e) AWS log tail 500 (S3 pages), ${small.lines} vs ${large.lines} lines`,
      ms(small.tail_ms),
      ms(large.tail_ms),
      `${(large.tail_ms / small.tail_ms).toFixed(2)}x`,
      '<= 1.2x',
    ],
  ];
}

export const HANDLERS = ['api', 'mcp', 'task-events', 'sweeper', 'authorizer'] as const;

/** The size a Lambda bundle may have (issue 12). */
export const BUNDLE_LIMIT = 1024 * 1024;

/**
 * (h) Each Lambda bundle built as lib/house-function.ts builds it (the shared esbuild settings and
 * aliases, minified, the AWS SDK bundled, a linked source map), then imported by a fresh node
 * process as Lambda starts it (NODE_OPTIONS=--enable-source-maps), against a bare node start.
 */
export async function bundleImports(work: string) {
  const dir = join(work, 'bundles');
  const sizes: Record<string, number> = {};
  for (const name of HANDLERS) {
    const outfile = join(dir, name, 'index.mjs');
    await build({
      entryPoints: [join('lambda', 'handlers', `${name}.ts`)],
      outfile,
      bundle: true,
      minify: true,
      platform: 'node',
      target: NODE_TARGET,
      format: FORMAT,
      mainFields: MAIN_FIELDS,
      banner: { js: ESM_REQUIRE_BANNER },
      alias: lambdaAliases(),
      sourcemap: 'linked',
      sourcesContent: false,
      legalComments: 'none',
      logLevel: 'warning',
    });
    sizes[name] = statSync(outfile).size;
  }
  const node = (code: string) => () =>
    run(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', code]);
  const bare: number[] = [];
  const imports: Record<string, number[]> = Object.fromEntries(HANDLERS.map((name) => [name, []]));
  for (let i = 0; i < RUNS + 1; i++) {
    bare.push(await time(node('')));
    for (const name of HANDLERS)
      imports[name]!.push(await time(node(`await import(${JSON.stringify(join(dir, name, 'index.mjs'))});`)));
  }
  const bareMs = median(bare.slice(1));
  return {
    bare_node_ms: bareMs,
    bundles: HANDLERS.map((name) => ({
      handler: name,
      bytes: sizes[name] as number,
      import_ms: median(imports[name]!.slice(1)),
      ratio: median(imports[name]!.slice(1)) / bareMs,
    })),
  };
}

export function bundleRows(f: Awaited<ReturnType<typeof bundleImports>>): string[][] {
  return f.bundles.map((b) => [
    `(h) ${b.handler} bundle ${(b.bytes / 1024).toFixed(0)} KiB${b.bytes > BUNDLE_LIMIT ? ' (over 1 MiB)' : ''}: node + import`,
    `bare node ${ms(f.bare_node_ms)}`,
    ms(b.import_ms),
    `${b.ratio.toFixed(2)}x`,
    '<= 1 MiB',
  ]);
}
