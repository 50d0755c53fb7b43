/**
 * What a notebook can reach of the service (DESIGN 10, issue 9): the service is started as a real
 * `notebook-jobs serve` process with secrets in its environment (an ECS credentials URI, AWS keys,
 * the token variables) and in files only it may read; a real kernel then searches everywhere it
 * can for them. It must find none, and still complete and write in its working folder.
 *
 * Same-user mode (the default) can only promise the kernel's own environment: the kernel could
 * read the server's /proc/<pid>/environ as the same user. The full check needs --kernel-user, so it
 * needs root (CI runs as root and creates the user: .ci/run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codeCell, joined, makeNotebook, type NotebookOutput } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';

/** The kernel test user; CI creates it (useradd --system --no-create-home nbkernel). */
const KERNEL_USER = process.env.NOTEBOOK_JOBS_TEST_KERNEL_USER ?? 'nbkernel';
const IS_ROOT = process.getuid?.() === 0;
/** Only the random part travels to the notebook; the searched text is put together in the kernel. */
const MARKER_PREFIX = 'nbj-secret-';
const suffix = randomUUID();
const MARKER = `${MARKER_PREFIX}${suffix}`;
const TOKEN = `${MARKER}-token`;

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** The service's secrets: what the ECS agent, the AWS SDKs and our own settings put in env. */
const SECRET_ENV = {
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: `/v2/credentials/${MARKER}`,
  AWS_CONTAINER_AUTHORIZATION_TOKEN: MARKER,
  AWS_ACCESS_KEY_ID: `AKIA-${MARKER}`,
  AWS_SECRET_ACCESS_KEY: MARKER,
  AWS_SESSION_TOKEN: MARKER,
  NOTEBOOK_JOBS_MCP_TOKEN: TOKEN,
  NOTEBOOK_JOBS_TOKEN: TOKEN,
};

/**
 * The job store checks no credentials: can the kernel reach it and read its own job's record?
 * Tries every loopback TCP port listening and every Unix socket with a path, sending a DynamoDB
 * Scan of the service's table, and reports those whose answer holds this job's id (the name of the
 * kernel's working folder). Stores of other services on the machine do not hold it.
 */
const STORE_PROBE = [
  'import socket, concurrent.futures',
  'job_id = os.path.basename(os.getcwd()).encode()',
  'body = json.dumps({"TableName": "notebook-jobs"}).encode()',
  'request = (b"POST / HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/x-amz-json-1.0\\r\\n"',
  '    b"X-Amz-Target: DynamoDB_20120810.Scan\\r\\nX-Amz-Date: 20260101T000000Z\\r\\n"',
  '    b"Authorization: AWS4-HMAC-SHA256 Credential=x/20260101/local/dynamodb/aws4_request, "',
  '    b"SignedHeaders=host, Signature=00\\r\\nConnection: close\\r\\n"',
  '    b"Content-Length: %d\\r\\n\\r\\n" % len(body)) + body',
  'def holds_job(address):',
  '    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET',
  '    try:',
  '        with socket.socket(family) as s:',
  '            s.settimeout(1)',
  '            s.connect(address)',
  "            # A ZeroMQ socket (another kernel's, maybe another test's) greets first with 0xFF:",
  '            # leave it alone, as an HTTP request would reach that kernel as a message.',
  '            s.settimeout(0.3)',
  '            try:',
  '                if s.recv(1, socket.MSG_PEEK)[:1] == b"\\xff":',
  '                    return False',
  '            except socket.timeout:',
  '                pass',
  '            s.settimeout(1)',
  '            s.sendall(request)',
  '            answer = b""',
  '            while len(answer) < 10_000_000 and (chunk := s.recv(65536)):',
  '                answer += chunk',
  '            return job_id in answer',
  '    except OSError:',
  '        return False',
  'addresses = []',
  "for line in open('/proc/net/tcp').read().splitlines()[1:]:",
  '    local, state = line.split()[1], line.split()[3]',
  "    if state == '0A' and local.startswith('0100007F:'):",
  "        addresses.append(('127.0.0.1', int(local.split(':')[1], 16)))",
  "for line in open('/proc/net/unix').read().splitlines()[1:]:",
  '    fields = line.split()',
  "    if len(fields) >= 8 and fields[7].startswith('/'):",
  '        addresses.append(fields[7])',
  'addresses = list(dict.fromkeys(addresses))  # a listening socket and its connections share a path',
  'with concurrent.futures.ThreadPoolExecutor(32) as pool:',
  '    reached = [a for a, hit in zip(addresses, pool.map(holds_job, addresses)) if hit]',
  "print(json.dumps({'store_tried': len(addresses), 'store_reached': [str(a) for a in reached]}))",
].join('\n');

