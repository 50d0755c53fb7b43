/**
 * The notebook-jobs CLI. `serve` runs the local service; `tokens` manages the API tokens of an AWS
 * deployment directly in its DynamoDB table (with the caller's AWS credentials); every other command
 * talks to a service's REST API (URL from --url or NOTEBOOK_JOBS_URL, default: a local server).
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { createGzip } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { JobFiles, JobView as Job, LogPage, ResultView } from '../lambda/core/contract.ts';
import {
  filePathProblem,
  globMatcher,
  RESERVED_FILE_PATHS,
  SKIPPED_FOLDERS,
} from '../lambda/core/job-files.ts';
import {
  DATA_DIR_VARIABLE,
  DEFAULT_DATA_DIR,
  DEFAULT_SERVICE_URL,
  DEFAULT_TIMEOUT_SECONDS,
  SETTINGS,
} from '../lambda/core/settings.ts';

const HELP = `notebook-jobs: run Jupyter notebooks as asynchronous jobs

Usage: notebook-jobs <command> [options]

Commands:
  serve                         run the local service (REST API and MCP at /mcp on 127.0.0.1)
      --port N                  port (${SETTINGS.port.variable}, default ${SETTINGS.port.default})
      --host H                  interface (default 127.0.0.1)
      --data DIR                data folder (${DATA_DIR_VARIABLE}, default ./${DEFAULT_DATA_DIR})
      --workspace DIR           folder file:// notebooks may be submitted from (default: cwd)
      --max-concurrent N        jobs running at once (${SETTINGS.maxConcurrentJobs.variable}, default ${SETTINGS.maxConcurrentJobs.default})
      --warm-kernels N          python3 kernels kept started ahead of demand, one per job
                                (${SETTINGS.warmKernels.variable}, default ${SETTINGS.warmKernels.default}; 0: none)
      --python PATH             interpreter with nbclient + ipykernel (NOTEBOOK_JOBS_PYTHON)
      --kernel-user NAME        run kernels as this user (NOTEBOOK_JOBS_KERNEL_USER; the service
                                must run as root); without it a kernel runs as the service's user
                                and can read its process
      --allowed-hosts H1,H2     Host names accepted besides 127.0.0.1, localhost and [::1]
                                (NOTEBOOK_JOBS_ALLOWED_HOSTS; NAME or NAME:PORT)
      --oauth-issuer URL        also accept JWT access tokens from this OAuth 2.1 / OpenID
                                authorization server (NOTEBOOK_JOBS_OAUTH_ISSUER; tenant from the
                                NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM claim, default sub)
      --oauth-audience URL      the resource tokens must be issued for (NOTEBOOK_JOBS_OAUTH_AUDIENCE;
                                default this server's /mcp URL)
                                The server is for the local user: it refuses other Host headers
                                and browser Origins (more origins: NOTEBOOK_JOBS_ALLOWED_ORIGINS),
                                and takes JSON bodies only as application/json. With
                                NOTEBOOK_JOBS_TOKEN set, every route but /v1/health requires
                                Authorization: Bearer <token> (the CLI sends it).
      --secret-env-prefix P     jobs' env: secrets may name only this server's variables
                                starting with P (NOTEBOOK_JOBS_SECRET_ENV_PREFIX, default
                                NOTEBOOK_SECRET_)
      --secrets-dir DIR         jobs' file: secrets are files under DIR
                                (NOTEBOOK_JOBS_SECRETS_DIR; default: no file: secrets)
  run <notebook.ipynb>          submit a notebook as a job and print its id
      -p, --param NAME VALUE    a parameter; VALUE is parsed as JSON, else taken as a string
      --kernel NAME             kernel (default: the notebook's kernelspec, else python3)
      --timeout SECONDS         whole-job timeout (default ${DEFAULT_TIMEOUT_SECONDS})
      --cell-timeout SECONDS    per-cell timeout
      --priority N              higher starts first (default 0)
      --tag KEY=VALUE           a tag (repeatable)
      --idempotency-key KEY     replaying the same key returns the same job
      --allow-unknown-parameters
      --files SPEC              input files, placed beside the notebook in its working folder:
                                "." (the notebook's whole folder), a folder, or a path or glob
                                relative to the notebook's folder ('data/*.csv', utils.py);
                                repeatable. They are sent as one uploaded .tar.gz archive
      --secret NAME=REF         a secret for the kernel's environment, by reference (repeatable):
                                env:VAR, file:PATH locally; secretsmanager:NAME on AWS
      --redact-param NAME       keep this parameter's value out of notebooks, logs and the job
                                view (repeatable)
      --wait                    follow progress until the job ends, then print the result
  status <job_id>               status and progress
  logs <job_id>                 log lines  [--tail N] [--follow]
  cancel <job_id>               cancel a queued or running job
  list                          jobs, newest first  [--status S] [--tag K=V] [--limit N]
  result <job_id>               result summary (cells, errors, named results)
  output <job_id> -o FILE       download the executed notebook (HTML when FILE ends in .html)
  files <job_id>                the files the notebook created or changed (path, size, type)
      -o DIR                    download them into DIR (folders made as needed)
  inspect <notebook.ipynb>      kernel, parameters and cells of a notebook
  delete <job_id>               delete an ended job
  cleanup --older-than HOURS    delete ended jobs older than HOURS
  tokens create --tenant T      create an API token for an AWS deployment (printed once)
      --scopes read,write       read: GET requests; write: everything else (default both)
      --expires-in-days N       the token stops working after N days (default: never)
      --description TEXT        what the token is for
      --notebook-role ARN       the tenant's IAM role for its notebooks: the runner assumes it with
                                the external id notebook-jobs:<tenant> and gives the kernel only
                                those credentials (without one: no AWS credentials at all). Kept
                                with the tenant; a later --notebook-role replaces it (docs/deploy.md)
  tokens list --tenant T        a tenant's tokens (ids, scopes, expiry; never the tokens)
  tokens revoke --tenant T ID   revoke a token by its id (tok_...)
      --table NAME              the deployment's table (NOTEBOOK_JOBS_TABLE); uses your AWS
                                credentials and region (AWS_PROFILE, AWS_REGION)

Global options:
  --url URL                     service URL (NOTEBOOK_JOBS_URL, default ${DEFAULT_SERVICE_URL})
                                NOTEBOOK_JOBS_TOKEN is sent as a bearer token: an AWS deployment
                                needs one (see tokens create), a local server started with one too
  --json                        print raw JSON
  -h, --help                    this help

Exit status: 0 success; 1 the job did not complete (run --wait) or the service refused or could
not be reached; 2 bad usage.
`;

const OPTIONS = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  port: { type: 'string' },
  host: { type: 'string' },
  data: { type: 'string' },
  workspace: { type: 'string' },
  'max-concurrent': { type: 'string' },
  'warm-kernels': { type: 'string' },
  python: { type: 'string' },
  'allowed-hosts': { type: 'string' },
  'kernel-user': { type: 'string' },
  'secret-env-prefix': { type: 'string' },
  'secrets-dir': { type: 'string' },
  secret: { type: 'string', multiple: true },
  'redact-param': { type: 'string', multiple: true },
  'oauth-issuer': { type: 'string' },
  'oauth-audience': { type: 'string' },
  param: { type: 'string', short: 'p', multiple: true },
  kernel: { type: 'string' },
  timeout: { type: 'string' },
  'cell-timeout': { type: 'string' },
  priority: { type: 'string' },
  tag: { type: 'string', multiple: true },
  'idempotency-key': { type: 'string' },
  'allow-unknown-parameters': { type: 'boolean' },
  wait: { type: 'boolean' },
  files: { type: 'string', multiple: true },
  tail: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  status: { type: 'string' },
  limit: { type: 'string' },
  output: { type: 'string', short: 'o' },
  'older-than': { type: 'string' },
  tenant: { type: 'string' },
  scopes: { type: 'string' },
  'expires-in-days': { type: 'string' },
  description: { type: 'string' },
  'notebook-role': { type: 'string' },
  table: { type: 'string' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parse>['values'];

/** A failure to report without a stack trace; exit 2 for usage errors, 1 for everything else. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

function parse(argv: string[]) {
  // `-p name value` takes two words; parseArgs takes one, so join them first.
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-p' || arg === '--param') {
      const name = argv[i + 1];
      const value = argv[i + 2];
      if (name === undefined || value === undefined)
        throw new CliError(`${arg} takes a name and a value: ${arg} epochs 10`);
      joined.push('--param', `${name}=${value}`);
      i += 2;
    } else joined.push(arg);
  }
  return parseArgs({ args: joined, options: OPTIONS, allowPositionals: true, strict: true });
}

class Api {
  constructor(
    readonly base: string,
    /** Bearer token (NOTEBOOK_JOBS_TOKEN): an AWS deployment's, or the local server's when it has one. */
    private readonly token?: string,
  ) {}

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const response = await this.fetch(method, path, body, headers);
    const text = await response.text();
    const data = text
      ? (JSON.parse(text) as T & { error?: { message: string } })
      : ({} as T & { error?: { message: string } });
    if (!response.ok) throw new CliError(`${response.status}: ${data.error?.message ?? text}`, 1);
    return data;
  }

  async fetch(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    raw?: Buffer,
  ): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: raw ? new Uint8Array(raw) : body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new CliError(
        `cannot reach ${this.base} (${(error as Error).cause ?? (error as Error).message}); start it with: notebook-jobs serve`,
        1,
      );
    }
  }
}

