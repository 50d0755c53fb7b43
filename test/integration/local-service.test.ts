/**
 * The local service end to end: REST over real HTTP, jobs in dynalite on disk, each job a runner
 * child process executing the notebook in a real Python kernel.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCell, joined, makeNotebook } from '../helpers/notebooks.ts';
import {
  isEnded,
  processesMentioning,
  rawRequest,
  startTestService,
  type TestService,
} from '../helpers/local-service.ts';
import { sizedBody } from '../helpers/sized-body.ts';
import { MAX_INLINE_NOTEBOOK_BYTES, MAX_REQUEST_BODY_BYTES } from '../../lambda/core/settings.ts';

let svc: TestService;
let workspace: string;

beforeAll(async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'notebook-jobs-svc-'));
  workspace = mkdtempSync(join(tmpdir(), 'notebook-jobs-workspace-'));
  svc = await startTestService({ maxConcurrentJobs: 4, dataDir, workspace });
});
afterAll(async () => {
  await svc?.close();
  if (svc) rmSync(svc.dataDir, { recursive: true, force: true });
  if (workspace) rmSync(workspace, { recursive: true, force: true });
});

const parameterized = makeNotebook([
  codeCell('name = "world"  # who to greet\ncount = 2  # how many times\nratio: float = 0.5', ['parameters']),
  codeCell('for i in range(count):\n    print(f"hello {name} {i}")\nprint("ratio", ratio)'),
]);

async function submit(body: Record<string, unknown>, headers?: Record<string, string>) {
  const response = await svc.request('POST', '/v1/jobs', body, headers);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body;
}

async function allLogLines(jobId: string, limit: number): Promise<Array<{ stream: string; text: string }>> {
  const lines: Array<{ stream: string; text: string }> = [];
  let cursor: string | undefined;
  for (;;) {
    const query = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
    const { status, body } = await svc.request('GET', `/v1/jobs/${jobId}/logs?${query}`);
    expect(status).toBe(200);
    lines.push(...body.lines);
    cursor = body.next_cursor;
    if (body.at_end) return lines;
  }
}

describe('a parameterized notebook', () => {
  it('runs with the injected values and reports them in outputs, logs and the result', async () => {
    const job = await submit({
      notebook: { content: parameterized, name: 'greet.ipynb' },
      parameters: { name: 'Ada "the first"', count: 3 },
      wait_seconds: 20,
    });
    expect(job.status).toBe('completed');
    expect(job.progress).toMatchObject({ cells_total: 3, cells_executed: 3, percent: 100 });
    expect(job.output.available).toBe(true);

    const output = await svc.request('GET', `/v1/jobs/${job.job_id}/output`);
    expect(output.status).toBe(200);
    expect(output.headers.get('content-type')).toBe('application/x-ipynb+json');
    const injected = output.body.cells[1];
    expect(injected.metadata.tags).toContain('injected-parameters');
    const printed = output.body.cells[2].outputs
      .map((o: { text: string[] | string }) => joined(o.text))
      .join('');
    expect(printed).toContain('hello Ada "the first" 2');
    expect(printed).toContain('ratio 0.5');

    // Read as soon as the job shows as ended: the log must already be complete.
    const logs = await allLogLines(job.job_id, 100);
    expect(logs.at(-1)?.text).toBe('job completed');
    expect(logs.filter((l) => l.stream === 'stdout').map((l) => l.text)).toEqual([
      'hello Ada "the first" 0',
      'hello Ada "the first" 1',
      'hello Ada "the first" 2',
      'ratio 0.5',
    ]);

    const result = await svc.request('GET', `/v1/jobs/${job.job_id}/result`);
    expect(result.body.summary.totals).toMatchObject({ code_cells: 3, ok: 3, error: 0 });

    const html = await svc.request('GET', `/v1/jobs/${job.job_id}/output?format=html`);
    expect(html.status).toBe(200);
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(html.body).toMatch(/<html/);
    expect(html.body).toContain('hello Ada &#34;the first&#34; 2');
    expect((await svc.request('GET', `/v1/jobs/${job.job_id}/output?format=pdf`)).status).toBe(400);
  });

  it('is inspected: names, types, defaults and comments of its parameters', async () => {
    const { status, body } = await svc.request('POST', '/v1/notebooks/inspect', {
      notebook: { content: parameterized },
    });
    expect(status).toBe(200);
    expect(body.kernel).toBe('python3');
    expect(body.parameters).toEqual([
      { name: 'name', inferred_type: 'str', default: '"world"', help: 'who to greet' },
      { name: 'count', inferred_type: 'int', default: '2', help: 'how many times' },
      { name: 'ratio', inferred_type: 'float', default: '0.5', help: '' },
    ]);
  });
});

describe('a failing notebook', () => {
  it('fails naming the cell, keeps the outputs up to it, and leaves later cells unexecuted', async () => {
    const notebook = makeNotebook([
      codeCell('print("before")'),
      codeCell('x = 1 / 0'),
      codeCell('print("after")'),
    ]);
    const job = await submit({ notebook: { content: notebook }, wait_seconds: 20 });
    expect(job.status).toBe('failed');
    expect(job.error).toMatchObject({
      type: 'cell_error',
      cell_index: 1,
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
    });
    expect(job.output.available).toBe(true);

    const output = (await svc.request('GET', `/v1/jobs/${job.job_id}/output`)).body;
    expect(joined(output.cells[0].outputs[0].text)).toBe('before\n');
    expect(output.cells[1].outputs.some((o: { output_type: string }) => o.output_type === 'error')).toBe(
      true,
    );
    expect(output.cells[2].execution_count).toBeNull();

    const result = (await svc.request('GET', `/v1/jobs/${job.job_id}/result`)).body;
    expect(result.summary.cells.map((c: { status: string }) => c.status)).toEqual(['ok', 'error', 'not_run']);
  });
});

describe('cancel', () => {
  it('stops a job sleeping in a cell within 5 s, saves the partial notebook, and leaves no kernel', async () => {
    const notebook = makeNotebook([
      codeCell('print("started", flush=True)'),
      codeCell('import time\ntime.sleep(120)'),
      codeCell('print("no")'),
    ]);
    const job = await submit({ notebook: { content: notebook } });
    await svc.waitFor(job.job_id, (j) => j.progress.current_cell?.index === 1, 30_000);
    expect(processesMentioning(job.job_id).length).toBeGreaterThan(0);

    const started = Date.now();
    const cancelled = await svc.request('POST', `/v1/jobs/${job.job_id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe('cancelled');
    // The runner is gone within 5 s: the partial notebook is saved and no process of the job is left.
    for (;;) {
      const output = await svc.request('GET', `/v1/jobs/${job.job_id}/output`);
      if (output.status === 200 && processesMentioning(job.job_id).length === 0) {
        expect(joined(output.body.cells[0].outputs[0].text)).toBe('started\n');
        break;
      }
      expect(Date.now() - started).toBeLessThan(5000);
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await svc.request('GET', `/v1/jobs/${job.job_id}`);
    expect(after.body.status).toBe('cancelled');
    // The runner records the saved partial notebook even though its own final state lost the race.
    expect(await svc.server.store.get(job.job_id)).toMatchObject({ output_saved: true });
    expect(after.body.output).toMatchObject({ available: true });

    const again = await svc.request('POST', `/v1/jobs/${job.job_id}/cancel`);
    expect(again.status).toBe(200); // idempotent
    expect(again.body.status).toBe('cancelled');
  });
});

describe('timeouts', () => {
  it('fails a job past timeout_seconds with error.type timeout, within the timeout plus 5 s, keeping its partial notebook', async () => {
    const notebook = makeNotebook([
      codeCell('print("working", flush=True)'),
      codeCell('import time\ntime.sleep(120)'),
    ]);
    // Long enough for a kernel to start and print on a loaded machine, short enough for a test.
    const job = await submit({ notebook: { content: notebook }, timeout_seconds: 10 });
    const running = await svc.waitFor(job.job_id, (j) => j.status !== 'queued', 30_000);
    const ended = await svc.waitFor(job.job_id, isEnded, 20_000);
    expect(ended.status).toBe('failed');
    expect(ended.error.type).toBe('timeout');
    expect(Date.parse(ended.ended_at) - Date.parse(running.started_at)).toBeLessThan(15_000);
    const output = await svc.request('GET', `/v1/jobs/${job.job_id}/output`);
    expect(output.status).toBe(200);
    expect(joined(output.body.cells[0].outputs[0].text)).toBe('working\n');
  });

  it('fails a cell past cell_timeout_seconds naming the cell', async () => {
    const notebook = makeNotebook([codeCell('x = 1'), codeCell('import time\ntime.sleep(60)')]);
    const job = await submit({ notebook: { content: notebook }, cell_timeout_seconds: 2, wait_seconds: 20 });
    expect(job.status).toBe('failed');
    expect(job.error).toMatchObject({ type: 'timeout', cell_index: 1 });
  });
});

describe('logs', () => {
  it('pages through 100000 printed lines: every line exactly once, in order', async () => {
    const notebook = makeNotebook([codeCell('for i in range(100000):\n    print(i)')]);
    const job = await submit({ notebook: { content: notebook }, wait_seconds: 25 });
    const ended = await svc.waitFor(job.job_id, isEnded);
    expect(ended.status).toBe('completed');
    const lines = (await allLogLines(job.job_id, 5000))
      .filter((l) => l.stream === 'stdout')
      .map((l) => l.text);
    expect(lines.length).toBe(100000);
    expect(lines.every((text, i) => text === String(i))).toBe(true);

    const tail = await svc.request('GET', `/v1/jobs/${job.job_id}/logs?tail=3`);
    expect(tail.body.lines.map((l: { text: string }) => l.text).slice(-1)[0]).toMatch(/^job completed/);
  });
});

describe('idempotency', () => {
  it('returns one job for the same key and body, and 409 for the same key with another body', async () => {
    const body = { notebook: { content: makeNotebook([codeCell('x = 1')]) } };
    const first = await submit(body, { 'idempotency-key': 'nightly-42' });
    const second = await submit(body, { 'idempotency-key': 'nightly-42' });
    expect(second.job_id).toBe(first.job_id);

    const other = await svc.request(
      'POST',
      '/v1/jobs',
      { ...body, priority: 3 },
      { 'idempotency-key': 'nightly-42' },
    );
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('conflict');
    expect(other.body.error.message).toContain('nightly-42');
  });
});

describe('list, delete and cleanup', () => {
  it('lists newest first with status and tag filters, and cleans up ended jobs', async () => {
    const notebook = { content: makeNotebook([codeCell('x = 1')]) };
    const a = await submit({ notebook, tags: { team: 'ml' }, wait_seconds: 20 });
    const b = await submit({ notebook, tags: { team: 'data' }, wait_seconds: 20 });
    const tagged = await svc.request('GET', '/v1/jobs?tag=team%3Dml&limit=100');
    expect(tagged.body.jobs.map((j: { job_id: string }) => j.job_id)).toEqual([a.job_id]);
    const completed = await svc.request('GET', '/v1/jobs?status=completed&limit=100');
    const ids = completed.body.jobs.map((j: { job_id: string }) => j.job_id);
    expect(ids.indexOf(b.job_id)).toBeLessThan(ids.indexOf(a.job_id));

    // Paging with the cursor yields every job once, newest first.
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { jobs: Array<{ job_id: string }>; next_cursor: string | null } } =
        await svc.request('GET', `/v1/jobs?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      paged.push(...page.body.jobs.map((j) => j.job_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(paged).size).toBe(paged.length);
    expect(paged.indexOf(b.job_id)).toBeLessThan(paged.indexOf(a.job_id));
    expect(paged).toEqual([...paged].sort().reverse());

    const withLogs = await svc.request('GET', `/v1/jobs/${a.job_id}?include_logs=true&log_tail=2`);
    expect(withLogs.body.logs.lines.map((l: { text: string }) => l.text)).toEqual([
      'executed notebook saved',
      'job completed',
    ]);

    const running = await svc.request('DELETE', `/v1/jobs/${a.job_id}`);
    expect(running.status).toBe(200);
    expect((await svc.request('GET', `/v1/jobs/${a.job_id}`)).status).toBe(404);

    const cleaned = await svc.request('POST', '/v1/jobs/cleanup', { older_than_hours: 0 });
    expect(cleaned.status).toBe(200);
    expect(cleaned.body.deleted).toContain(b.job_id);
    expect((await svc.request('GET', `/v1/jobs/${b.job_id}`)).status).toBe(404);
  });
});

describe('bad input', () => {
  const good = { notebook: { content: parameterized } };
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['body not JSON', '{"notebook": ', 400, /not valid JSON/],
    ['not a notebook', { notebook: { content: { hello: 'world' } } }, 400, /nbformat|cells/],
    ['nbformat 3', { notebook: { content: { ...parameterized, nbformat: 3 } } }, 400, /nbformat 3/],
    ['unknown kernel', { ...good, kernel: 'cobol' }, 400, /unknown kernel "cobol".*python3/],
    [
      'unknown parameter',
      { ...good, parameters: { nmae: 'x' } },
      400,
      /unknown parameter nmae.*name, count, ratio/,
    ],
    ['negative timeout', { ...good, timeout_seconds: -1 }, 400, /timeout_seconds/],
    ['huge timeout', { ...good, timeout_seconds: 10 ** 9 }, 400, /timeout_seconds/],
    ['unknown field', { ...good, colour: 'red' }, 400, /colour/],
    [
      'notebook over the size limit',
      { notebook: { content: { ...parameterized, metadata: { padding: 'x'.repeat(5 * 1024 * 1024) } } } },
      413,
      /over \d+ bytes; send larger notebooks with POST \/v1\/uploads/,
    ],
  ];

  it.each(cases)('%s: clear 4xx, nothing created', async (_name, body, status, message) => {
    const before = (await svc.request('GET', '/v1/jobs?limit=100')).body.jobs.length;
    const response = await svc.request('POST', '/v1/jobs', body);
    expect(response.status).toBe(status);
    expect(response.body.error.message).toMatch(message);
    const after = (await svc.request('GET', '/v1/jobs?limit=100')).body.jobs.length;
    expect(after).toBe(before);
  });

  it('rejects a malformed job id, a forged cursor, an unknown route and a wrong method', async () => {
    const malformed = await svc.request('GET', '/v1/jobs/not-a-job');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toMatch(/job_id/);

    const missing = await svc.request('GET', '/v1/jobs/job_000000000000000000000000000000');
    expect(missing.status).toBe(404);

    const forgedList = await svc.request(
      'GET',
      `/v1/jobs?cursor=${encodeURIComponent(Buffer.from('{"pk":"x"}').toString('base64url') + '.AAAA')}`,
    );
    expect(forgedList.status).toBe(400);
    expect(forgedList.body.error.message).toMatch(/cursor/);

    const job = await submit({ ...good, wait_seconds: 20 });
    const forgedLogs = await svc.request('GET', `/v1/jobs/${job.job_id}/logs?cursor=MTIz.bad`);
    expect(forgedLogs.status).toBe(400);

    const wrongMethod = await svc.request('PUT', '/v1/jobs');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST, GET');
    expect((await svc.request('GET', '/v2/nothing')).status).toBe(404);
  });

  it('answers 409 with the state when cancelling a finished job', async () => {
    const job = await submit({ ...good, wait_seconds: 20 });
    expect(job.status).toBe('completed');
    const response = await svc.request('POST', `/v1/jobs/${job.job_id}/cancel`);
    expect(response.status).toBe(409);
    expect(response.body.error.details).toMatchObject({ status: 'completed' });
    expect((await svc.request('GET', `/v1/jobs/${job.job_id}`)).body.status).toBe('completed');
  });
});

describe('notebooks by upload and by URI', () => {
  it('runs a notebook uploaded to the upload URL and submitted by its notebook_uri', async () => {
    const upload = await svc.request('POST', '/v1/uploads', { name: 'big.ipynb' });
    expect(upload.status).toBe(201);
    expect(upload.body.method).toBe('PUT');
    const put = await fetch(upload.body.upload_url, { method: 'PUT', body: JSON.stringify(parameterized) });
    expect(put.status).toBe(200);
    const job = await submit({
      notebook: { uri: upload.body.notebook_uri },
      parameters: { count: 1 },
      wait_seconds: 20,
    });
    expect(job.status).toBe('completed');
    expect(job.notebook.name).toBe('big.ipynb');

    // Larger than any inline request may be: the reason uploads exist.
    const large = {
      ...parameterized,
      metadata: { ...parameterized.metadata, padding: 'x'.repeat(7 * 1024 * 1024) },
    };
    const second = await svc.request('POST', '/v1/uploads', { name: 'large.ipynb' });
    const bigPut = await fetch(second.body.upload_url, { method: 'PUT', body: JSON.stringify(large) });
    expect(bigPut.status).toBe(200);
    const bigJob = await submit({ notebook: { uri: second.body.notebook_uri }, wait_seconds: 20 });
    expect(bigJob.status).toBe('completed');

    const forged = await fetch(`${svc.server.url}/v1/uploads/${'x'.repeat(40)}.AAAA`, {
      method: 'PUT',
      body: '{}',
    });
    expect(forged.status).toBe(400);
    const badName = await svc.request('POST', '/v1/uploads', { name: '../evil.ipynb' });
    expect(badName.status).toBe(400);
  });

  it('runs a file:// notebook under the workspace and refuses one outside it', async () => {
    const inside = join(workspace, 'sub', 'nb.ipynb');
    mkdirSync(dirname(inside), { recursive: true });
    writeFileSync(inside, JSON.stringify(parameterized));
    const job = await submit({ notebook: { uri: pathToFileURL(inside).href }, wait_seconds: 20 });
    expect(job.status).toBe('completed');

    const outside = await svc.request('POST', '/v1/jobs', { notebook: { uri: 'file:///etc/passwd' } });
    expect(outside.status).toBe(400);
    expect(outside.body.error.message).toMatch(/may not be submitted: only files under the workspace folder/);
    // Nor anything of the service's own data folder (another job's stored notebook).
    const stored = (await svc.server.store.get(job.job_id))?.notebook.uri as string;
    const data = await svc.request('POST', '/v1/notebooks/inspect', { notebook: { uri: stored } });
    expect(data.status).toBe(400);
    const s3 = await svc.request('POST', '/v1/jobs', { notebook: { uri: 's3://bucket/nb.ipynb' } });
    expect(s3.status).toBe(400);
    expect(s3.body.error.message).toMatch(/unsupported notebook URI/);
  });
});

describe('health and openapi', () => {
  it('describes itself', async () => {
    const health = await svc.request('GET', '/v1/health');
    expect(health.body).toMatchObject({ status: 'ok', mode: 'local', engine: 'nbclient' });
    expect(health.body.kernels).toContain('python3');
    const openapi = await svc.request('GET', '/openapi.json');
    expect(openapi.body.openapi).toBe('3.1.0');
    const create = openapi.body.paths['/v1/jobs'].post.requestBody.content['application/json'].schema;
    expect(create.properties.timeout_seconds.maximum).toBe(604800);
  });
});

describe('request size limits (the same as the Lambdas)', () => {
  const headers = (extra: Record<string, string> = {}) => ({
    host: `127.0.0.1:${svc.server.port}`,
    'content-type': 'application/json',
    ...extra,
  });
  const create = (bodyBytes: number) =>
    sizedBody(MAX_INLINE_NOTEBOOK_BYTES, bodyBytes, (content) => ({
      notebook: { content, name: 'big.ipynb' },
    }));
  const mcpCall = (bodyBytes: number) =>
    sizedBody(MAX_INLINE_NOTEBOOK_BYTES, bodyBytes, (content) => ({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: {
        name: 'execute_notebook',
        arguments: { notebook: { content, name: 'big.ipynb' }, sync_timeout_seconds: 0 },
      },
    }));
  const mcpHeaders = () =>
    headers({ accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' });

  it('REST: a body of exactly the limit is taken; one byte over is 413 pointing at POST /v1/uploads', async () => {
    const at = await rawRequest(svc, 'POST', '/v1/jobs', headers(), create(MAX_REQUEST_BODY_BYTES));
    expect(at.status, at.text.slice(0, 300)).toBe(201);
    const over = await rawRequest(svc, 'POST', '/v1/jobs', headers(), create(MAX_REQUEST_BODY_BYTES + 1));
    expect(over.status).toBe(413);
    expect(over.body.error.message).toBe(
      `request body is over ${MAX_REQUEST_BODY_BYTES} bytes; send larger notebooks with POST /v1/uploads`,
    );
  });

  it('MCP: a body of exactly the limit is taken; one byte over is 413 pointing at POST /v1/uploads', async () => {
    const at = await rawRequest(svc, 'POST', '/mcp', mcpHeaders(), mcpCall(MAX_REQUEST_BODY_BYTES));
    expect(at.status, at.text.slice(0, 300)).toBe(200);
    expect(at.body.result.isError).toBeFalsy();
    const over = await rawRequest(svc, 'POST', '/mcp', mcpHeaders(), mcpCall(MAX_REQUEST_BODY_BYTES + 1));
    expect(over.status).toBe(413);
    expect(over.body.error.message).toMatch(/POST \/v1\/uploads/);
  });
});