/** The notebook that looks for the marker everywhere, and reports as JSON lines. */
const PROBE = makeNotebook([
  codeCell("marker_suffix = ''\ndata_dir = ''\nsecret_file = ''", ['parameters']),
  codeCell(
    [
      'import glob, json, os',
      `needle = (${JSON.stringify(MARKER_PREFIX.slice(0, 4))} + ${JSON.stringify(MARKER_PREFIX.slice(4))} + marker_suffix).encode()`,
      'def holds(path):',
      '    try:',
      "        with open(path, 'rb') as f:",
      '            return needle in f.read()',
      '    except OSError:',
      '        return None  # not readable',
      "report = {'uid': os.getuid(), 'cwd': os.getcwd()}",
      "report['environ'] = [n for n, v in os.environ.items() if needle in f'{n}={v}'.encode()]",
      "report['service_variables'] = sorted(n for n in os.environ if n.startswith(('AWS_', 'NOTEBOOK_JOBS_')))",
      "report['own_processes'] = [p for p in ('/proc/self/environ', f'/proc/{os.getppid()}/environ') if holds(p)]",
      "paths = glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline')",
      'results = {p: holds(p) for p in paths}',
      "report['proc_read'] = sum(1 for r in results.values() if r is not None)",
      "report['proc_found'] = sorted(p for p, r in results.items() if r)",
      "report['data_found'], report['data_read'] = [], 0",
      'for root, dirs, files in os.walk(data_dir):',
      '    for name in files:',
      '        r = holds(os.path.join(root, name))',
      "        report['data_read'] += r is not None",
      "        report['data_found'] += [os.path.join(root, name)] if r else []",
      "report['data_listable'] = os.access(data_dir, os.R_OK | os.X_OK)",
      "report['secret_file'] = holds(secret_file)",
      "with open('written-by-kernel.txt', 'w') as f:",
      "    f.write('mine')",
      "report['wrote_cwd'] = open('written-by-kernel.txt').read() == 'mine'",
      'print(json.dumps(report))',
    ].join('\n'),
  ),
  codeCell(STORE_PROBE),
]);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

interface Service {
  url: string;
  dataDir: string;
  secretFile: string;
  request(method: string, path: string, body?: unknown): Promise<any>;
}

/** `notebook-jobs serve` as its own process, with the secrets in its environment and files. */
async function startService(kernelUser?: string): Promise<Service> {
  const dataDir = mkdtempSync(join(tmpdir(), 'notebook-jobs-isolation-'));
  writeFileSync(join(dataDir, 'service-credentials'), MARKER, { mode: 0o600 });
  const secretFile = join(tmpdir(), `notebook-jobs-secret-${randomUUID()}`);
  writeFileSync(secretFile, MARKER, { mode: 0o600 });
  const port = await freePort();
  const args = [
    '--import',
    'tsx',
    'bin/notebook-jobs.ts',
    'serve',
    '--port',
    String(port),
    '--data',
    dataDir,
  ];
  // With a kernel user the probe runs in a warm kernel (the default pool), else in a cold one: both
  // kinds must be isolated alike.
  if (kernelUser) args.push('--kernel-user', kernelUser);
  else args.push('--warm-kernels', '0');
  let stderr = '';
  const child: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, ...SECRET_ENV, NOTEBOOK_JOBS_PYTHON: TEST_PYTHON },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  cleanups.push(async () => {
    // SIGTERM: the server closes and removes what it made outside the data folder.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(secretFile, { force: true });
  });
  const url = `http://127.0.0.1:${port}`;
  const request = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}${path}`, {
      method,
      // The service's token, in case it guards REST as well as /mcp.
      headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json().catch(() => null) };
  };
  for (let i = 0; ; i++) {
    if ((await request('GET', '/v1/health').catch(() => null))?.status === 200) break;
    if (child.exitCode !== null || i > 600) throw new Error(`the service did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, dataDir, secretFile, request };
}

