/**
 * `npm run image:test [-- --platform linux/arm64|linux/amd64]`: builds the runner image
 * (container/Dockerfile) and runs one parameterized notebook per kernel (Python, C#, F#,
 * PowerShell) and one with a failing cell per kernel through the real runner and papermill, in a
 * container started the way the task definition starts it: read-only root filesystem, the runner as
 * root and kernels as `kernel`, /tmp as the one writable volume (filled from the image, as Fargate
 * fills task storage), an init process, the task's default CPU and memory, and the task
 * definition's environment. Those conditions are read from the synthesized stack
 * (`productionRunArgs`), so the test follows lib/runner-task.ts instead of copying it.
 *
 * What stands in for AWS, on the host's loopback (`--network host`, so Linux or Docker Desktop with
 * host networking): dynalite for the table, a small S3 server for the bucket, STS and EventBridge
 * stand-ins (test/helpers). Each job is stored as the api Lambda stores it (parameters injected by
 * the service's own code) and run as RunTask would (NOTEBOOK_JOBS_JOB_ID, NOTEBOOK_JOBS_TENANT).
 *
 * Checks per kernel: the job completed, the parameters arrived (the notebook prints what it got),
 * the executed notebook and its HTML copy were saved, and a failing cell ends the job `failed` with
 * `error.type: cell_error` naming that cell, with the notebook saved up to it.
 *
 * Needs a Docker engine; exits 2 with a message saying so when there is none.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { arch } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import dynalite from 'dynalite';
import { createDocumentClient } from '../lambda/adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { createJobTable } from '../lambda/adapters/dynamodb/table.ts';
import { MonotonicJobIds } from '../lambda/core/ids.ts';
import type { JobRecord } from '../lambda/core/job.ts';
import { injectParameters, languageForKernel } from '../lambda/notebook/parameters.ts';
import type { Notebook } from '../lambda/notebook/notebook.ts';
import { NotebookJobsStack } from '../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../lib/stack-config.ts';
import { startFakeAws } from '../test/helpers/fake-aws.ts';
import { startFakeS3, type FakeS3 } from '../test/helpers/fake-s3.ts';
import { jobRecord } from '../test/helpers/jobs.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMAGE = 'notebook-jobs-runner:image-test';
const BUCKET = 'notebook-jobs-image-test';
const TABLE = 'image-test';
const TENANT = 'acme';
const RUNNER_ROLE = 'arn:aws:iam::111122223333:role/NotebookJobs-RunnerRole';
/** A job's whole run, kernel start included (.NET kernels take tens of seconds on one vCPU). */
const JOB_TIMEOUT_MS = 10 * 60_000;

/** Values the notebooks get; each prints `greeting=... doubled=... enabled=...` from them. */
const PARAMETERS = { greeting: 'héllo "wörld"', count: 21, enabled: true };
const EXPECTED_LINE = 'greeting=héllo "wörld" doubled=42 enabled=yes';

interface KernelCase {
  kernel: string;
  /** The parameters cell (defaults), the cell printing what arrived, and a cell that fails. */
  defaults: string;
  print: string;
  fail: string;
}

const KERNELS: KernelCase[] = [
  {
    kernel: 'python3',
    defaults: 'greeting = "default"\ncount = 1\nenabled = False',
    print: "print(f\"greeting={greeting} doubled={count * 2} enabled={'yes' if enabled else 'no'}\")",
    fail: 'raise ValueError("boom from the image test")',
  },
  {
    kernel: '.net-csharp',
    defaults: 'var greeting = "default";\nvar count = 1;\nvar enabled = false;',
    print:
      'Console.WriteLine($"greeting={greeting} doubled={count * 2} enabled={(enabled ? "yes" : "no")}");',
    fail: 'throw new InvalidOperationException("boom from the image test");',
  },
  {
    kernel: '.net-fsharp',
    defaults: 'let greeting = "default"\nlet count = 1\nlet enabled = false',
    print:
      'printfn "greeting=%s doubled=%d enabled=%s" greeting (count * 2) (if enabled then "yes" else "no")',
    fail: 'failwith "boom from the image test"',
  },
  {
    kernel: '.net-pwsh',
    defaults: '$greeting = "default"\n$count = 1\n$enabled = $false',
    print:
      "Write-Output \"greeting=$greeting doubled=$($count * 2) enabled=$(if ($enabled) { 'yes' } else { 'no' })\"",
    fail: 'throw "boom from the image test"',
  },
];

interface ContainerDefinition {
  User: string;
  ReadonlyRootFilesystem: boolean;
  LinuxParameters?: { InitProcessEnabled?: boolean };
  MountPoints: { ContainerPath: string; ReadOnly: boolean }[];
  Environment: { Name: string; Value: unknown }[];
}

/**
 * `docker run` options reproducing the runner container of a synthesized stack: user, read-only
 * root, init process, one anonymous volume per writable mount point (Docker fills a new volume from
 * the image, as Fargate does task storage), the task's CPU and memory, and every environment
 * variable whose value is fixed at synth (the others name deployed resources: `overrides` gives
 * them, and must give each one).
 */
