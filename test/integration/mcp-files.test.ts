/**
 * Output files over MCP, in both protocol eras (SDK v1 client on 2025-11-25, SDK v2 client pinned
 * to 2026-07-28), with a real notebook on a real kernel: execute_notebook and manage_async_job
 * results list the files and link each as a resource_link; resources/read returns a text file as
 * text and a binary one as a base64 blob; another tenant's file is not found; path tricks in the
 * URI are refused and never reach a file outside the job's list.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  Client as V2Client,
  StreamableHTTPClientTransport as V2Transport,
} from '@modelcontextprotocol/client';
import { ExecuteNotebookOutputSchema, ManageAsyncJobOutputSchema } from '../../lambda/mcp/schemas.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

/** What the notebook writes: a CSV in a folder, bytes that are not UTF-8, a name that needs encoding. */
const CSV = 'x,y\n1,2\n3,4\n';
const BINARY = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0xfe, 0x00, 0x80]);
const ODD_NAME = 'résumé 100%.txt';

const writer = makeNotebook([
  codeCell(
    [
      'import os',
      'os.makedirs("data", exist_ok=True)',
      `open("data/out.csv", "w").write(${JSON.stringify(CSV)})`,
      `open("plot.png", "wb").write(bytes.fromhex("${BINARY.toString('hex')}"))`,
      `open(${JSON.stringify(ODD_NAME)}, "w", encoding="utf-8").write("odd")`,
    ].join('\n'),
  ),
]);

interface Era {
  name: string;
  connect(url: string): Promise<{
    callTool(params: { name: string; arguments: Record<string, unknown> }): Promise<any>;
    readResource(params: { uri: string }): Promise<any>;
    close(): Promise<void>;
  }>;
}

const ERAS: Era[] = [
  {
    name: '2025-11-25 (SDK v1 client)',
    async connect(url) {
      const client = new V1Client({ name: 'files-v1', version: '1' });
      await client.connect(new V1Transport(new URL(`${url}/mcp`)));
      return client;
    },
  },
  {
    name: '2026-07-28 (SDK v2 client)',
    async connect(url) {
      const client = new V2Client(
        { name: 'files-v2', version: '1' },
        { versionNegotiation: { mode: { pin: '2026-07-28' } } },
      );
      await client.connect(new V2Transport(new URL(`${url}/mcp`)));
      return client;
    },
  },
];

let svc: TestService;
let otherJobId: string;

beforeAll(async () => {
  svc = await startTestService();
  // Another tenant's job that wrote the same files (straight through the service).
  const other = await svc.server.service.create('someone-else', { notebook: { content: writer } });
  otherJobId = other.job_id;
  const ended = await svc.server.service.waitForEnd('someone-else', otherJobId, 60);
  expect(ended.status).toBe('completed');
});
afterAll(async () => svc?.close());

const sha256 = (body: Buffer | string) => createHash('sha256').update(body).digest('hex');
const fileUri = (jobId: string, encodedPath: string) => `notebook-jobs://jobs/${jobId}/files/${encodedPath}`;

