/**
 * Protocol 2026-07-28 on the MCP endpoint, through SDK v2's own Client pinned to that version over
 * real HTTP against the local server, with real notebooks on a real kernel: discover, tools,
 * resources, the tasks extension (task id = job id, results validated against the tool's output
 * schema, cancel, tenant isolation), and the wire rules (envelope, headers, error ids).
 * The 2025 eras on the same endpoint are covered by mcp.test.ts (SDK v1 client).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';
import { ExecuteNotebookOutputSchema } from '../../lambda/mcp/schemas.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

const VERSION = '2026-07-28';
const TASKS = 'io.modelcontextprotocol/tasks';

let svc: TestService;
let client: Client;
const serverLog: string[] = [];

const quick = makeNotebook([codeCell('x = 6 * 7\nprint("answer", x)'), codeCell('x')]);
const slow = (seconds: number) =>
  makeNotebook([
    codeCell('import time\nprint("tick", flush=True)'),
    codeCell(`time.sleep(${seconds})`),
    codeCell('print("done")'),
  ]);

/** The envelope every 2026-07-28 request carries in `_meta`, here declaring the tasks extension. */
const envelope = (extensions: Record<string, object> = { [TASKS]: {} }) => ({
  'io.modelcontextprotocol/protocolVersion': VERSION,
  'io.modelcontextprotocol/clientInfo': { name: 'raw-test', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': { extensions },
});

/** One raw 2026-07-28 request (the SDK client refuses `resultType: "task"` without ext-tasks). */
async function raw(
  method: string,
  params: Record<string, unknown>,
  {
    extensions,
    headers = {},
    id = 1,
  }: { extensions?: Record<string, object>; headers?: Record<string, string>; id?: number } = {},
) {
  const name = (params.name ?? params.uri ?? params.taskId) as string | undefined;
  const response = await fetch(`${svc.server.url}/mcp`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': VERSION,
      'mcp-method': method,
      ...(name !== undefined && { 'mcp-name': name }),
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: envelope(extensions) } }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

const getTask = (taskId: string) => raw('tasks/get', { taskId });

async function untilEnded(taskId: string, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  const seen: any[] = [];
  for (;;) {
    const { body } = await getTask(taskId);
    expect(body.error).toBeUndefined();
    seen.push(body.result);
    if (body.result.status !== 'working') return { task: body.result, seen };
    expect(Date.now()).toBeLessThan(end);
    await new Promise((r) => setTimeout(r, Math.min(body.result.pollIntervalMs, 300)));
  }
}

beforeAll(async () => {
  svc = await startTestService({ log: (message) => serverLog.push(message) });
  client = new Client(
    { name: 'notebook-jobs-test', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: VERSION } } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(`${svc.server.url}/mcp`)));
});
afterAll(async () => {
  await client?.close();
  await svc?.close();
});