export function productionRunArgs(template: Template, overrides: Record<string, string>): string[] {
  const [taskDefinition] = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
  if (!taskDefinition) throw new Error('the stack has no task definition');
  const properties = taskDefinition.Properties as {
    Cpu: string;
    Memory: string;
    ContainerDefinitions: ContainerDefinition[];
  };
  const [container] = properties.ContainerDefinitions;
  if (!container) throw new Error('the task definition has no container');
  const args = ['--user', container.User];
  if (container.ReadonlyRootFilesystem) args.push('--read-only');
  if (container.LinuxParameters?.InitProcessEnabled) args.push('--init');
  for (const mount of container.MountPoints) {
    if (mount.ReadOnly) throw new Error(`read-only mount ${mount.ContainerPath} is not reproduced`);
    args.push('--volume', mount.ContainerPath);
  }
  args.push('--cpus', String(Number(properties.Cpu) / 1024), '--memory', `${properties.Memory}m`);
  const environment: Record<string, string> = {};
  for (const { Name, Value } of container.Environment) {
    if (typeof Value === 'string') environment[Name] = Value;
    else if (!(Name in overrides)) throw new Error(`no value for ${Name} (a deployed resource's name)`);
  }
  for (const [name, value] of Object.entries({ ...environment, ...overrides })) {
    args.push('--env', `${name}=${value}`);
  }
  return args;
}

/** The stack as `cdk synth` builds it for `architecture` (bundling skipped: only the template is read). */
function synthesize(architecture: 'arm64' | 'x86_64'): Template {
  const cdkJson = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')) as {
    context: Record<string, unknown>;
  };
  const app = new App({
    context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], taskArchitecture: architecture },
  });
  return Template.fromStack(new NotebookJobsStack(app, 'ImageTest', { config: readStackConfig(app.node) }));
}

function codeCell(source: string, tags: string[] = []) {
  return { cell_type: 'code', execution_count: null, metadata: { tags }, outputs: [], source };
}

function notebookFor(kernel: string, cells: object[]): Notebook {
  return {
    cells,
    metadata: { kernelspec: { name: kernel, display_name: kernel } },
    nbformat: 4,
    nbformat_minor: 4,
  } as unknown as Notebook;
}

interface ExecutedNotebook {
  cells: { outputs?: { text?: string | string[]; data?: Record<string, string | string[]> }[] }[];
}

/** Every text a notebook's outputs show: streams and text/plain (PowerShell's pipeline output). */
function outputTexts(nb: ExecutedNotebook, cell: number): string {
  return (nb.cells[cell]?.outputs ?? [])
    .map((output) => [output.text, output.data?.['text/plain']].flat().filter(Boolean).join(''))
    .join('');
}

function fail(message: string): never {
  throw new Error(message);
}

