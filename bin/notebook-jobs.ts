/**
 * The notebook-jobs CLI. `serve` runs the local service; `tokens` manages the API tokens of an AWS
 * deployment directly in its DynamoDB table (with the caller's AWS credentials); every other command
 * talks to a service's REST API (URL from --url or NOTEBOOK_JOBS_URL, default: a local server).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { JobFiles, JobView as Job, LogPage, ResultView } from '../lambda/core/contract.ts';
import { filePathProblem } from '../lambda/core/job-files.ts';
import {
  DATA_DIR_VARIABLE,
  DEFAULT_DATA_DIR,
  DEFAULT_SERVICE_URL,
  DEFAULT_TIMEOUT_SECONDS,
  SETTINGS,
} from '../lambda/core/settings.ts';
import { uploadFiles, tokens } from './cli-commands.ts';
import { describe, describeResult, follow } from './cli-output.ts';
import { parse, CliError, intOption, Api } from './cli-common.ts';

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
                                env:VAR, file:PATH locally; secretsmanager:NAME or
                                ssm:/PATH on AWS
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
        port: intOption(values, 'port', SETTINGS.port),
        host: values.host,
        data: values.data,
        workspace: values.workspace,
        maxConcurrent: intOption(values, 'max-concurrent', SETTINGS.maxConcurrentJobs),
        warmKernels: intOption(values, 'warm-kernels', SETTINGS.warmKernels),
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