describe('SDK v2 client pinned to 2026-07-28', () => {
  it('discovers the server: tools, resources and the tasks extension, no initialize', async () => {
    expect(client.getNegotiatedProtocolVersion?.() ?? VERSION).toBe(VERSION);
    expect(client.getServerCapabilities()).toMatchObject({
      tools: {},
      resources: {},
      extensions: { [TASKS]: {} },
    });
    expect(client.getServerVersion()).toMatchObject({ name: 'notebook-jobs' });
  });

  it('lists the three tools with their schemas, and no 2025 task support field', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'execute_notebook',
      'inspect_notebook',
      'manage_async_job',
    ]);
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type).toBe('object');
      expect(tool).not.toHaveProperty('execution');
    }
  });

  it('calls execute_notebook synchronously; the result validates against the output schema', async () => {
    const result = await client.callTool({
      name: 'execute_notebook',
      arguments: { notebook: { content: quick } },
    });
    expect(result.isError).toBeFalsy();
    const s = ExecuteNotebookOutputSchema.parse(result.structuredContent);
    expect(s).toMatchObject({ done: true, job: { status: 'completed' }, next: null });
    const link = (result.content as any[]).find((c) => c.type === 'resource_link');
    const output = await client.readResource({ uri: link.uri });
    expect((output.contents[0] as { text: string }).text).toContain('answer 42');
    const listed = await client.listResources();
    expect(listed.resources.map((r) => r.uri)).toContain(`notebook-jobs://jobs/${s.job.job_id}`);
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate).sort()).toEqual([
      'notebook-jobs://jobs/{job_id}',
      'notebook-jobs://jobs/{job_id}/files/{+path}',
      'notebook-jobs://jobs/{job_id}/output',
    ]);
  });

  it('streams progress for a waiting call with a progressToken, which keeps a short client timeout alive', async () => {
    const seen: { progress: number; message?: string }[] = [];
    const result = await client.callTool(
      { name: 'execute_notebook', arguments: { notebook: { content: slow(6) }, sync_timeout_seconds: 20 } },
      // Heartbeats come at least every 4 s: a 6 s cell outlives the 5 s timeout only through them.
      { timeout: 5000, resetTimeoutOnProgress: true, onprogress: (p) => seen.push(p) },
    );
    const s = ExecuteNotebookOutputSchema.parse(result.structuredContent);
    expect(s.done).toBe(true);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen[0]?.message).toMatch(new RegExp(`^${s.job.job_id}: `));
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.progress).toBeGreaterThan(seen[i - 1]!.progress);
  });

  it('stops waiting (the job goes on) when the client aborts a streamed call', async () => {
    const stop = new AbortController();
    const call = client.callTool(
      { name: 'execute_notebook', arguments: { notebook: { content: slow(30) }, sync_timeout_seconds: 20 } },
      { signal: stop.signal, onprogress: () => stop.abort('enough') },
    );
    await expect(call).rejects.toThrow(/enough/);
    const end = Date.now() + 10_000;
    let line: string | undefined;
    while (!(line = serverLog.find((l) => l.startsWith('mcp: stopped waiting; the job goes on ')))) {
      expect(Date.now()).toBeLessThan(end);
      await new Promise((r) => setTimeout(r, 100));
    }
    const jobId = /job_id="(job_\w+)"/.exec(line)![1]!;
    expect((await svc.request('GET', `/v1/jobs/${jobId}`)).body.status).not.toBe('cancelled');
    await svc.request('POST', `/v1/jobs/${jobId}/cancel`);
  });

  it('answers tool failures as isError results and an unknown tool as -32602, each once prefixed', async () => {
    const bad = await client.callTool({ name: 'manage_async_job', arguments: { action: 'status' } });
    expect(bad.isError).toBe(true);
    expect((bad.content as any[])[0].text).toMatch(/^invalid_request: job_id is required/);
    await expect(client.callTool({ name: 'run_everything', arguments: {} })).rejects.toThrow(
      /unknown tool "run_everything"/,
    );
    const { body } = await raw('tools/call', { name: 'run_everything', arguments: {} }, { id: 77 });
    expect(body).toMatchObject({ id: 77, error: { code: -32602 } });
    expect(body.error.message).toMatch(/^unknown tool "run_everything"/);
  });

  it('runs an execute_notebook task to its result; tasks/get through the SDK client too', async () => {
    const created = await raw('tools/call', {
      name: 'execute_notebook',
      arguments: { notebook: { content: slow(1) } },
    });
    const task = created.body.result;
    expect(task).toMatchObject({ resultType: 'task', status: 'working', ttlMs: null });
    expect(task.taskId).toMatch(/^job_/);
    expect(task.pollIntervalMs).toBeGreaterThan(0);
    expect(task.statusMessage).toMatch(/queued|running/);
    // The task is durable before the answer: it is the job.
    expect((await svc.request('GET', `/v1/jobs/${task.taskId}`)).status).toBe(200);

    // The SDK client sends tasks/get as a custom method with the envelope and Mcp-Name itself.
    const viaSdk = await client.request(
      // This client declares no extensions; the request does (its own _meta keys take precedence).
      { method: 'tasks/get', params: { taskId: task.taskId, _meta: envelope() } },
      z.looseObject({ taskId: z.string(), status: z.string() }),
    );
    expect(viaSdk.taskId).toBe(task.taskId);

    const { task: ended, seen } = await untilEnded(task.taskId);
    expect(seen.some((t) => /cells/.test(t.statusMessage))).toBe(true);
    expect(ended).toMatchObject({ resultType: 'complete', status: 'completed', taskId: task.taskId });
    expect(ended).not.toHaveProperty('pollIntervalMs');
    // The result is what execute_notebook would have returned, in its output schema.
    const out = ExecuteNotebookOutputSchema.parse(ended.result.structuredContent);
    expect(out).toMatchObject({ done: true, job: { job_id: task.taskId, status: 'completed' } });
    expect(out.result?.summary?.totals).toMatchObject({ error: 0, not_run: 0 });
    expect(JSON.parse(ended.result.content[0].text)).toEqual(ended.result.structuredContent);
  });

  it('answers bad arguments and bad URIs with what is wrong, creating no task', async () => {
    const bad = await raw('tools/call', {
      name: 'execute_notebook',
      arguments: { notebook: { content: { cells: [] } } },
    });
    expect(bad.body.result).toMatchObject({ resultType: 'complete', isError: true });
    expect(bad.body.result.content[0].text).toMatch(/^invalid_request: invalid notebook/);
    const uri = 'notebook-jobs://jobs/%ZZ';
    const badUri = await raw('resources/read', { uri });
    expect(badUri.body.error).toMatchObject({ code: -32602, message: `no resource ${uri}` });
    // A long URI (5,000 characters: it is repeated in the Mcp-Name header, which Node caps at 16 KiB)
    // is quoted back shortened, in the message and in the error data.
    const long = `notebook-jobs://elsewhere/${'x'.repeat(5_000)}`;
    const longUri = await raw('resources/read', { uri: long });
    expect(longUri.body.error).toEqual({
      code: -32602,
      message: `no resource ${long.slice(0, 200)}...`,
      data: { uri: `${long.slice(0, 200)}...` },
    });
  });

  it('returns no task to a client that does not declare the extension', async () => {
    const { body } = await raw(
      'tools/call',
      { name: 'execute_notebook', arguments: { notebook: { content: quick } } },
      { extensions: {} },
    );
    expect(body.result.resultType).toBe('complete');
    expect(ExecuteNotebookOutputSchema.parse(body.result.structuredContent).done).toBe(true);
  });

  it('cancels the job with tasks/cancel; another tenant can neither get nor cancel the task', async () => {
    const { body } = await raw('tools/call', {
      name: 'execute_notebook',
      arguments: { notebook: { content: slow(120) } },
    });
    const taskId = body.result.taskId as string;
    await svc.waitFor(taskId, (j) => j.progress.cells_executed >= 1);

    // Another tenant's job (created straight through the service) is not a task of this caller.
    const other = await svc.server.service.create('someone-else', { notebook: { content: slow(120) } });
    for (const method of ['tasks/get', 'tasks/cancel', 'tasks/update']) {
      const refused = await raw(method, {
        taskId: other.job_id,
        ...(method === 'tasks/update' && { inputResponses: {} }),
      });
      expect(refused.body.error).toMatchObject({ code: -32602, message: `no task ${other.job_id}` });
    }
    await svc.server.service.cancel('someone-else', other.job_id);
    // The extension's "Protocol Errors": an invalid or nonexistent taskId is -32602 (Invalid
    // params), MUST for tasks/get, SHOULD for tasks/update and tasks/cancel: a well-formed id
    // nobody has, a malformed one, and one over the length limit alike, with the request's id.
    const unknownIds = ['job_01KAB3C4D5E6F7G8H9JKMNPQRSTV', '../jobs/x', 'job_'.padEnd(300, 'A')];
    for (const method of ['tasks/get', 'tasks/cancel', 'tasks/update']) {
      for (const [n, unknownId] of unknownIds.entries()) {
        const refused = await raw(
          method,
          { taskId: unknownId, ...(method === 'tasks/update' && { inputResponses: {} }) },
          { id: 700 + n },
        );
        expect(refused.body, `${method} ${unknownId}`).toMatchObject({
          id: 700 + n,
          error: { code: -32602 },
        });
        expect(refused.body.result).toBeUndefined();
      }
    }

    const cancel = await raw('tasks/cancel', { taskId });
    expect(cancel.body.result).toEqual(expect.objectContaining({ resultType: 'complete' }));
    expect((await svc.request('GET', `/v1/jobs/${taskId}`)).body.status).toBe('cancelled');
    const { task } = await untilEnded(taskId);
    expect(task).toMatchObject({ status: 'cancelled', statusMessage: expect.stringMatching(/^cancelled/) });
    expect(task).not.toHaveProperty('result');
    // The tasks methods belong to the extension: a request that does not declare it gets -32021.
    for (const method of ['tasks/get', 'tasks/cancel']) {
      const undeclared = await raw(method, { taskId }, { extensions: {} });
      expect(undeclared.body.error).toMatchObject({
        code: -32021,
        data: { requiredCapabilities: { extensions: { [TASKS]: {} } } },
      });
    }
    // Cancelling an ended task is acknowledged (cancellation is cooperative).
    expect((await raw('tasks/cancel', { taskId })).body.result).toBeDefined();
  });
});