interface Report {
  uid: number;
  cwd: string;
  environ: string[];
  service_variables: string[];
  own_processes: string[];
  proc_read: number;
  proc_found: string[];
  data_found: string[];
  data_read: number;
  data_listable: boolean;
  secret_file: boolean | null;
  wrote_cwd: boolean;
  store_tried: number;
  store_reached: string[];
  warm: boolean;
}

/** Runs the probe notebook to completion and returns what it found. */
async function probe(service: Service): Promise<Report> {
  const created = await service.request('POST', '/v1/jobs', {
    notebook: { content: PROBE, name: 'probe.ipynb' },
    parameters: { marker_suffix: suffix, data_dir: service.dataDir, secret_file: service.secretFile },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  let job = created.body;
  for (let i = 0; !['completed', 'failed', 'cancelled'].includes(job.status); i++) {
    expect(i, 'the probe job did not end').toBeLessThan(1200);
    await new Promise((r) => setTimeout(r, 100));
    job = (await service.request('GET', `/v1/jobs/${job.job_id}`)).body;
  }
  expect(job.status, JSON.stringify(job.error)).toBe('completed');
  const logs = (await service.request('GET', `/v1/jobs/${job.job_id}/logs?limit=1000`)).body;
  const warm = logs.lines.some((line: { text: string }) => line.text === 'using a warm kernel');
  const output = (await service.request('GET', `/v1/jobs/${job.job_id}/output`)).body;
  // Each probe cell prints one JSON line on stdout.
  const [secrets, store] = output.cells.slice(-2).map((cell: { outputs: NotebookOutput[] }) => {
    const stdout = cell.outputs.filter((o) => o.name === 'stdout').map((o) => joined(o.text ?? ''));
    return JSON.parse(stdout.join(''));
  });
  return { ...secrets, ...store, warm } as Report;
}

describe('a kernel and the service it runs under', () => {
  it('same user: the kernel environment holds none of the service’s variables', async () => {
    const report = await probe(await startService());
    expect(report.warm).toBe(false);
    expect(report.environ).toEqual([]);
    expect(report.service_variables).toEqual([]);
    expect(report.own_processes).toEqual([]); // the kernel's and its engine's environ
    expect(report.wrote_cwd).toBe(true);
    // What this mode cannot prevent, and proof that the search works: as the service's own user the
    // kernel does find the secrets in the service's processes and its data folder.
    expect(report.proc_found.some((path) => path.endsWith('/environ'))).toBe(true);
    expect(report.data_found.map((path) => path.slice(path.lastIndexOf('/') + 1))).toContain(
      'service-credentials',
    );
    expect(report.store_reached).toHaveLength(1); // the store's socket
  }, 180_000);

  it.skipIf(!IS_ROOT)(
    `--kernel-user ${KERNEL_USER}: no secret in any readable /proc/*/environ or cmdline, the data folder or a root-only file, and no way to the job store (needs root: skipped otherwise)`,
    async () => {
      const report = await probe(await startService(KERNEL_USER));
      expect(report.warm).toBe(true); // a kernel started ahead of the job, for the kernel user
      expect(report.uid).not.toBe(0);
      expect(report.environ).toEqual([]);
      expect(report.service_variables).toEqual([]);
      expect(report.own_processes).toEqual([]);
      // It could read a good many processes' command lines and its own processes' environments...
      expect(report.proc_read).toBeGreaterThan(10);
      // ...and none holds a secret: the server's and runner's environments are closed to it.
      expect(report.proc_found).toEqual([]);
      expect(report.data_listable).toBe(false);
      expect(report.data_read).toBe(0);
      expect(report.data_found).toEqual([]);
      expect(report.secret_file).toBeNull();
      expect(report.wrote_cwd).toBe(true);
      // Nor can it reach the job store (a Unix socket in a folder only the service may enter).
      expect(report.store_tried).toBeGreaterThan(0);
      expect(report.store_reached).toEqual([]);
    },
    180_000,
  );
});
