/**
 * Inspecting the input files a notebook's folder would contribute (POST /v1/notebooks/inspect and
 * MCP inspect_notebook with `files`), through a real local service with small caps: the listing
 * (names, sizes, total, caps), refusals listed rather than thrown (a link leading out, past the
 * caps, a pattern matching nothing), and 4xx for what the request itself gets wrong (a folder
 * outside the workspace, malformed or huge `files`). Nothing runs a kernel and nothing is stored.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../helpers/local-service.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';

let svc: TestService;
let client: Client;
let workspace: string;
let outside: string;
const notebook = makeNotebook([codeCell('x = 1', ['parameters']), codeCell('print(x)')]);
const uriOf = (...path: string[]) => pathToFileURL(join(workspace, ...path)).href;

/** A folder of the workspace with these files (path -> text) and the notebook nb.ipynb. */
function project(name: string, files: Record<string, string>): string {
  const folder = join(workspace, name);
  for (const [path, text] of Object.entries({ 'nb.ipynb': JSON.stringify(notebook), ...files })) {
    mkdirSync(join(folder, path, '..'), { recursive: true });
    writeFileSync(join(folder, path), text);
  }
  return uriOf(name, 'nb.ipynb');
}

const inspect = (body: unknown) => svc.request('POST', '/v1/notebooks/inspect', body);

