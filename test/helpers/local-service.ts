/**
 * Starts a real local service (dynalite on disk, runner child processes, real kernels) in a temp
 * data folder, and gives tests a small JSON client for it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { readdirSync, readlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startLocalServer,
  type LocalServer,
  type LocalServerOptions,
} from '../../lambda/local/local-server.ts';

export const TEST_PYTHON = process.env.NOTEBOOK_JOBS_PYTHON ?? '/usr/bin/python3';

export interface TestService {
  server: LocalServer;
  dataDir: string;
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  waitFor(jobId: string, until: (job: any) => boolean, timeoutMs?: number): Promise<any>;
  close(): Promise<void>;
}

export type TestServiceOptions = Partial<LocalServerOptions> & {
  /** The token's name from when it guarded /mcp only. */
  mcpToken?: string;
};

/**
 * A service in a fresh temp data folder (unless `dataDir` is given). `request` sends JSON bodies as
 * application/json, and the server's token when it has one (unless `headers` bring their own).
 */
export async function startTestService(options: TestServiceOptions = {}): Promise<TestService> {
  const { mcpToken, ...serverOptions } = options;
  const token = serverOptions.token ?? mcpToken;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'notebook-jobs-test-'));
  const server = await startLocalServer({
    port: 0,
    python: TEST_PYTHON,
    progressIntervalMs: 200,
    sweepIntervalMs: 1000,
    stopGraceMs: 5000,
    log: () => undefined,
    // No warm kernels unless a test asks (warm-kernels.test.ts, kernel-isolation.test.ts): a pool
    // per test service would double the kernels CI's two cores start.
    warmKernels: 0,
    ...serverOptions,
    token,
    dataDir,
  });
  const request = async (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (e.g. a notebook download is JSON too; anything else stays text)
    }
    return { status: response.status, body: parsed as any, headers: response.headers };
  };
  return {
    server,
    dataDir,
    request,
    async waitFor(jobId, until, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const { body } = await request('GET', `/v1/jobs/${jobId}`);
        if (until(body)) return body;
        if (Date.now() > end)
          throw new Error(`timed out waiting for ${jobId}; last seen: ${JSON.stringify(body)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      await server.close({ killRunners: true });
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  /** The body as received. */
  text: string;
}

/**
 * A request over node:http, which (unlike fetch) lets a test choose the Host header. The JSON body
 * is parsed when there is one.
 */
export function rawRequest(
  server: TestService,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
  timeoutMs = 30_000,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // A body is framed by its length whatever the method (node:http frames only some methods' bodies).
    const length = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const options = {
      host: '127.0.0.1',
      port: server.server.port,
      method,
      path,
      headers: { ...length, ...headers },
      timeout: timeoutMs,
    };
    const req = httpRequest(options, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export const isEnded = (job: { status: string }) => ['completed', 'failed', 'cancelled'].includes(job.status);

/** Pids of live processes whose command line or working folder mentions `needle`. */
export function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      const state = /State:\s+(\w)/.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (state !== 'Z' && (cmdline.includes(needle) || cwd.includes(needle))) found.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return found;
}