function parseParam(raw: string): [string, unknown] {
  const at = raw.indexOf('=');
  const name = raw.slice(0, at);
  const text = raw.slice(at + 1);
  try {
    return [name, JSON.parse(text)];
  } catch {
    return [name, text];
  }
}

/** `NAME=REF`: the reference is sent as is; the service checks it. */
function parseSecret(raw: string): [string, string] {
  const at = raw.indexOf('=');
  if (at <= 0)
    throw new CliError(
      `--secret takes NAME=REFERENCE (e.g. DB_PASSWORD=env:NOTEBOOK_SECRET_DB), not "${raw}"`,
    );
  return [raw.slice(0, at), raw.slice(at + 1)];
}

function intOption(values: Values, name: keyof Values): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new CliError(`--${String(name)} must be a number, got "${String(raw)}"`);
  return n;
}

function tagsOf(list: string[] | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const tag of list ?? []) {
    const at = tag.indexOf('=');
    if (at < 1) throw new CliError(`--tag takes KEY=VALUE, got "${tag}"`);
    tags[tag.slice(0, at)] = tag.slice(at + 1);
  }
  return tags;
}

async function readNotebook(path: string | undefined): Promise<{ content: unknown; name: string }> {
  if (!path) throw new CliError('name a notebook file, e.g. examples/parameterized.ipynb');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return { content: JSON.parse(text), name: basename(path) };
  } catch {
    throw new CliError(`${path} is not JSON: is it a .ipynb notebook?`);
  }
}