describe('task status notifications (tasks extension, subscriptions/listen with taskIds)', () => {
  const listen = (extensions: Record<string, object>) =>
    fetch(`${svc.server.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': VERSION,
        'mcp-method': 'subscriptions/listen',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 31,
        method: 'subscriptions/listen',
        params: {
          notifications: { taskIds: ['job_01KAB3C4D5E6F7G8H9JKMNPQRSTV'] },
          _meta: envelope(extensions),
        },
      }),
    });

  it('refuses a client that asks for them without declaring the extension (-32021)', async () => {
    const response = await listen({});
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      id: 31,
      error: { code: -32021, data: { requiredCapabilities: { extensions: { [TASKS]: {} } } } },
    });
  });

  it('acknowledges a declaring client without taskIds: none are agreed, the client polls tasks/get', async () => {
    const response = await listen({ [TASKS]: {} });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await response.text())
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)));
    const ack = events.find((e) => e.method === 'notifications/subscriptions/acknowledged');
    expect(ack.params.notifications).toEqual({});
    expect(events.find((e) => e.id === 31)?.result).toBeDefined();
  });
});

describe('wire rules of 2026-07-28', () => {
  it('checks the standard headers against the body, answering with the request id', async () => {
    const mismatch = await raw('tools/list', {}, { headers: { 'mcp-method': 'tools/call' }, id: 41 });
    expect(mismatch.body).toMatchObject({ id: 41, error: { code: expect.any(Number) } });
    const unsupported = await fetch(`${svc.server.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2099-01-01',
        'mcp-method': 'tools/list',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 42,
        method: 'tools/list',
        params: { _meta: { ...envelope(), 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } },
      }),
    });
    const body = (await unsupported.json()) as any;
    expect(body).toMatchObject({ id: 42, error: { code: -32022 } });
    expect(JSON.stringify(body.error.data)).toContain(VERSION);
  });

  it('still refuses a foreign Origin before anything else', async () => {
    const { status } = await raw('tools/list', {}, { headers: { origin: 'https://evil.example' } });
    expect(status).toBe(403);
  });
});