describe.each(ERAS)('output files over MCP, $name', (era) => {
  let client: Awaited<ReturnType<Era['connect']>>;
  let jobId: string;
  beforeAll(async () => {
    client = await era.connect(svc.server.url);
  });
  afterAll(async () => client?.close());

  it('execute_notebook lists each file with its resource URI and links it as a resource_link', async () => {
    const result = await client.callTool({
      name: 'execute_notebook',
      arguments: { notebook: { content: writer, name: 'writer.ipynb' }, sync_timeout_seconds: 20 },
    });
    expect(result.isError).toBeFalsy();
    const s = ExecuteNotebookOutputSchema.parse(result.structuredContent);
    expect(s.done).toBe(true);
    jobId = s.job.job_id;
    const files = s.result?.files ?? [];
    expect(files.map((f) => f.path).sort()).toEqual(['data/out.csv', 'plot.png', ODD_NAME].sort());
    const csv = files.find((f) => f.path === 'data/out.csv');
    expect(csv).toMatchObject({
      size: CSV.length,
      sha256: sha256(CSV),
      media_type: 'text/csv',
      resource_uri: fileUri(jobId, 'data/out.csv'),
    });
    expect(files.find((f) => f.path === ODD_NAME)?.resource_uri).toBe(
      fileUri(jobId, 'r%C3%A9sum%C3%A9%20100%25.txt'),
    );
    const links = result.content.filter((c: any) => c.type === 'resource_link');
    // The executed notebook, then one link per file, each with its media type and size.
    expect(links.map((l: any) => l.uri).sort()).toEqual(
      [`notebook-jobs://jobs/${jobId}/output`, ...files.map((f) => f.resource_uri)].sort(),
    );
    expect(links.find((l: any) => l.name === 'plot.png')).toMatchObject({
      uri: fileUri(jobId, 'plot.png'),
      mimeType: 'image/png',
      size: BINARY.length,
    });
  });

  it('manage_async_job result lists and links them the same way', async () => {
    const result = await client.callTool({
      name: 'manage_async_job',
      arguments: { action: 'result', job_id: jobId },
    });
    const s = ManageAsyncJobOutputSchema.parse(result.structuredContent);
    if (s.action !== 'result') throw new Error(`unexpected action ${s.action}`);
    expect(s.files.map((f) => f.resource_uri).sort()).toEqual(
      ['data/out.csv', 'plot.png', 'r%C3%A9sum%C3%A9%20100%25.txt'].map((p) => fileUri(jobId, p)).sort(),
    );
    const linked = result.content.filter((c: any) => c.type === 'resource_link').map((l: any) => l.uri);
    for (const file of s.files) expect(linked).toContain(file.resource_uri);
  });

  it('reads a text file as text and a binary one as a base64 blob, by the linked URI', async () => {
    const csv = await client.readResource({ uri: fileUri(jobId, 'data/out.csv') });
    expect(csv.contents).toEqual([{ uri: fileUri(jobId, 'data/out.csv'), mimeType: 'text/csv', text: CSV }]);
    const png = await client.readResource({ uri: fileUri(jobId, 'plot.png') });
    expect(png.contents[0]).toMatchObject({ mimeType: 'image/png' });
    expect(png.contents[0].text).toBeUndefined();
    expect(Buffer.from(png.contents[0].blob, 'base64')).toEqual(BINARY);
    const odd = await client.readResource({ uri: fileUri(jobId, 'r%C3%A9sum%C3%A9%20100%25.txt') });
    expect(odd.contents[0].text).toBe('odd');
  });

  it("refuses another tenant's file as not found", async () => {
    const refused = client.readResource({ uri: fileUri(otherJobId, 'data/out.csv') });
    await expect(refused).rejects.toMatchObject({ code: -32602 });
    await expect(refused).rejects.toThrow(/not_found/);
  });

  it.each([
    ['a parent folder, encoded', '..%2Foutput.ipynb'],
    ['a parent folder inside an encoded segment', 'data%2F..%2F..%2Fother%2Ffiles%2Fx'],
    ['an absolute path', '%2Fetc%2Fpasswd'],
    ['the stored notebook beside the files', 'output.ipynb'],
    ['the input notebook', 'input.ipynb'],
    ['a control character', 'data%2Fout.csv%00'],
    ['a broken escape', 'data%2'],
    ['a backslash', 'data%5Cout.csv'],
    ['a file the job did not write', 'data/missing.csv'],
  ])('refuses %s (%s)', async (_what, encodedPath) => {
    const refused = client.readResource({ uri: fileUri(jobId, encodedPath) });
    // A clear invalid-params error, never contents and never an internal error.
    await expect(refused).rejects.toMatchObject({ code: -32602 });
  });
});

describe('the inline limit for output files', () => {
  it('refuses a file over it before reading it, pointing at the download; a file at it is read', async () => {
    const read = (limit: number) =>
      svc.server.service.file('someone-else', otherJobId, 'data/out.csv', {
        allowUrl: false,
        maxBytes: () => limit,
      });
    await expect(read(CSV.length - 1)).rejects.toThrow(
      new RegExp(
        `is ${CSV.length} bytes, more than the ${CSV.length - 1} served here; download it from /v1/jobs/`,
      ),
    );
    const atLimit = await read(CSV.length);
    expect('body' in atLimit && atLimit.body.toString()).toBe(CSV);
  });
});