async function main(): Promise<number> {
  const platformArg = process.argv.indexOf('--platform');
  const platform =
    platformArg > 0 ? process.argv[platformArg + 1] : `linux/${arch() === 'arm64' ? 'arm64' : 'amd64'}`;
  if (platform !== 'linux/arm64' && platform !== 'linux/amd64') {
    console.error(`--platform must be linux/arm64 or linux/amd64, got ${platform}`);
    return 2;
  }
  const docker = spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' });
  if (docker.error) {
    console.error(
      'image:test needs Docker, and there is no `docker` command here. It builds container/Dockerfile ' +
        'and runs notebooks in the image, so it runs on a machine with a Docker engine (CI: .github/workflows/image.yml).',
    );
    return 2;
  }
  if (docker.status !== 0) {
    console.error(`image:test needs a Docker engine, and none answered:\n${docker.stderr.trim()}`);
    return 2;
  }

  console.log(`building ${IMAGE} for ${platform} (Docker ${docker.stdout.trim()})`);
  const build = spawnSync(
    'docker',
    ['build', '--file', 'container/Dockerfile', '--platform', platform, '--tag', IMAGE, '.'],
    { cwd: ROOT, stdio: 'inherit' },
  );
  if (build.status !== 0) {
    console.error('the image did not build');
    return 1;
  }
  const template = synthesize(platform === 'linux/arm64' ? 'arm64' : 'x86_64');

  const db = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => db.listen(0, '127.0.0.1', () => resolve()));
  const dynamodbEndpoint = `http://127.0.0.1:${(db.address() as AddressInfo).port}`;
  const client = createDocumentClient({ endpoint: dynamodbEndpoint });
  await createJobTable(client, TABLE);
  const store = new DynamoDbJobStore({ client, tableName: TABLE });
  const s3 = await startFakeS3();
  const aws = await startFakeAws(() => 'ASIAIMAGETEST');
  const base = productionRunArgs(template, {
    NOTEBOOK_JOBS_TABLE: TABLE,
    NOTEBOOK_JOBS_BUCKET: BUCKET,
    NOTEBOOK_JOBS_RUNNER_ROLE_ARN: RUNNER_ROLE,
    NOTEBOOK_JOBS_EVENT_BUS: 'default',
    AWS_REGION: 'us-east-1',
    // What the stand-ins need; on AWS the task role's credentials come from ECS instead.
    NOTEBOOK_JOBS_DYNAMODB_ENDPOINT: dynamodbEndpoint,
    NOTEBOOK_JOBS_S3_ENDPOINT: s3.url,
    AWS_ENDPOINT_URL_STS: aws.url,
    AWS_ENDPOINT_URL_EVENTBRIDGE: aws.url,
    AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  });

  const ids = new MonotonicJobIds();
  const results: { name: string; error?: string }[] = [];
  try {
    for (const kase of KERNELS) {
      for (const failing of [false, true]) {
        const name = `${kase.kernel} ${failing ? 'failing cell -> cell_error' : 'parameters, outputs, HTML'}`;
        const started = Date.now();
        try {
          await runCase(kase, failing, { store, s3, ids, platform, base });
          results.push({ name });
          // Container start to exit: kernel start plus the cells (docs/deploy.md, start latency).
          console.log(`ok      ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        } catch (error) {
          results.push({ name, error: error instanceof Error ? error.message : String(error) });
          console.log(`FAILED  ${name}: ${results.at(-1)?.error}`);
        }
      }
    }
  } finally {
    await s3.close();
    await aws.close();
    await new Promise<void>((resolve) => db.close(() => resolve()));
  }
  const failed = results.filter((r) => r.error).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

async function runCase(
  kase: KernelCase,
  failing: boolean,
  ctx: { store: DynamoDbJobStore; s3: FakeS3; ids: MonotonicJobIds; platform: string; base: string[] },
): Promise<void> {
  const language = languageForKernel(kase.kernel) ?? fail(`no language for ${kase.kernel}`);
  const cells = [codeCell(kase.defaults, ['parameters']), codeCell(kase.print)];
  if (failing) cells.push(codeCell(kase.fail), codeCell(kase.print));
  // Stored the way the api Lambda stores a submission: parameters injected by the service's code.
  const notebook = injectParameters(notebookFor(kase.kernel, cells), PARAMETERS, language, kase.kernel);
  const jobId = ctx.ids.jobId();
  const key = (prefix: string, file: string) => `${BUCKET}/${prefix}/${TENANT}/${jobId}/${file}`;
  ctx.s3.objects.set(key('inputs', 'nb.ipynb'), Buffer.from(JSON.stringify(notebook)));
  await ctx.store.create(
    jobRecord(jobId, {
      tenant: TENANT,
      kernel: kase.kernel,
      language,
      parameters: PARAMETERS,
      notebook: { name: 'nb.ipynb', uri: `s3://${key('inputs', 'nb.ipynb')}` },
      output_uri: `s3://${key('outputs', 'nb.ipynb')}`,
      output_saved: false,
    } as Partial<JobRecord>),
  );
  await ctx.store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: new Date().toISOString(),
    attempt: 1,
  });

  const code = await runContainer([
    ...ctx.base,
    '--env',
    `NOTEBOOK_JOBS_JOB_ID=${jobId}`,
    '--env',
    `NOTEBOOK_JOBS_TENANT=${TENANT}`,
    '--platform',
    ctx.platform,
    IMAGE,
  ]);
  const job = (await ctx.store.get(jobId)) ?? fail('the job record is gone');
  const saved = ctx.s3.objects.get(key('outputs', 'nb.ipynb'));
  if (!saved) fail(`no executed notebook saved (job ${job.status}: ${JSON.stringify(job.error)})`);
  const executed = JSON.parse(saved.toString('utf8')) as ExecutedNotebook;
  // Cells: parameters, injected-parameters, print, [fail, print].
  const printed = outputTexts(executed, 2);
  if (!printed.includes(EXPECTED_LINE)) fail(`the notebook printed ${JSON.stringify(printed)}`);
  if (!failing) {
    if (code !== 0 || job.status !== 'completed')
      fail(`exit ${code}, job ${job.status}: ${JSON.stringify(job.error)}`);
    const html =
      ctx.s3.objects.get(key('outputs', 'nb.html'))?.toString('utf8') ?? fail('no HTML copy saved');
    if (!html.includes('doubled=42')) fail('the HTML copy does not show the outputs');
    return;
  }
  if (job.status !== 'failed' || job.error?.type !== 'cell_error' || job.error.cell_index !== 3)
    fail(`expected failed/cell_error at cell 3, got ${job.status}: ${JSON.stringify(job.error)}`);
  if (!JSON.stringify(job.error).includes('boom from the image test'))
    fail(`the error does not carry the exception: ${JSON.stringify(job.error)}`);
  if (outputTexts(executed, 4) !== '') fail('a cell after the failing one ran');
}

/** `docker run --rm --network host ...`; the container's output goes to this process's. */
function runContainer(args: string[]): Promise<number | null> {
  const child = spawn('docker', ['run', '--rm', '--network', 'host', ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), JOB_TIMEOUT_MS);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