describe('the 2025 eras on the same endpoint', () => {
  it.each([
    ['2025-11-25', true],
    ['2025-06-18', false],
  ])(
    'an SDK client pinned to %s sees tasks (capability, execution.taskSupport): %s',
    async (version, tasks) => {
      // The wire body of each tools/list, as sent: a client-side parse must not hide a stray field.
      const listed: any[] = [];
      const recording: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        if (typeof init?.body === 'string' && JSON.parse(init.body).method === 'tools/list') {
          listed.push(await response.clone().json());
        }
        return response;
      };
      const pinned = new Client({ name: 'pinned', version: '1' }, { supportedProtocolVersions: [version] });
      const transport = new StreamableHTTPClientTransport(new URL(`${svc.server.url}/mcp`), {
        fetch: recording,
      });
      await pinned.connect(transport);
      expect(transport.protocolVersion).toBe(version);
      expect(pinned.getServerCapabilities()?.tasks !== undefined).toBe(tasks);
      const { tools } = await pinned.listTools();
      expect(tools).toHaveLength(3);
      expect(listed).toHaveLength(1);
      const execute = listed[0].result.tools.find((t: any) => t.name === 'execute_notebook');
      if (tasks) expect(execute.execution).toEqual({ taskSupport: 'optional' });
      else expect(/taskSupport|"execution"/.test(JSON.stringify(listed[0].result))).toBe(false);
      await pinned.close();
    },
  );

  it.each(['2025-11-25', '2025-06-18'])('a v1 client on %s connects and calls a tool', async (version) => {
    const v1 = new V1Client({ name: 'v1', version: '1' });
    const transport = new V1Transport(new URL(`${svc.server.url}/mcp`));
    await v1.connect(transport);
    // The v1 client speaks its latest version; a raw initialize checks the older one below.
    expect(transport.protocolVersion).toBe('2025-11-25');
    const result = await v1.callTool({
      name: 'inspect_notebook',
      arguments: { notebook: { content: quick } },
    });
    expect(result.isError).toBeFalsy();
    await v1.close();
    const init = await fetch(`${svc.server.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    });
    expect(((await init.json()) as any).result.protocolVersion).toBe(version);
  });
});
