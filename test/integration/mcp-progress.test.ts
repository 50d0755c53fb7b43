/**
 * Progress that keeps a synchronous execute_notebook alive, and cancelling its wait: the SDK's own
 * Client over real HTTP against the local server, with real notebooks on a real kernel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CallToolResultSchema, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { ExecuteNotebookOutputSchema } from '../../lambda/mcp/schemas.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

let svc: TestService;
const logged: string[] = [];

const sleeper = (seconds: number) =>
  makeNotebook([codeCell('import time'), codeCell(`time.sleep(${seconds})`), codeCell('print("done")')]);

/** Ends of tools/call response bodies, as the client saw them (ms since epoch), by request id. */
const streamEnds = new Map<number, number>();
const watchingFetch: FetchLike = async (url, init) => {
  const response = await fetch(url, init);
  const sent =
    typeof init?.body === 'string' ? (JSON.parse(init.body) as { id?: number; method?: string }) : {};
  if (sent.method !== 'tools/call' || sent.id === undefined || !response.body) return response;
  const id = sent.id;
  const body = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({ flush: () => void streamEnds.set(id, Date.now()) }),
  );
  return new Response(body, { status: response.status, headers: response.headers });
};

async function connect(): Promise<Client> {
  const client = new Client({ name: 'notebook-jobs-progress-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${svc.server.url}/mcp`), { fetch: watchingFetch }),
  );
  return client;
}

interface Seen extends Progress {
  at: number;
}

beforeAll(async () => {
  svc = await startTestService({ log: (message) => logged.push(message) });
});
afterAll(async () => {
  await svc?.close();
});

describe('a synchronous execute_notebook with a progressToken', () => {
  it('survives a 6 s client timeout with resetTimeoutOnProgress on an 8 s notebook', async () => {
    const client = await connect();
    const seen: Seen[] = [];
    const started = Date.now();
    try {
      const result = await client.callTool(
        {
          name: 'execute_notebook',
          arguments: { notebook: { content: sleeper(8) }, sync_timeout_seconds: 25 },
        },
        CallToolResultSchema,
        {
          timeout: 6000,
          resetTimeoutOnProgress: true,
          onprogress: (p) => seen.push({ ...p, at: Date.now() }),
        },
      );
      expect(Date.now() - started).toBeGreaterThan(8000);
      const out = ExecuteNotebookOutputSchema.parse(result.structuredContent);
      expect(out).toMatchObject({ done: true, job: { status: 'completed' } });
      expect(out.result?.summary?.cells.map((c) => c.status)).toEqual(['ok', 'ok', 'ok']);

      const jobId = out.job.job_id;
      // The job id is in the first notification, so a client that stops waiting can follow the job.
      expect(seen[0]?.message).toMatch(new RegExp(`^${jobId}: (queued|running)`));
      // Strictly increasing (MCP requires it, heartbeats included), out of the 3 code cells.
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.progress).toBeGreaterThan(seen[i - 1]!.progress);
      // total: the 3 code cells and the ending; only the ending reaches it.
      for (const p of seen) expect(p.total).toBe(4);
      expect(seen.slice(0, -1).every((p) => p.progress < 4)).toBe(true);
      // Executed cells are reported as the runner records them: cell 1 before the 8 s cell; cells 2
      // and 3 may be recorded at once, and with the ending.
      expect(seen.some((s) => Math.floor(s.progress) === 1)).toBe(true);
      expect(seen.at(-1)).toMatchObject({
        progress: 4,
        total: 4,
        message: expect.stringMatching(/completed: 3\/3 cells/),
      });
      // Never silent for 5 s, also through the 8 s cell.
      const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at);
      expect(Math.max(...gaps)).toBeLessThan(5000);
      expect(seen[0]!.at - started).toBeLessThan(5000);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('answers as an SSE stream only for such a call; others stay JSON', async () => {
    const post = (params: unknown) =>
      fetch(`${svc.server.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params }),
      });
    const quick = { content: makeNotebook([codeCell('1 + 1')]) };

    const streamed = await post({
      name: 'execute_notebook',
      arguments: { notebook: quick },
      _meta: { progressToken: 'tok-1' },
    });
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await streamed.text())
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)));
    const notes = events.filter((e) => e.method === 'notifications/progress');
    expect(notes.length).toBeGreaterThan(0);
    for (const n of notes) expect(n.params.progressToken).toBe('tok-1');
    expect(events.at(-1)).toMatchObject({ id: 7, result: { structuredContent: { done: true } } });

    const plain = await post({ name: 'execute_notebook', arguments: { notebook: quick } });
    expect(plain.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await plain.json()).toMatchObject({ id: 7, result: { structuredContent: { done: true } } });

    // Another tool with a progressToken has nothing to wait for: JSON.
    const inspect = await post({
      name: 'inspect_notebook',
      arguments: { notebook: quick },
      _meta: { progressToken: 'tok-2' },
    });
    expect(inspect.headers.get('content-type')).toMatch(/^application\/json/);
  }, 60_000);
});

describe('stopping the wait', () => {
  it('a cancelled call (AbortSignal) stops the server’s wait and closes its stream; the job still completes', async () => {
    const client = await connect();
    const abort = new AbortController();
    let jobId: string | undefined;
    try {
      const call = client.callTool(
        {
          name: 'execute_notebook',
          arguments: { notebook: { content: sleeper(4) }, sync_timeout_seconds: 25 },
        },
        CallToolResultSchema,
        {
          signal: abort.signal,
          onprogress: ({ message }) => {
            jobId ??= message?.split(':')[0];
            if (message?.includes('(executing)')) abort.abort('the user pressed stop');
          },
        },
      );
      await expect(call).rejects.toThrow(/the user pressed stop/);
      const abortedAt = Date.now();
      expect(jobId).toMatch(/^job_/);
      // The server stopped waiting: its log says so, and it closed the call's stream at once (it
      // would otherwise stay open until the job ends, about 4 s on).
      await expect
        .poll(() => logged.join('\n'), { timeout: 3000 })
        .toMatch(
          new RegExp(
            `stopped waiting; the job goes on job_id="${jobId}" tenant="local" reason="the client cancelled request \\d+: the user pressed stop"`,
          ),
        );
      await expect
        .poll(() => [...streamEnds.values()].some((end) => end >= abortedAt - 100), { timeout: 2000 })
        .toBe(true);
      const closedAfter = Math.max(...streamEnds.values()) - abortedAt;
      expect(closedAfter).toBeLessThan(1500);
      // The job goes on to the end.
      const status = await svc.waitFor(jobId!, (job) => job.status !== 'running' && job.status !== 'queued');
      expect(status.status).toBe('completed');
    } finally {
      await client.close();
    }
  }, 60_000);

  it('a client that goes away stops the server’s wait; the job still completes', async () => {
    const client = await connect();
    let jobId: string | undefined;
    let closing: Promise<void> | undefined;
    const call = client.callTool(
      {
        name: 'execute_notebook',
        arguments: { notebook: { content: sleeper(3) }, sync_timeout_seconds: 25 },
      },
      CallToolResultSchema,
      {
        onprogress: ({ message }) => {
          jobId ??= message?.split(':')[0];
          if (message?.includes('(executing)')) closing ??= client.close();
        },
      },
    );
    await expect(call).rejects.toThrow(/closed/i);
    await closing;
    await expect
      .poll(() => logged.join('\n'), { timeout: 3000 })
      .toMatch(
        new RegExp(
          `stopped waiting; the job goes on job_id="${jobId}" tenant="local" reason="the client closed the stream"`,
        ),
      );
    const status = await svc.waitFor(jobId!, (job) => job.status !== 'running' && job.status !== 'queued');
    expect(status.status).toBe('completed');
  }, 60_000);
});
