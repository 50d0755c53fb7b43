/**
 * Secrets by reference and redacted parameters through a real local service: real kernels print,
 * display, raise with and write the values; afterwards no value (nor its common encodings) is
 * anywhere in the data folder, the job view, the logs, the result or the HTML, while the kernel
 * did get the real values. Plus the boundaries: what a request may reference.
 */
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

const ENV_VALUE = 'Sup3r-secret/value+"q';
const FILE_VALUE = 'file-Secret-4711';
const PARAM_VALUE = 'api-KEY-0042-xyz';
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

/** Every form of a value that must not be stored. */
const forms = (value: string) => [
  value,
  JSON.stringify(value).slice(1, -1),
  Buffer.from(value).toString('base64'),
  encodeURIComponent(value),
];

function files(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return files(path);
    return entry.isFile() ? [path] : [];
  });
}

/** The files (under `folder`) that hold any form of any value, with the form found. */
function leaks(folder: string, values: string[]): string[] {
  const found: string[] = [];
  for (const file of files(folder)) {
    const body = readFileSync(file).toString('latin1');
    const utf8 = readFileSync(file).toString('utf8');
    for (const value of values)
      for (const form of forms(value))
        if (body.includes(form) || utf8.includes(form)) found.push(`${file}: ${form}`);
  }
  return found;
}

const secretsDir = mkdtempSync(join(tmpdir(), 'notebook-jobs-secrets-'));
const outside = mkdtempSync(join(tmpdir(), 'notebook-jobs-outside-'));
let svc: TestService;