/**
 * Packs the chosen files of the notebook's folder into a .tar.gz, uploads it (POST /v1/uploads,
 * then PUT), and returns the URI to submit as files.uri. Paths in the archive are relative to the
 * notebook's folder, so the files land beside the notebook in the job's working folder.
 */
async function uploadFiles(api: Api, folder: string, specs: string[], quiet: boolean): Promise<string> {
  const all = await listFolder(folder, '');
  const chosen = new Set<string>();
  for (const spec of specs) {
    const matches = spec === '.' || spec === './' ? () => true : globMatcher(relativeSpec(folder, spec));
    const hits = all.filter(matches);
    if (hits.length === 0) throw new CliError(`--files ${spec}: nothing matches in ${folder}`);
    for (const hit of hits) if (!RESERVED_FILE_PATHS.has(hit)) chosen.add(hit);
  }
  const pack = tarPack();
  const gzipped = pack.pipe(createGzip());
  const chunks: Buffer[] = [];
  gzipped.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((res, rej) => (gzipped.on('end', res), gzipped.on('error', rej)));
  for (const path of [...chosen].sort()) {
    const body = await readFile(join(folder, ...path.split('/')));
    await new Promise<void>((res, rej) =>
      pack.entry({ name: path, size: body.length, mode: 0o644 }, body, (e) => (e ? rej(e) : res())),
    );
  }
  pack.finalize();
  await done;
  const archive = Buffer.concat(chunks);
  const slot = await api.call<{ upload_url: string; notebook_uri: string }>('POST', '/v1/uploads', {
    name: 'files.tar.gz',
  });
  // The local server's upload URL is the service itself (send its token); elsewhere a presigned URL.
  const put = slot.upload_url.startsWith(api.base)
    ? await api.fetch(
        'PUT',
        slot.upload_url.slice(api.base.length),
        undefined,
        { 'content-type': 'application/octet-stream' },
        archive,
      )
    : await fetch(slot.upload_url, { method: 'PUT', body: new Uint8Array(archive) });
  if (!put.ok) throw new CliError(`uploading the files failed: ${put.status} ${await put.text()}`, 1);
  if (!quiet) console.error(`uploaded ${chosen.size} file(s) (${archive.length} bytes packed)`);
  return slot.notebook_uri;
}