beforeAll(async () => {
  workspace = mkdtempSync(join(tmpdir(), 'notebook-jobs-inspect-'));
  outside = mkdtempSync(join(tmpdir(), 'notebook-jobs-outside-'));
  writeFileSync(join(outside, 'private.txt'), 'not for jobs');
  // Read once at start by the service: small caps to reach them with small files.
  process.env.NOTEBOOK_JOBS_MAX_INPUT_FILES = '4';
  process.env.NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES = '1024';
  try {
    svc = await startTestService({ workspace });
  } finally {
    delete process.env.NOTEBOOK_JOBS_MAX_INPUT_FILES;
    delete process.env.NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES;
  }
  client = new Client({ name: 'notebook-jobs-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${svc.server.url}/mcp`)));
});

afterAll(async () => {
  await client?.close();
  await svc?.close();
  rmSync(workspace, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

describe('inspect with files', () => {
  it("lists the files of the notebook's folder with sizes, total and caps, and stores nothing", async () => {
    const nb = project('listing', {
      'data/sales.csv': 'region,amount\nnorth,10\n',
      'utils.py': 'def f():\n    return 1\n',
      '__pycache__/utils.cpython-312.pyc': 'cache',
    });

    const res = await inspect({ notebook: { uri: nb }, files: { from: 'folder' } });

    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.parameters.map((p: any) => p.name)).toEqual(['x']);
    expect(res.body.files).toEqual({
      source: uriOf('listing') + '/',
      files: [
        { path: 'data/sales.csv', size: 23 },
        { path: 'nb.ipynb', size: JSON.stringify(notebook).length },
        { path: 'utils.py', size: 22 },
      ],
      count: 3,
      total_bytes: 23 + JSON.stringify(notebook).length + 22,
      max_files: 4,
      max_bytes: 1024,
      refused: [],
      accepted: true,
    });
    const inputs = join(svc.dataDir, 'artifacts', 'inputs');
    expect(existsSync(inputs) ? readdirSync(inputs) : []).toEqual([]);
    // Without files, inspection says nothing about them (as before).
    const plain = await inspect({ notebook: { uri: nb } });
    expect(plain.body).not.toHaveProperty('files');
  });

  it('chooses by paths as submit does, and lists a pattern matching nothing as refused', async () => {
    const nb = project('paths', { 'a.csv': 'a\n', 'b.csv': 'b\n', 'notes.md': '# n\n' });
    const res = await inspect({ notebook: { uri: nb }, files: { paths: ['*.csv', 'missing/*.txt'] } });
    expect(res.status).toBe(200);
    expect(res.body.files).toMatchObject({
      files: [
        { path: 'a.csv', size: 2 },
        { path: 'b.csv', size: 2 },
      ],
      count: 2,
      total_bytes: 4,
      refused: [{ path: 'missing/*.txt', reason: 'matches nothing in the folder' }],
      accepted: false,
    });
    // Submit refuses what inspection lists as refused.
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { uri: nb },
      files: { paths: ['*.csv', 'missing/*.txt'] },
    });
    expect(created.status).toBe(400);
  });

  it('lists a link leading out of the workspace as refused, and the other files as taken', async () => {
    const nb = project('linked', { 'ok.txt': 'fine\n' });
    symlinkSync(join(outside, 'private.txt'), join(workspace, 'linked', 'leak.txt'));

    const res = await inspect({ notebook: { uri: nb }, files: { from: 'folder' } });

    expect(res.status).toBe(200);
    expect(res.body.files.files.map((f: any) => f.path)).toEqual(['nb.ipynb', 'ok.txt']);
    expect(res.body.files.refused).toEqual([
      {
        path: 'leak.txt',
        reason: expect.stringMatching(/leak\.txt may not be submitted: only files under the workspace/),
      },
    ]);
    expect(res.body.files.accepted).toBe(false);
    expect(JSON.stringify(res.body)).not.toContain('not for jobs');
  });

  it('lists files past the count and byte caps as refused, with the caps named', async () => {
    const nb = project('big', {
      'a.txt': 'a',
      'b.bin': 'b'.repeat(2000),
      'c.txt': 'c',
      'd.txt': 'd',
      'e.txt': 'e',
    });
    const res = await inspect({ notebook: { uri: nb }, files: { from: 'folder' } });
    expect(res.status).toBe(200);
    const { files, refused, count, accepted } = res.body.files;
    expect(files.map((f: any) => f.path)).toEqual(['a.txt', 'c.txt', 'd.txt', 'e.txt']);
    expect(count).toBe(4);
    expect(refused).toEqual([
      {
        path: 'b.bin',
        reason: expect.stringMatching(/more than 1024 bytes.*NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES/),
      },
      {
        path: 'nb.ipynb',
        reason: expect.stringMatching(/more than 4 files.*NOTEBOOK_JOBS_MAX_INPUT_FILES\)/),
      },
    ]);
    expect(accepted).toBe(false);
  });

  it.each([
    [
      'a folder outside the workspace',
      () => ({ uri: `${pathToFileURL(outside).href}/` }),
      400,
      /may not be submitted/,
    ],
    [
      'a folder of the data folder',
      () => ({ uri: `${pathToFileURL(svc.dataDir).href}/` }),
      400,
      /may not be submitted/,
    ],
    ['a missing folder', () => ({ uri: `${uriOf('nowhere')}/` }), 404, /no folder/],
    ['an unknown form', () => ({ from: 'elsewhere' }), 400, /files/],
    ['no paths', () => ({ paths: [] }), 400, /files/],
    ['too many paths', () => ({ paths: Array.from({ length: 1001 }, (_, i) => `f${i}`) }), 400, /files/],
    ['a huge path', () => ({ paths: ['x'.repeat(5000)] }), 400, /files/],
    ['a path climbing out', () => ({ paths: ['../listing/utils.py'] }), 400, /contains ".."/],
    ['a huge URI', () => ({ uri: `file:///${'x'.repeat(5000)}/` }), 400, /files/],
    ['not an object', () => 'folder', 400, /files/],
  ])('answers %s with a 4xx naming the problem', async (_what, files, status, message) => {
    const nb = project('checked', { 'a.txt': 'a' });
    const res = await inspect({ notebook: { uri: nb }, files: files() });
    expect(res.status).toBe(status);
    expect(res.body.error.message).toMatch(message);
  });

  it('asks for the notebook by URI: an inline notebook has no folder', async () => {
    const res = await inspect({ notebook: { content: notebook }, files: { from: 'folder' } });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/must be given by notebook\.uri/);
  });

  it('MCP inspect_notebook lists them too, and its output schema carries them', async () => {
    const nb = project('mcp', { 'data/in.csv': 'x\n1\n' });
    const result = (await client.callTool(
      { name: 'inspect_notebook', arguments: { notebook: { uri: nb }, files: { paths: ['data/**'] } } },
      CallToolResultSchema,
    )) as { structuredContent?: any; isError?: boolean };
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent.files).toEqual({
      source: uriOf('mcp') + '/',
      files: [{ path: 'data/in.csv', size: 4 }],
      count: 1,
      total_bytes: 4,
      max_files: 4,
      max_bytes: 1024,
      refused: [],
      accepted: true,
    });
    const refused = (await client.callTool(
      {
        name: 'inspect_notebook',
        arguments: { notebook: { uri: nb }, files: { uri: `${pathToFileURL(outside).href}/` } },
      },
      CallToolResultSchema,
    )) as { content: Array<{ text: string }>; isError?: boolean };
    expect(refused.isError).toBe(true);
    expect(refused.content[0]?.text).toMatch(/may not be submitted/);
  });
});
