/**
 * The MCP endpoint through the SDK's own Client over real HTTP against the local server, with
 * real notebooks on a real kernel: tools, the sync window, polling, logs, cancel, list, cleanup,
 * inspect, resources, MCP tasks, argument errors and transport hygiene.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { ExecuteNotebookOutputSchema } from '../../lambda/mcp/schemas.ts';
import { RESOURCE_TEMPLATES } from '../../lambda/mcp/resources.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { processesMentioning, startTestService, type TestService } from '../helpers/local-service.ts';

let svc: TestService;
let client: Client;

const quick = makeNotebook([codeCell('x = 6 * 7\nprint("answer", x)'), codeCell('x')]);
const slow = (seconds: number) =>
  makeNotebook([
    codeCell('n = 3', ['parameters']),
    codeCell('import time\nfor i in range(n):\n    print("tick", i, flush=True)'),
    codeCell(`time.sleep(${seconds})`),
    codeCell('print("done")'),
  ]);

async function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const c = new Client({ name: 'notebook-jobs-test', version: '1.0.0' });
  await c.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers } }));
  return c;
}

async function call(name: string, args: Record<string, unknown>) {
  const result = await client.callTool({ name, arguments: args }, CallToolResultSchema);
  return result as { structuredContent?: any; content: any[]; isError?: boolean };
}

async function pollStatus(jobId: string, until: (s: any) => boolean, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { structuredContent: s } = await call('manage_async_job', { action: 'status', job_id: jobId });
    if (until(s)) return s;
    if (Date.now() > end) throw new Error(`timed out; last status ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  svc = await startTestService();
  client = await connect(svc.server.url);
});
afterAll(async () => {
  await client?.close();
  await svc?.close();
});

describe('tools', () => {
  it('lists the three tools with input and output schemas, honest annotations and task support', async () => {
    const { tools } = await client.listTools();
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(Object.keys(byName).sort()).toEqual(['execute_notebook', 'inspect_notebook', 'manage_async_job']);
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type).toBe('object');
    }
    expect(byName.execute_notebook?.inputSchema.properties).toHaveProperty('sync_timeout_seconds');
    expect(byName.execute_notebook?.inputSchema.properties).toHaveProperty('notebook');
    expect(byName.execute_notebook?.execution).toEqual({ taskSupport: 'optional' });
    expect(byName.manage_async_job?.inputSchema.properties).toHaveProperty('action');
    expect(byName.inspect_notebook?.annotations).toMatchObject({ readOnlyHint: true, idempotentHint: true });
    expect(byName.execute_notebook?.annotations).toMatchObject({
      readOnlyHint: false,
      destructiveHint: false,
    });
    expect(byName.manage_async_job?.annotations).toMatchObject({
      destructiveHint: true,
      idempotentHint: true,
    });
  });

  it('runs a quick notebook inside the sync window and returns its result summary and a link', async () => {
    const result = await call('execute_notebook', { notebook: { content: quick, name: 'quick.ipynb' } });
    expect(result.isError).toBeFalsy();
    const s = result.structuredContent;
    expect(s.done).toBe(true);
    expect(s.job.status).toBe('completed');
    expect(s.job.progress).toMatchObject({ cells_total: 2, cells_executed: 2, percent: 100 });
    expect(s.next).toBeNull();
    expect(s.result.summary.cells[0].output_text).toContain('answer 42');
    expect(s.result.summary.cells[1].output_text).toContain('42');
    expect(JSON.parse(result.content[0].text)).toEqual(s);
    const link = result.content.find((c) => c.type === 'resource_link');
    expect(link).toMatchObject({
      uri: `notebook-jobs://jobs/${s.job.job_id}/output`,
      mimeType: 'application/x-ipynb+json',
      name: 'quick.ipynb',
    });

    // The link and the job are readable as resources.
    const output = await client.readResource({ uri: link.uri });
    const notebook = JSON.parse((output.contents[0] as { text: string }).text);
    expect(notebook.cells[0].outputs[0].text.join('')).toContain('answer 42');
    const job = await client.readResource({ uri: `notebook-jobs://jobs/${s.job.job_id}` });
    expect(JSON.parse((job.contents[0] as { text: string }).text)).toMatchObject({ status: 'completed' });
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate).sort()).toEqual([
      'notebook-jobs://jobs/{job_id}',
      'notebook-jobs://jobs/{job_id}/files/{+path}',
      'notebook-jobs://jobs/{job_id}/output',
    ]);
    // The same templates as on 2026-07-28 (modern.ts serves the same table).
    expect(templates.resourceTemplates).toEqual(RESOURCE_TEMPLATES);
    const listed = await client.listResources();
    expect(listed.resources.find((r) => r.uri === `notebook-jobs://jobs/${s.job.job_id}`)).toEqual({
      uri: `notebook-jobs://jobs/${s.job.job_id}`,
      name: s.job.job_id,
      title: 'quick.ipynb (completed)',
      description: 'A job as manage_async_job status shows it.',
      mimeType: 'application/json',
    });
  });

  it('returns a handle for a long notebook, then status polling reaches completed and result reads it', async () => {
    const started = Date.now();
    const result = await call('execute_notebook', {
      notebook: { content: slow(3) },
      parameters: { n: 2 },
      sync_timeout_seconds: 0.5,
    });
    expect(Date.now() - started).toBeLessThan(5000);
    const s = result.structuredContent;
    expect(s.done).toBe(false);
    expect(['queued', 'running']).toContain(s.job.status);
    expect(s.result).toBeNull();
    expect(s.next).toMatchObject({
      tool: 'manage_async_job',
      arguments: { action: 'status', job_id: s.job.job_id },
      poll_interval_seconds: expect.any(Number),
    });

    const running = await pollStatus(s.job.job_id, (st) => st.progress.cells_executed >= 2);
    expect(running).toMatchObject({ action: 'status', job_id: s.job.job_id, status: 'running' });
    expect(running.progress.percent).toBeGreaterThan(0);
    expect(running.next.arguments).toEqual({ action: 'status', job_id: s.job.job_id });

    const ended = await pollStatus(s.job.job_id, (st) => st.status !== 'running' && st.status !== 'queued');
    expect(ended.status).toBe('completed');
    expect(ended.next).toBeNull();
    const result2 = await call('manage_async_job', { action: 'result', job_id: s.job.job_id });
    expect(result2.structuredContent).toMatchObject({
      action: 'result',
      status: 'completed',
      output_available: true,
    });
    expect(result2.structuredContent.summary.totals).toMatchObject({ ok: 5, error: 0 });
    expect(result2.content.some((c) => c.type === 'resource_link')).toBe(true);

    // Logs, page by page with the cursor: every line once, in order.
    const lines: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const { structuredContent: p } = await call('manage_async_job', {
        action: 'logs',
        job_id: s.job.job_id,
        limit: 2,
        ...(cursor ? { cursor } : {}),
      });
      expect(p.lines.length).toBeLessThanOrEqual(2);
      lines.push(...p.lines.map((l: { text: string }) => l.text));
      cursor = p.next_cursor;
      if (p.at_end) break;
    }
    const ticks = lines.filter((l) => l.startsWith('tick'));
    expect(ticks).toEqual(['tick 0', 'tick 1']); // the injected parameter n=2 took effect
    expect(lines).toContain('done');
    const tail = await call('manage_async_job', { action: 'logs', job_id: s.job.job_id, log_tail: 1 });
    expect(tail.structuredContent.lines).toHaveLength(1);
    const withLogs = await call('manage_async_job', {
      action: 'status',
      job_id: s.job.job_id,
      include_logs: true,
      log_tail: 3,
    });
    expect(withLogs.structuredContent.logs.lines).toHaveLength(3);
  });

  it('cancels a running job: the kernel is stopped and the partial notebook kept', async () => {
    const { structuredContent: s } = await call('execute_notebook', {
      notebook: { content: slow(120) },
      sync_timeout_seconds: 0,
    });
    await pollStatus(s.job.job_id, (st) => st.progress.cells_executed >= 2);
    const cancelled = await call('manage_async_job', { action: 'cancel', job_id: s.job.job_id });
    expect(cancelled.structuredContent).toMatchObject({ action: 'cancel', status: 'cancelled' });
    const again = await call('manage_async_job', { action: 'cancel', job_id: s.job.job_id });
    expect(again.structuredContent.status).toBe('cancelled'); // idempotent
    const end = Date.now() + 10_000;
    while (processesMentioning(s.job.job_id).length > 0) {
      expect(Date.now()).toBeLessThan(end);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('lists with filter_status and cursor, and cleans up ended jobs', async () => {
    const { structuredContent: all } = await call('manage_async_job', { action: 'list', limit: 2 });
    expect(all.jobs).toHaveLength(2);
    expect(all.next_cursor).toEqual(expect.any(String));
    const { structuredContent: more } = await call('manage_async_job', {
      action: 'list',
      limit: 2,
      cursor: all.next_cursor,
    });
    const ids = [...all.jobs, ...more.jobs].map((j: { job_id: string }) => j.job_id);
    expect(new Set(ids).size).toBe(ids.length);

    const { structuredContent: cancelled } = await call('manage_async_job', {
      action: 'list',
      filter_status: 'cancelled',
    });
    expect(cancelled.jobs.length).toBeGreaterThanOrEqual(1);
    expect(cancelled.jobs.every((j: { status: string }) => j.status === 'cancelled')).toBe(true);

    const { structuredContent: kept } = await call('manage_async_job', {
      action: 'cleanup',
      cleanup_older_than: 1,
    });
    expect(kept).toMatchObject({ action: 'cleanup', count: 0, deleted: [] });
    const { structuredContent: cleaned } = await call('manage_async_job', {
      action: 'cleanup',
      cleanup_older_than: 0,
    });
    expect(cleaned.count).toBeGreaterThanOrEqual(3);
    const { structuredContent: after } = await call('manage_async_job', { action: 'list' });
    expect(
      after.jobs.filter((j: { status: string }) => j.status !== 'queued' && j.status !== 'running'),
    ).toEqual([]);
  });

  it('inspects a notebook: kernel, language, parameters with type, default and comment, cell counts', async () => {
    const nb = makeNotebook([
      codeCell('epochs = 10  # passes over the data\nrate: float = 0.1', ['parameters']),
      codeCell('print(epochs)'),
    ]);
    const { structuredContent: s, isError } = await call('inspect_notebook', { notebook: { content: nb } });
    expect(isError).toBeFalsy();
    expect(s).toMatchObject({
      kernel: 'python3',
      language: 'python',
      cells: { total: 2, code: 2, markdown: 0, raw: 0 },
    });
    expect(s.parameters).toEqual([
      { name: 'epochs', type: 'int', default: '10', comment: 'passes over the data' },
      { name: 'rate', type: 'float', default: '0.1', comment: '' },
    ]);
  });
});

describe('wrong arguments come back as isError results with a clear message', () => {
  it.each([
    ['missing job_id', 'manage_async_job', { action: 'status' }, /job_id is required for action "status"/],
    ['unknown action', 'manage_async_job', { action: 'explode', job_id: 'x' }, /action/],
    [
      'malformed job id',
      'manage_async_job',
      { action: 'status', job_id: 'nope' },
      /job_id.*must be a job id/,
    ],
    [
      'unknown job',
      'manage_async_job',
      { action: 'result', job_id: 'job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX' },
      /not_found: job job_01KAB3C4D5E6F7G8H9JKMNPQRSTVWX not found/,
    ],
    [
      'bad parameter type',
      'execute_notebook',
      { notebook: { content: quick }, parameters: 'x=1' },
      /parameters/,
    ],
    [
      'unknown parameter',
      'execute_notebook',
      { notebook: { content: slow(1) }, parameters: { m: 1 } },
      /unknown parameter m.*declares: n/,
    ],
    ['not a notebook', 'execute_notebook', { notebook: { content: { cells: 'no' } } }, /invalid_request/],
    [
      'sync window too long',
      'execute_notebook',
      { notebook: { content: quick }, sync_timeout_seconds: 60 },
      /sync_timeout_seconds/,
    ],
  ])('%s', async (_what, name, args, message) => {
    const before = (await svc.request('GET', '/v1/jobs?limit=100')).body.jobs.length;
    const result = await call(name, args);
    expect(result.isError).toBe(true);
    expect(result.content[0].text).toMatch(message);
    expect((await svc.request('GET', '/v1/jobs?limit=100')).body.jobs.length).toBe(before); // nothing created
  });

  it('answers an unknown tool with a protocol error whose message the client prefixes once', async () => {
    const error = await client.callTool({ name: 'run_everything', arguments: {} }).catch((e: Error) => e);
    expect((error as Error).message).toMatch(
      /^MCP error -32602: unknown tool "run_everything"; this server has: /,
    );
    // The SDK's own errors too (resources/read of a URI no template matches).
    const read = await client.readResource({ uri: 'notebook-jobs://nothing' }).catch((e: Error) => e);
    expect((read as Error).message).toBe('MCP error -32602: no resource notebook-jobs://nothing');
    // A job URI whose id is not valid percent-encoding, and one with a query: not ours either.
    for (const uri of [
      'notebook-jobs://jobs/%E0%A4%A',
      'notebook-jobs://jobs/abc?x=1',
      'notebook-jobs://jobs//output',
    ]) {
      const bad = await client.readResource({ uri }).catch((e: Error) => e);
      expect((bad as Error).message).toBe(`MCP error -32602: no resource ${uri}`);
    }
    // A job id of 100,000 characters: refused as a parameter error, not looked up, not a 5xx.
    const huge = await client
      .readResource({ uri: `notebook-jobs://jobs/job_${'a'.repeat(100_000)}` })
      .catch((e: Error) => e);
    expect((huge as Error).message).toMatch(/^MCP error -32602: /);
    expect((huge as Error).message.length).toBeLessThan(1_000);
    // And a URI of ours of no shape at all, as long: quoted back shortened.
    const long = `notebook-jobs://elsewhere/${'x'.repeat(100_000)}`;
    const unknown = await client.readResource({ uri: long }).catch((e: Error) => e);
    expect((unknown as Error).message).toBe(`MCP error -32602: no resource ${long.slice(0, 200)}...`);
  });
});

describe('MCP tasks', () => {
  it('runs execute_notebook as a task: the task id is the job id; tasks/get to completion, then tasks/result', async () => {
    const created = await client.request(
      {
        method: 'tools/call',
        params: {
          name: 'execute_notebook',
          arguments: { notebook: { content: slow(1) } },
          task: { ttl: 60_000 },
        },
      },
      CreateTaskResultSchema,
    );
    const { task } = created;
    expect(task.taskId).toMatch(/^job_/);
    expect(task.status).toBe('working');
    expect(task.pollInterval).toBeGreaterThan(0);
    const job = await svc.request('GET', `/v1/jobs/${task.taskId}`);
    expect(job.status).toBe(200);

    let got = await client.experimental.tasks.getTask(task.taskId);
    const messages = new Set<string>();
    const end = Date.now() + 60_000;
    while (got.status === 'working') {
      if (got.statusMessage) messages.add(got.statusMessage);
      expect(Date.now()).toBeLessThan(end);
      await new Promise((r) => setTimeout(r, 200));
      got = await client.experimental.tasks.getTask(task.taskId);
    }
    expect(got.status).toBe('completed');
    expect([...messages].some((m) => /cells/.test(m))).toBe(true);
    // tasks/result is what the tool call would have returned: execute_notebook's own shape.
    const result = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
    expect(ExecuteNotebookOutputSchema.parse(result.structuredContent)).toMatchObject({
      job: { job_id: task.taskId, status: 'completed' },
      done: true,
      result: { output_available: true, summary: { totals: { error: 0, not_run: 0 } } },
      next: null,
    });
  });

  it("gives the SDK's task client a result that matches execute_notebook's output schema", async () => {
    // callToolStream validates the final result against the tool's outputSchema; it used to reject
    // every execute_notebook task (-32602 Structured content does not match).
    await client.listTools(); // the client sends a task only for tools it knows to support them
    const seen: string[] = [];
    let final: any = null;
    for await (const message of client.experimental.tasks.callToolStream({
      name: 'execute_notebook',
      arguments: { notebook: { content: slow(1) } },
    })) {
      seen.push(message.type);
      if (message.type === 'error') throw message.error;
      if (message.type === 'result') final = message.result;
    }
    expect(seen[0]).toBe('taskCreated');
    expect(seen.at(-1)).toBe('result');
    expect(final.structuredContent).toMatchObject({ done: true, job: { status: 'completed' } });
  });

  it('cancels a running task with tasks/cancel, which cancels the job', async () => {
    const { task } = await client.request(
      {
        method: 'tools/call',
        params: { name: 'execute_notebook', arguments: { notebook: { content: slow(120) } }, task: {} },
      },
      CreateTaskResultSchema,
    );
    await svc.waitFor(task.taskId, (j) => j.progress.cells_executed >= 2);
    const cancelled = await client.experimental.tasks.cancelTask(task.taskId);
    expect(cancelled.status).toBe('cancelled');
    expect((await svc.request('GET', `/v1/jobs/${task.taskId}`)).body.status).toBe('cancelled');
    await expect(client.experimental.tasks.cancelTask(task.taskId)).rejects.toThrow(/terminal/);
  });

  it('lists only the caller’s tasks', async () => {
    const { tasks } = await client.experimental.tasks.listTasks();
    expect(tasks.length).toBeGreaterThanOrEqual(2);
    // Another tenant's job (created straight through the service) is neither listed nor readable.
    const other = await svc.server.service.create('someone-else', { notebook: { content: quick } });
    const again = await client.experimental.tasks.listTasks();
    expect(again.tasks.map((t) => t.taskId)).not.toContain(other.job_id);
    await expect(client.experimental.tasks.getTask(other.job_id)).rejects.toThrow(/not found/i);
    const viaTool = await call('manage_async_job', { action: 'status', job_id: other.job_id });
    expect(viaTool.isError).toBe(true);
  });
});

describe('transport hygiene', () => {
  const rpc = (body: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, ...(body as object) });
  const post = (headers: Record<string, string>, body: string) =>
    fetch(`${svc.server.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body,
    });

  it('answers GET and DELETE with 405 and Allow: POST', async () => {
    for (const method of ['GET', 'DELETE']) {
      const response = await fetch(`${svc.server.url}/mcp`, { method });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('POST');
    }
  });

  it('refuses a foreign Origin with 403 and accepts its own', async () => {
    const listTools = rpc({ method: 'tools/list', params: {} });
    const foreign = await post(
      { origin: 'https://evil.example', 'mcp-protocol-version': '2025-11-25' },
      listTools,
    );
    expect(foreign.status).toBe(403);
    expect((await foreign.json()).error.message).toMatch(/origin https:\/\/evil.example is not allowed/);
    const own = await post({ origin: svc.server.url, 'mcp-protocol-version': '2025-11-25' }, listTools);
    expect(own.status).toBe(200);
  });

  it('rejects an unsupported MCP-Protocol-Version and answers a supported one', async () => {
    const listTools = rpc({ method: 'tools/list', params: {} });
    const bad = await post({ 'mcp-protocol-version': '1999-01-01' }, listTools);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/protocol version/i);
    const good = await post({ 'mcp-protocol-version': '2025-06-18' }, listTools);
    expect(good.status).toBe(200);
    expect((await good.json()).result.tools).toHaveLength(3);
  });

  it('sends JSON-RPC error messages without the SDK\'s "MCP error <code>: " prefix', async () => {
    const unknown = await post(
      { 'mcp-protocol-version': '2025-11-25' },
      rpc({ method: 'tools/call', params: { name: 'run_everything', arguments: {} } }),
    );
    const { error } = await unknown.json();
    expect(error.code).toBe(-32602);
    expect(error.message).toMatch(/^unknown tool "run_everything"/);
  });

  it.each([
    ['2025-11-25', true],
    ['2025-06-18', false],
    ['2025-03-26', false],
  ])(
    'advertises tasks only to clients that negotiate a version with tasks: %s -> %s',
    async (version, tasks) => {
      const init = await post(
        {},
        rpc({
          method: 'initialize',
          params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
        }),
      );
      const { result } = await init.json();
      expect(result.protocolVersion).toBe(version);
      expect(result.capabilities).toMatchObject({ tools: {}, resources: {} });
      if (tasks) expect(result.capabilities.tasks.requests.tools.call).toEqual({});
      else expect(result.capabilities).not.toHaveProperty('tasks');
    },
  );

  it('limits the body size and rejects bodies that are not JSON', async () => {
    const huge = await post({}, 'x'.repeat(7 * 1024 * 1024));
    expect(huge.status).toBe(413);
    const garbage = await post({}, '{not json');
    expect(garbage.status).toBe(400);
    expect((await garbage.json()).error.code).toBe(-32700);
    // JSON that is no message at all (null, a number) is a client error too, never a 500.
    for (const version of [undefined, '2025-11-25', '2026-07-28']) {
      for (const body of ['null', '42', '"text"']) {
        const notMessage = await post(version ? { 'mcp-protocol-version': version } : {}, body);
        expect(notMessage.status, `${version} ${body}`).toBeGreaterThanOrEqual(400);
        expect(notMessage.status, `${version} ${body}`).toBeLessThan(500);
      }
    }
  });
});

describe('bearer token', () => {
  let guarded: TestService;
  beforeAll(async () => {
    guarded = await startTestService({ mcpToken: 'secret-token-123' });
  });
  afterAll(async () => guarded?.close());

  it('requires the configured token and maps it to the tenant', async () => {
    await expect(connect(guarded.server.url)).rejects.toThrow();
    await expect(connect(guarded.server.url, { authorization: 'Bearer wrong' })).rejects.toThrow();
    const ok = await connect(guarded.server.url, { authorization: 'Bearer secret-token-123' });
    const { tools } = await ok.listTools();
    expect(tools).toHaveLength(3);
    await ok.close();
  });
});
