/**
 * A job's files through a real local service with real kernels: a notebook reads a CSV, imports a
 * helper module and displays an image from its own folder, as in Jupyter; the files it writes are
 * listed and downloadable over REST and the CLI; archive attacks are refused with 400 and write
 * nothing; links the kernel plants are not followed; file paths cannot traverse.
 */
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  existsSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { isEnded, rawRequest, startTestService, type TestService } from '../helpers/local-service.ts';
import { codeCell, makeNotebook, writeNotebook } from '../helpers/notebooks.ts';

let svc: TestService;
let workspace: string;
let project: string;
let outDir: string;

/** A 1x1 PNG, as a plot library would write one. */
const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d4948445200000001000000010806000000' +
    '1f15c4890000000d4944415478da63f8cfc0f01f0005000201ffa0a5c2d70000000049454e44ae426082',
  'hex',
);

async function tarGz(
  entries: Array<{ name: string; body?: string; type?: 'symlink' | 'link'; linkname?: string }>,
) {
  const p = pack();
  const gz = p.pipe(createGzip());
  const chunks: Buffer[] = [];
  gz.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((r) => gz.on('end', r));
  for (const e of entries) {
    if (e.type) p.entry({ name: e.name, type: e.type, linkname: e.linkname });
    else p.entry({ name: e.name }, e.body ?? '');
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function upload(name: string, body: Buffer): Promise<string> {
  const slot = await svc.request('POST', '/v1/uploads', { name });
  expect(slot.status).toBe(201);
  const path = new URL(slot.body.upload_url).pathname;
  const put = await rawRequest(svc, 'PUT', path, { 'content-type': 'application/octet-stream' }, body);
  expect(put.status).toBe(200);
  return slot.body.notebook_uri as string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  workspace = mkdtempSync(join(tmpdir(), 'notebook-jobs-files-'));
  project = join(workspace, 'project');
  outDir = join(workspace, 'downloaded');
  mkdirSync(join(project, 'data'), { recursive: true });
  writeFileSync(join(project, 'data', 'sales.csv'), 'region,amount\nnorth,10\nsouth,32\n');
  writeFileSync(
    join(project, 'utils.py'),
    'def total(rows):\n    return sum(int(r["amount"]) for r in rows)\n',
  );
  writeFileSync(join(project, 'logo.png'), PNG);
  process.env.NOTEBOOK_JOBS_MAX_OUTPUT_FILES = '3'; // read by the runners this service starts
  svc = await startTestService({ workspace, maxConcurrentJobs: 2 });
  await writeNotebook(
    project,
    'report.ipynb',
    makeNotebook([
      codeCell(
        'import csv\nfrom utils import total\nrows = list(csv.DictReader(open("data/sales.csv")))\nprint("total", total(rows))',
      ),
      codeCell('from IPython.display import Image, display\ndisplay(Image("logo.png"))'),
      codeCell(
        `open("plot.png", "wb").write(bytes.fromhex("${PNG.toString('hex')}"))\n` +
          'import os\nos.makedirs("exports", exist_ok=True)\nopen("exports/summary.csv", "w").write("total\\n42\\n")',
      ),
      codeCell(
        // The kernel plants links to what only the service may read: none may be served.
        `import os\nos.symlink("/etc/shadow", "shadow")\nos.symlink(${JSON.stringify(svc.dataDir)}, "datadir")\nos.symlink("/etc", "etc_dir")`,
      ),
    ]),
  );
});

afterAll(async () => {
  delete process.env.NOTEBOOK_JOBS_MAX_OUTPUT_FILES;
  await svc?.close();
  rmSync(workspace, { recursive: true, force: true });
});

describe('a notebook submitted with its folder', () => {
  let jobId: string;
  let job: any;

  beforeAll(async () => {
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { uri: pathToFileURL(join(project, 'report.ipynb')).href },
      files: { from: 'folder' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    jobId = created.body.job_id;
    job = await svc.waitFor(jobId, isEnded, 60_000);
  }, 70_000);

  it('runs as in Jupyter: reads the CSV, imports the helper module, displays the image', async () => {
    expect(job.status, JSON.stringify(job.error)).toBe('completed');
    const result = await svc.request('GET', `/v1/jobs/${jobId}/result`);
    expect(result.body.summary.cells[0].output_text).toContain('total 42');
    const output = await svc.request('GET', `/v1/jobs/${jobId}/output`);
    const image = output.body.cells[1].outputs[0];
    expect(image.data['image/png'].replace(/\n/g, '')).toBe(PNG.toString('base64'));
  });

  it('lists only the files the notebook wrote (not its inputs, caches or links), in the result too', async () => {
    const files = await svc.request('GET', `/v1/jobs/${jobId}/files`);
    expect(files.status).toBe(200);
    expect(files.body.files.map((f: any) => f.path)).toEqual(['exports/summary.csv', 'plot.png']);
    const plot = files.body.files.find((f: any) => f.path === 'plot.png');
    expect(plot).toEqual({
      path: 'plot.png',
      size: PNG.length,
      sha256: sha(PNG),
      media_type: 'image/png',
      download: `/v1/jobs/${jobId}/files/plot.png`,
    });
    expect(files.body.note).toContain('3 symbolic link(s) not followed');
    const result = await svc.request('GET', `/v1/jobs/${jobId}/result`);
    expect(result.body.files).toEqual(files.body.files);
    expect(result.body.files_note).toBe(files.body.note);
  });

  it('serves each file as an attachment with its bytes', async () => {
    const response = await fetch(`${svc.server.url}/v1/jobs/${jobId}/files/exports/summary.csv`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/csv');
    expect(response.headers.get('content-disposition')).toMatch(/^attachment; filename="summary.csv"/);
    expect(await response.text()).toBe('total\n42\n');
    const png = await fetch(`${svc.server.url}/v1/jobs/${jobId}/files/plot.png`);
    expect(Buffer.from(await png.arrayBuffer()).equals(PNG)).toBe(true);
  });

  it.each([
    ['..', `/v1/jobs/JOB/files/../../../etc/passwd`],
    ['%2e%2e', `/v1/jobs/JOB/files/%2e%2e/%2e%2e/secret`],
    ['encoded slash and dots', `/v1/jobs/JOB/files/%2E%2E%2Fsecret`],
    ['absolute', `/v1/jobs/JOB/files/%2Fetc%2Fpasswd`],
    ['a planted link', `/v1/jobs/JOB/files/shadow`],
    ['an input left untouched', `/v1/jobs/JOB/files/utils.py`],
    ['the input notebook', `/v1/jobs/JOB/files/input.ipynb`],
  ])('refuses a file path with %s', async (_what, template) => {
    const response = await rawRequest(svc, 'GET', template.replace('JOB', jobId), {
      host: `127.0.0.1:${svc.server.port}`,
    });
    expect([400, 404]).toContain(response.status);
    expect(response.text).not.toContain('root:');
    expect(response.body.error.message).toBeTruthy();
  });

  it('CLI: files lists them and -o downloads them into a folder', async () => {
    const env = { NOTEBOOK_JOBS_URL: svc.server.url };
    const listed = await runCli(['files', jobId], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('exports/summary.csv');
    expect(listed.stdout).toContain('image/png');
    const got = await runCli(['files', jobId, '-o', outDir], env);
    expect(got.code, got.stderr).toBe(0);
    expect(readFileSync(join(outDir, 'plot.png')).equals(PNG)).toBe(true);
    expect(readFileSync(join(outDir, 'exports', 'summary.csv'), 'utf8')).toBe('total\n42\n');
  });
});

describe('choosing and capping files', () => {
  it('files.paths takes only what the globs match (a missing helper then fails the import)', async () => {
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { uri: pathToFileURL(join(project, 'report.ipynb')).href },
      files: { paths: ['data/*.csv'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const job = await svc.waitFor(created.body.job_id, isEnded, 60_000);
    expect(job.status).toBe('failed');
    expect(job.error.ename).toBe('ModuleNotFoundError');
  }, 70_000);

  it("a link in the notebook's folder to a file outside the workspace is a 400", async () => {
    const linked = join(workspace, 'linked');
    mkdirSync(linked);
    writeFileSync(join(linked, 'nb.ipynb'), JSON.stringify(makeNotebook([codeCell('1')])));
    symlinkSync('/etc/hostname', join(linked, 'host.txt'));
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { uri: pathToFileURL(join(linked, 'nb.ipynb')).href },
      files: { from: 'folder' },
    });
    expect(created.status).toBe(400);
    expect(created.body.error.message).toMatch(
      /host\.txt may not be submitted: only files under the workspace/,
    );
  });

  it('a glob that matches nothing is a 400 naming it', async () => {
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { uri: pathToFileURL(join(project, 'report.ipynb')).href },
      files: { paths: ['utils.py', 'nothing/*.txt'] },
    });
    expect(created.status).toBe(400);
    expect(created.body.error.message).toContain('"nothing/*.txt"');
  });

  it('a notebook writing more files than the cap keeps the first ones and says so', async () => {
    const nb = makeNotebook([codeCell('for i in range(5):\n    open(f"f{i}.txt", "w").write(str(i))')]);
    const created = await svc.request('POST', '/v1/jobs', { notebook: { content: nb } });
    const job = await svc.waitFor(created.body.job_id, isEnded, 60_000);
    expect(job.status).toBe('completed');
    const files = await svc.request('GET', `/v1/jobs/${job.job_id}/files`);
    expect(files.body.files.map((f: any) => f.path)).toEqual(['f0.txt', 'f1.txt', 'f2.txt']);
    expect(files.body.note).toMatch(/^2 more file\(s\) not saved: a job keeps at most 3 files/);
  }, 70_000);
});

describe('archives', () => {
  const inputs = () =>
    existsSync(join(svc.dataDir, 'artifacts', 'inputs'))
      ? readdirSync(join(svc.dataDir, 'artifacts', 'inputs', 'local')).length
      : 0;
  const nb = makeNotebook([codeCell('print(open("data/a.txt").read())')]);

  it('an uploaded .tar.gz is unpacked into the working folder', async () => {
    const uri = await upload('files.tar.gz', await tarGz([{ name: 'data/a.txt', body: 'from the archive' }]));
    const created = await svc.request('POST', '/v1/jobs', { notebook: { content: nb }, files: { uri } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const job = await svc.waitFor(created.body.job_id, isEnded, 60_000);
    expect(job.status, JSON.stringify(job.error)).toBe('completed');
    const result = await svc.request('GET', `/v1/jobs/${job.job_id}/result`);
    expect(result.body.summary.cells[0].output_text).toContain('from the archive');
    expect(result.body.files).toEqual([]); // the input was left as it was
  }, 70_000);

  it.each([
    ['zip-slip', [{ name: '../x.txt', body: 'x' }], 'contains ".."'],
    ['an absolute path', [{ name: '/tmp/x.txt', body: 'x' }], 'is absolute'],
    [
      'a symbolic link',
      [{ name: 'link', type: 'symlink' as const, linkname: '/etc/shadow' }],
      'is a symbolic link',
    ],
    ['a hard link', [{ name: 'hard', type: 'link' as const, linkname: 'a.txt' }], 'is a hard link'],
    ['a reserved name', [{ name: 'input.ipynb', body: '{}' }], 'name the runner uses'],
  ])('%s is a 400 and nothing is written', async (_what, entries, message) => {
    const before = inputs();
    const uri = await upload('bad.tar.gz', await tarGz(entries));
    const created = await svc.request('POST', '/v1/jobs', { notebook: { content: nb }, files: { uri } });
    expect(created.status).toBe(400);
    expect(created.body.error.message).toContain(message);
    expect(inputs()).toBe(before);
  });

  it('something that is not an archive is a 400', async () => {
    const uri = await upload('files.zip', Buffer.from('just text, not a zip'));
    const created = await svc.request('POST', '/v1/jobs', { notebook: { content: nb }, files: { uri } });
    expect(created.status).toBe(400);
    expect(created.body.error.message).toContain('is not an archive');
  });

  it('CLI: run --files . uploads the folder and the notebook runs with it', async () => {
    const run = await runCli(
      ['run', join(project, 'report.ipynb'), '--files', '.', '--wait'],
      { NOTEBOOK_JOBS_URL: svc.server.url },
      60_000,
    );
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('total 42');
    expect(run.stderr).toMatch(/uploaded \d+ file\(s\)/);
  }, 70_000);
});