beforeAll(async () => {
  writeFileSync(join(secretsDir, 'api.txt'), `${FILE_VALUE}\n`);
  mkdirSync(join(secretsDir, 'team'));
  writeFileSync(join(outside, 'stolen.txt'), 'outside-value-1234');
  symlinkSync(join(outside, 'stolen.txt'), join(secretsDir, 'team', 'link.txt'));
  writeFileSync(join(secretsDir, 'short.txt'), 'abc');
  process.env.NOTEBOOK_SECRET_DB = ENV_VALUE;
  process.env.OTHER_VARIABLE = 'not-for-jobs-1234';
  svc = await startTestService({ warmKernels: 1, secretsDir });
});
afterAll(async () => {
  await svc?.close();
  delete process.env.NOTEBOOK_SECRET_DB;
  delete process.env.OTHER_VARIABLE;
  rmSync(secretsDir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const parametersCell = () => ({ ...codeCell('api_key = "default"'), metadata: { tags: ['parameters'] } });

const leakyNotebook = () =>
  makeNotebook([
    parametersCell(),
    codeCell(
      [
        'import os, sys, json, base64, urllib.parse, hashlib, time',
        's = os.environ["DB_PASSWORD"]',
        'f = os.environ["API_FILE"]',
        'print("env sha", hashlib.sha256(s.encode()).hexdigest())',
        'print("file sha", hashlib.sha256(f.encode()).hexdigest())',
        'print("param sha", hashlib.sha256(api_key.encode()).hexdigest())',
        'print("pw:", s, "file:", f, "key:", api_key)',
        'print(json.dumps({"pw": s, "key": api_key}))',
        'print(base64.b64encode(("prefix:" + s).encode()).decode())',
        'print(urllib.parse.quote(s, safe=""))',
        'sys.stderr.write("stderr " + s + "\\n")',
        // One value printed in pieces: separate stream messages, one line.
        'print(s[:6], end="", flush=True); time.sleep(0.3); print(s[6:], flush=True)',
        'open("written.txt", "w").write(s + f + api_key)',
      ].join('\n'),
    ),
    codeCell('from IPython.display import display, HTML\ndisplay(HTML("<b>" + s + "</b>"))\ns'),
    codeCell('raise ValueError("bad password " + s + " for " + api_key)'),
  ]);

describe('secrets by reference', () => {
  it('the kernel gets the values; none is stored anywhere, in any common encoding', async () => {
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { content: leakyNotebook(), name: 'leaky.ipynb' },
      parameters: { api_key: PARAM_VALUE },
      redact_parameters: ['api_key'],
      secrets: { DB_PASSWORD: 'env:NOTEBOOK_SECRET_DB', API_FILE: 'file:api.txt' },
    });
    expect(created.status).toBe(201);
    const id = created.body.job_id;
    expect(created.body.secrets).toEqual({ DB_PASSWORD: 'env:NOTEBOOK_SECRET_DB', API_FILE: 'file:api.txt' });
    expect(created.body.parameters).toEqual({ api_key: '[redacted]' });
    expect(created.body.redact_parameters).toEqual(['api_key']);
    const job = await svc.waitFor(id, (j) => ['completed', 'failed', 'cancelled'].includes(j.status), 60_000);
    expect(job).toMatchObject({ status: 'failed', error: { type: 'cell_error', ename: 'ValueError' } });
    expect(job.error.evalue).toBe('bad password [redacted:DB_PASSWORD] for [redacted:api_key]');

    const logs = await svc.request('GET', `/v1/jobs/${id}/logs?limit=5000`);
    const lines: string[] = logs.body.lines.map((l: { text: string }) => l.text);
    // The kernel ran with the real values...
    expect(lines).toContain(`env sha ${sha(ENV_VALUE)}`);
    expect(lines).toContain(`file sha ${sha(FILE_VALUE)}`);
    expect(lines).toContain(`param sha ${sha(PARAM_VALUE)}`);
    // ...and a cold kernel: a per-job environment cannot use the warm one.
    expect(lines).not.toContain('using a warm kernel');
    expect(lines.some((l) => l.startsWith('the warm kernel (python3) does not fit this job'))).toBe(true);
    expect(lines).toContain('pw: [redacted:DB_PASSWORD] file: [redacted:API_FILE] key: [redacted:api_key]');
    expect(lines).toContain('stderr [redacted:DB_PASSWORD]');
    expect(lines).toContain('[redacted:DB_PASSWORD]'); // the value printed in two pieces

    const html = await svc.request('GET', `/v1/jobs/${id}/output?format=html`);
    expect(html.status).toBe(200);
    expect(html.body).toContain('[redacted:DB_PASSWORD]');
    const result = await svc.request('GET', `/v1/jobs/${id}/result`);
    expect(result.status).toBe(200);
    const output = await svc.request('GET', `/v1/jobs/${id}/output`);
    const injected = output.body.cells.find((c: any) => c.metadata.tags?.includes('injected-parameters'));
    expect([injected.source].flat().join('')).toContain('api_key = "[redacted]"');

    const api = JSON.stringify([created.body, job, logs.body, result.body, html.body, output.body]);
    for (const value of [ENV_VALUE, FILE_VALUE, PARAM_VALUE])
      for (const form of forms(value)) expect(api).not.toContain(form);
    // The runner removed the job's folder (with written.txt) and the redacted values.
    expect(leaks(svc.dataDir, [ENV_VALUE, FILE_VALUE, PARAM_VALUE])).toEqual([]);
    expect(files(svc.dataDir).some((f) => f.endsWith('redacted-parameters.json'))).toBe(false);
  }, 90_000);

  it.each([
    ['a variable outside the prefix', { X_PW: 'env:OTHER_VARIABLE' }, /start with NOTEBOOK_SECRET_/],
    ['a reserved name', { LD_PRELOAD: 'env:NOTEBOOK_SECRET_DB' }, /LD_PRELOAD is a reserved variable name/],
    ['a reserved name', { PYTHONSTARTUP: 'env:NOTEBOOK_SECRET_DB' }, /reserved/],
    ['not a variable name', { 'A-B': 'env:NOTEBOOK_SECRET_DB' }, /environment variable name/],
    ['a path escaping the folder', { F: 'file:../outside.txt' }, /relative paths of plain names/],
    ['an absolute path', { F: 'file:/etc/passwd' }, /relative paths of plain names/],
    [
      'an AWS reference locally',
      { F: 'secretsmanager:notebook-jobs/local/db' },
      /not resolved by this deployment/,
    ],
    [
      'an ssm: reference locally',
      { F: 'ssm:/notebook-jobs/local/db' },
      /ssm: references are not resolved by this deployment; it resolves env:/,
    ],
    ['no scheme', { F: 'hunter22' }, /not a secret reference/],
  ])('refuses %s with a 400 that does not create a job', async (_what, secrets, message) => {
    const before = await svc.request('GET', '/v1/jobs?limit=100');
    const res = await svc.request('POST', '/v1/jobs', {
      notebook: { content: makeNotebook([codeCell('1')]) },
      secrets,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(message);
    const after = await svc.request('GET', '/v1/jobs?limit=100');
    expect(after.body.jobs.length).toBe(before.body.jobs.length);
  });

  it.each([
    ['not a parameter', ['nope'], { api_key: 'long-enough' }, /not among the job's parameters/],
    ['too short', ['api_key'], { api_key: 'abc' }, /shorter than 4 characters/],
    ['not text', ['api_key'], { api_key: { a: 'long-enough' } }, /string or a number/],
  ])('refuses a redacted parameter that is %s', async (_what, redact, parameters, message) => {
    const res = await svc.request('POST', '/v1/jobs', {
      notebook: { content: makeNotebook([parametersCell(), codeCell('1')]) },
      parameters,
      redact_parameters: redact,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(message);
  });

  it.each([
    ['a link out of the secrets folder', 'file:team/link.txt', /leads outside the secrets folder/],
    ['a missing file', 'file:none.txt', /no such file/],
    ['an unset variable', 'env:NOTEBOOK_SECRET_UNSET', /is not set in the service's environment/],
    ['a value too short to redact', 'file:short.txt', /shorter than 4 characters/],
  ])(
    'fails the job before its kernel starts for %s, naming the reference',
    async (_what, reference, why) => {
      const res = await svc.request('POST', '/v1/jobs', {
        notebook: { content: makeNotebook([codeCell('open("ran", "w").write("x")\nprint("kernel ran")')]) },
        secrets: { MY_SECRET: reference },
      });
      expect(res.status).toBe(201);
      const job = await svc.waitFor(res.body.job_id, (j) => j.status === 'failed', 30_000);
      expect(job.error.type).toBe('secret_unavailable');
      expect(job.error.message).toContain(`secret MY_SECRET (${reference})`);
      expect(job.error.message).toMatch(why);
      expect(job.error.message).not.toContain('outside-value-1234');
      const logs = await svc.request('GET', `/v1/jobs/${res.body.job_id}/logs?limit=500`);
      const texts = logs.body.lines.map((l: { text: string }) => l.text);
      expect(texts).not.toContain('kernel started');
      expect(texts).not.toContain('kernel ran');
      expect(JSON.stringify(logs.body)).not.toContain('outside-value-1234');
    },
    40_000,
  );
});