/** A --files spec as a path relative to the notebook's folder ('./' dropped; a folder takes its files). */
function relativeSpec(folder: string, spec: string): string {
  const rel = relative(folder, resolve(folder, spec)).split(sep).join('/');
  if (rel.startsWith('..') || isAbsolute(rel))
    throw new CliError(`--files ${spec}: files must be in the notebook's folder ${folder} or below it`);
  return rel === '' ? '**' : rel;
}

/** Every regular file under a folder ('/'-separated relative paths); links to folders are not followed. */
async function listFolder(dir: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory()) {
      if (!SKIPPED_FOLDERS.has(entry.name))
        out.push(...(await listFolder(join(dir, entry.name), `${path}/`)));
    } else if (
      entry.isFile() ||
      (entry.isSymbolicLink() && (await stat(join(dir, entry.name)).catch(() => null))?.isFile())
    )
      out.push(path);
  }
  return out;
}

function bar(percent: number, width = 24): string {
  const filled = Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

function progressLine(job: Job): string {
  const p = job.progress;
  if (job.status === 'queued')
    return `queued${job.queue_position ? ` (position ${job.queue_position})` : ''}`;
  const stage = job.status === 'running' ? (job.stage ?? 'running') : job.status;
  const cell =
    job.status === 'running' && p.current_cell
      ? `  cell ${p.current_cell.index}: ${p.current_cell.source_preview}`
      : '';
  return `${bar(p.percent)} ${p.cells_executed}/${p.cells_total} cells  ${stage}${cell}`;
}

function describe(job: Job): string {
  const lines = [
    `${job.job_id}  ${job.status}${job.stage ? ` (${job.stage})` : ''}  ${job.notebook.name}`,
    progressLine(job),
  ];
  if (job.duration_seconds !== null) lines.push(`duration: ${job.duration_seconds} s`);
  if (job.error) {
    const where =
      job.error.cell_index !== undefined && job.error.cell_index !== null
        ? ` in cell ${job.error.cell_index}`
        : '';
    lines.push(`error (${job.error.type})${where}: ${job.error.message}`);
  }
  if (job.output.available) lines.push(`executed notebook: ${job.output.uri}`);
  return lines.join('\n');
}

function describeResult(result: ResultView): string {
  if (!result.summary) return `${result.status}: no executed notebook yet`;
  const { totals, named_results: named, cells } = result.summary;
  const lines = [
    `cells: ${Object.entries(totals)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  for (const cell of cells) {
    const time = cell.duration_seconds === null ? '' : ` ${cell.duration_seconds.toFixed(2)}s`;
    const text = cell.output_text.trim().split('\n').slice(-3).join(' | ');
    lines.push(`  [${cell.index}] ${cell.status}${time}${text ? `  ${text.slice(0, 100)}` : ''}`);
  }
  if (Object.keys(named).length) lines.push(`named results: ${JSON.stringify(named)}`);
  return lines.join('\n');
}

async function follow(api: Api, jobId: string, json: boolean): Promise<Job> {
  const tty = process.stderr.isTTY;
  let last = '';
  for (;;) {
    const job = await api.call<Job>('GET', `/v1/jobs/${jobId}`);
    const line = progressLine(job);
    if (!json && line !== last) {
      process.stderr.write(
        tty ? `\r\x1b[2K${line.slice(0, (process.stderr.columns ?? 100) - 1)}` : `${line}\n`,
      );
      last = line;
    }
    if (['completed', 'failed', 'cancelled'].includes(job.status)) {
      if (!json && tty) process.stderr.write('\n');
      return job;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** `tokens create|list|revoke`: straight to the deployment's table, not through its API. */
async function tokens(values: Values, positionals: string[], print: (data: unknown, human: string) => void) {
  const [, action, tokenId] = positionals;
  if (!action || !['create', 'list', 'revoke'].includes(action))
    throw new CliError('tokens needs create, list or revoke (see notebook-jobs --help)');
  if (!values.tenant) throw new CliError(`tokens ${action} needs --tenant TENANT`);
  const table = values.table ?? process.env.NOTEBOOK_JOBS_TABLE;
  if (!table) throw new CliError("name the deployment's table with --table NAME or NOTEBOOK_JOBS_TABLE");
  // Loaded here so the other commands never load the AWS SDK.
  const { AppError, InvalidRequestError } = await import('../lambda/core/errors.ts');
  const { createDocumentClient } = await import('../lambda/adapters/dynamodb/client.ts');
  const { DynamoDbTokenStore, parseScopes } = await import('../lambda/adapters/dynamodb/token-store.ts');
  const { DynamoDbTenantSettings } = await import('../lambda/adapters/dynamodb/tenant-settings.ts');
  const { checkNotebookRoleArn, notebookRoleExternalId } = await import('../lambda/core/notebook-role.ts');
  const client = createDocumentClient({
    endpoint: process.env.NOTEBOOK_JOBS_DYNAMODB_ENDPOINT || undefined,
    region: process.env.AWS_REGION || undefined,
  });
  const store = new DynamoDbTokenStore({ client, tableName: table });
  const describeToken = (t: { token_id: string; scopes: string[]; expires_at: string | null }) =>
    `${t.token_id}  scopes ${t.scopes.join(',')}  expires ${t.expires_at ?? 'never'}`;
  try {
    if (values['notebook-role'] !== undefined && action !== 'create')
      throw new CliError('--notebook-role goes with tokens create');
    if (action === 'create') {
      // Checked before anything is written: a bad ARN creates neither a token nor a setting.
      const role =
        values['notebook-role'] === undefined ? undefined : checkNotebookRoleArn(values['notebook-role']);
      if (role !== undefined)
        await new DynamoDbTenantSettings({ client, tableName: table }).setNotebookRole(values.tenant, role);
      const notebookRole =
        role === undefined
          ? {}
          : { notebook_role: { arn: role, external_id: notebookRoleExternalId(values.tenant) } };
      const created = await store.create({
        tenant: values.tenant,
        scopes: values.scopes === undefined ? undefined : parseScopes(values.scopes),
        expiresInDays: intOption(values, 'expires-in-days'),
        description: values.description,
      });
      print(
        { ...created, ...notebookRole },
        [
          created.token,
          `id ${describeToken(created)}  tenant ${created.tenant}`,
          'This is the only time the token is shown: store it now (e.g. export NOTEBOOK_JOBS_TOKEN=...).',
          ...(notebookRole.notebook_role
            ? [
                `notebook role ${notebookRole.notebook_role.arn}: its trust policy must allow the stack's RunnerRoleArn output with sts:ExternalId ${notebookRole.notebook_role.external_id} (docs/deploy.md)`,
              ]
            : []),
        ].join('\n'),
      );
    } else if (action === 'list') {
      const list = await store.list(values.tenant);
      const now = Date.now();
      const state = (t: (typeof list)[number]) =>
        t.revoked_at
          ? `revoked ${t.revoked_at}`
          : t.expires_at && Date.parse(t.expires_at) <= now
            ? 'expired'
            : 'active';
      const rows = list.map(
        (t) =>
          `${describeToken(t)}  ${state(t)}  created ${t.created_at}${t.description ? `  ${t.description}` : ''}`,
      );
      print({ tokens: list }, rows.join('\n') || `no tokens for tenant ${values.tenant}`);
    } else {
      if (!tokenId) throw new CliError('tokens revoke needs the token id: tokens revoke --tenant T tok_...');
      const revoked = await store.revoke(values.tenant, tokenId);
      print(revoked, `revoked ${revoked.token_id} (tenant ${revoked.tenant}) at ${revoked.revoked_at}`);
    }
    return 0;
  } catch (error) {
    if (error instanceof CliError) throw error;
    if (error instanceof InvalidRequestError) throw new CliError(error.message, 2);
    if (error instanceof AppError) throw new CliError(error.message, 1);
    throw new CliError(`cannot use table ${table}: ${(error as Error).message}`, 1);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [command, arg] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return command || values.help ? 0 : 2;
  }
  const api = new Api(
    (values.url ?? process.env.NOTEBOOK_JOBS_URL ?? DEFAULT_SERVICE_URL).replace(/\/$/, ''),
    process.env.NOTEBOOK_JOBS_TOKEN || undefined,
  );
  const print = (data: unknown, human: string) =>
    console.log(values.json ? JSON.stringify(data, null, 2) : human);
  const needId = () => {
    if (!arg) throw new CliError(`${command} needs a job id (see: notebook-jobs list)`);
    return encodeURIComponent(arg);
  };

  switch (command) {
    case 'serve': {
      const { serve } = await import('./serve.ts');
      await serve({
        port: intOption(values, 'port'),
        host: values.host,
        data: values.data,
        workspace: values.workspace,
        maxConcurrent: intOption(values, 'max-concurrent'),
        warmKernels: intOption(values, 'warm-kernels'),
        python: values.python,
        allowedHosts: values['allowed-hosts'],
        kernelUser: values['kernel-user'],
        secretEnvPrefix: values['secret-env-prefix'],
        secretsDir: values['secrets-dir'],
        oauthIssuer: values['oauth-issuer'],
        oauthAudience: values['oauth-audience'],
      });
      return new Promise<number>(() => undefined); // runs until a signal ends the process
    }
    case 'run': {
      const notebook = await readNotebook(arg);
      const files = values.files?.length
        ? { uri: await uploadFiles(api, dirname(resolve(arg as string)), values.files, values.json ?? false) }
        : undefined;
      const body = {
        notebook,
        files,
        parameters: Object.fromEntries((values.param ?? []).map(parseParam)),
        kernel: values.kernel,
        timeout_seconds: intOption(values, 'timeout'),
        cell_timeout_seconds: intOption(values, 'cell-timeout'),
        priority: intOption(values, 'priority'),
        tags: tagsOf(values.tag),
        allow_unknown_parameters: values['allow-unknown-parameters'],
        secrets: Object.fromEntries((values.secret ?? []).map(parseSecret)),
        redact_parameters: values['redact-param'],
      };
      const headers: Record<string, string> = values['idempotency-key']
        ? { 'idempotency-key': values['idempotency-key'] }
        : {};
      const job = await api.call<Job>('POST', '/v1/jobs', body, headers);
      if (!values.wait) {
        print(job, `${job.job_id}  ${job.status}\nfollow it with: notebook-jobs status ${job.job_id}`);
        return 0;
      }
      if (!values.json) console.error(`submitted ${job.job_id}`);
      const ended = await follow(api, job.job_id, values.json ?? false);
      const result = await api.call<ResultView>('GET', `/v1/jobs/${job.job_id}/result`);
      print({ job: ended, result }, `${describe(ended)}\n${describeResult(result)}`);
      return ended.status === 'completed' ? 0 : 1;
    }
    case 'status': {
      const job = await api.call<Job>('GET', `/v1/jobs/${needId()}`);
      print(job, describe(job));
      return 0;
    }
    case 'logs': {
      const id = needId();
      const tail = intOption(values, 'tail');
      const show = (line: { ts: string; stream: string; text: string }) =>
        console.log(values.json ? JSON.stringify(line) : `${line.ts} ${line.stream.padEnd(6)} ${line.text}`);
      let query = tail ? `tail=${tail}` : 'limit=1000';
      let ended = false;
      for (;;) {
        const page = await api.call<LogPage>('GET', `/v1/jobs/${id}/logs?${query}`);
        page.lines.forEach(show);
        query = `limit=1000&cursor=${encodeURIComponent(page.next_cursor)}`;
        if (!page.at_end) continue;
        // The runner writes its last lines before the job shows as ended, so one more pass after
        // seeing the end reads everything.
        if (!values.follow || ended) return 0;
        const job = await api.call<Job>('GET', `/v1/jobs/${id}`);
        ended = ['completed', 'failed', 'cancelled'].includes(job.status);
        if (!ended) await new Promise((r) => setTimeout(r, 1000));
      }
    }
    case 'cancel': {
      const job = await api.call<Job>('POST', `/v1/jobs/${needId()}/cancel`);
      print(job, `${job.job_id}  ${job.status}`);
      return 0;
    }
    case 'list': {
      const params = new URLSearchParams();
      if (values.status) params.set('status', values.status);
      if (values.tag?.[0]) params.set('tag', values.tag[0]);
      if (values.limit) params.set('limit', values.limit);
      const page = await api.call<{ jobs: Job[]; next_cursor: string | null }>('GET', `/v1/jobs?${params}`);
      const rows = page.jobs.map(
        (j) => `${j.job_id}  ${j.status.padEnd(9)}  ${j.created_at}  ${j.notebook.name}`,
      );
      print(page, rows.join('\n') || 'no jobs');
      return 0;
    }
    case 'result': {
      const result = await api.call<ResultView>('GET', `/v1/jobs/${needId()}/result`);
      print(result, describeResult(result));
      return 0;
    }
    case 'output': {
      if (!values.output) throw new CliError('output needs -o FILE');
      const format = values.output.endsWith('.html') ? 'html' : 'ipynb';
      const response = await api.fetch('GET', `/v1/jobs/${needId()}/output?format=${format}`);
      if (!response.ok) {
        const data = (await response.json()) as { error?: { message: string } };
        throw new CliError(`${response.status}: ${data.error?.message ?? response.statusText}`);
      }
      await writeFile(values.output, Buffer.from(await response.arrayBuffer()));
      console.log(`wrote ${resolve(values.output)}`);
      return 0;
    }
    case 'files': {
      const id = needId();
      const list = await api.call<JobFiles>('GET', `/v1/jobs/${id}/files`);
      const rows = list.files.map(
        (f) => `${String(f.size).padStart(10)}  ${f.media_type.padEnd(24)}  ${f.path}`,
      );
      if (list.note) rows.push(`note: ${list.note}`);
      if (!values.output) {
        print(list, rows.join('\n') || `no output files (job ${list.status})`);
        return 0;
      }
      for (const file of list.files) {
        const problem = filePathProblem(file.path);
        if (problem)
          throw new CliError(`the service listed a bad path ${JSON.stringify(file.path)}: ${problem}`, 1);
        const response = await api.fetch('GET', file.download);
        if (!response.ok) throw new CliError(`${response.status} downloading ${file.path}`, 1);
        const target = join(resolve(values.output), ...file.path.split('/'));
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, Buffer.from(await response.arrayBuffer()));
      }
      print(list, `${rows.join('\n')}\nwrote ${list.files.length} file(s) to ${resolve(values.output)}`);
      return 0;
    }
    case 'inspect': {
      const notebook = await readNotebook(arg);
      const info = await api.call<{
        kernel: string;
        language: string;
        parameters: Array<{ name: string; inferred_type: string | null; default: string; help: string }>;
        cells: Record<string, number>;
      }>('POST', '/v1/notebooks/inspect', { notebook });
      const params = info.parameters.map(
        (p) => `  ${p.name}: ${p.inferred_type ?? '?'} = ${p.default}${p.help ? `  # ${p.help}` : ''}`,
      );
      print(
        info,
        [
          `kernel: ${info.kernel} (${info.language})`,
          `cells: ${JSON.stringify(info.cells)}`,
          'parameters:',
          ...(params.length ? params : ['  (none)']),
        ].join('\n'),
      );
      return 0;
    }
    case 'delete': {
      const data = await api.call<unknown>('DELETE', `/v1/jobs/${needId()}`);
      print(data, `deleted ${arg}`);
      return 0;
    }
    case 'cleanup': {
      const hours = intOption(values, 'older-than');
      if (hours === undefined) throw new CliError('cleanup needs --older-than HOURS');
      const data = await api.call<{ deleted: string[]; count: number }>('POST', '/v1/jobs/cleanup', {
        older_than_hours: hours,
      });
      print(data, `deleted ${data.count} job(s)${data.count ? `: ${data.deleted.join(', ')}` : ''}`);
      return 0;
    }
    case 'tokens':
      return tokens(values, positionals, print);
    default:
      throw new CliError(`unknown command "${command}"; see notebook-jobs --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof CliError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`notebook-jobs: ${(error as Error).message}`);
      process.exit(error instanceof CliError ? error.exitCode : 2);
    }
    console.error(error);
    process.exit(1);
  },
);
