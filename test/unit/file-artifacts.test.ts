/**
 * Local artifacts: which files a request may make the service read. A caller may name files under
 * the workspace (never the service's data folder inside it) and its own tenant's uploads; the
 * service reads its own artifacts by the URIs it stored; keys never leave their folder.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { InvalidRequestError, NotFoundError, PayloadTooLargeError } from '../../lambda/core/errors.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import { inputKey, outputKey, uploadsPrefix } from '../../lambda/core/job.ts';

const LIMIT = 1024 * 1024;

let base: string;
let workspace: string;
let data: string;
let root: string;
let outside: string;
let artifacts: FileArtifacts;

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'notebook-jobs-artifacts-'));
  workspace = join(base, 'workspace');
  // The default layout: the data folder inside the workspace.
  data = join(workspace, '.notebook-jobs');
  root = join(data, 'artifacts');
  outside = join(base, 'elsewhere');
  for (const dir of [workspace, outside, root, `${workspace}-sibling`]) mkdirSync(dir, { recursive: true });
  writeFileSync(join(data, 'secret'), 'cursor secret');
  artifacts = new FileArtifacts({ root, workspace, private: [data] });
});
afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

const url = (path: string) => pathToFileURL(path).href;

describe('what a caller may submit (readSubmitted)', () => {
  it('reads files under the workspace, and names that merely start with two dots', async () => {
    mkdirSync(join(workspace, 'sub'), { recursive: true });
    writeFileSync(join(workspace, 'sub', 'nb.ipynb'), 'in the workspace');
    writeFileSync(join(workspace, '..notes.ipynb'), 'dotted');
    expect(
      (await artifacts.readSubmitted('local', url(join(workspace, 'sub', 'nb.ipynb')), LIMIT)).toString(),
    ).toBe('in the workspace');
    expect(
      (await artifacts.readSubmitted('local', url(join(workspace, '..notes.ipynb')), LIMIT)).toString(),
    ).toBe('dotted');
  });

  it('refuses a file over the size limit before reading it (a sparse 200 MB file is never read)', async () => {
    const path = join(workspace, 'huge.ipynb');
    writeFileSync(path, '');
    truncateSync(path, 200 * 1024 * 1024);
    const error = await rejection(artifacts.readSubmitted('local', url(path), 100 * 1024 * 1024));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error.message).toBe(`${url(path)} is 209715200 bytes; the limit is 104857600 bytes`);
    rmSync(path);
  });

  it('never reads the data folder inside the workspace: other jobs, the store, the secret', async () => {
    const victim = await artifacts.put(outputKey('local', 'job_victim', 'victim.ipynb'), 'victim');
    const targets = [
      victim,
      url(join(data, 'secret')),
      `${url(workspace)}/.notebook-jobs/artifacts/outputs/local/job_victim/victim.ipynb`,
      `${url(workspace)}/sub/../.notebook-jobs/secret`,
      `${url(workspace)}/%2enotebook-jobs/secret`,
    ];
    // A link in the workspace that points into the data folder is refused too.
    symlinkSync(join(data, 'secret'), join(workspace, 'innocent.ipynb'));
    targets.push(url(join(workspace, 'innocent.ipynb')));
    for (const uri of targets) {
      const error = await rejection(artifacts.readSubmitted('local', uri, LIMIT));
      expect(error, uri).toBeInstanceOf(InvalidRequestError);
      expect(error.message, uri).toMatch(/may not be submitted/);
      expect(error.message).not.toContain('cursor secret');
    }
  });

  it('reads a tenant its own uploads only; another tenant cannot tell they exist', async () => {
    const mine = await artifacts.put(`${uploadsPrefix('acme')}0a1b/train.ipynb`, 'acme upload');
    expect((await artifacts.readSubmitted('acme', mine, LIMIT)).toString()).toBe('acme upload');
    const error = await rejection(artifacts.readSubmitted('other', mine, LIMIT));
    expect(error).toBeInstanceOf(InvalidRequestError);
    // Nor anything else of the root by an upload-looking path.
    const escape = `${url(join(root, 'uploads', 'acme'))}/../../outputs/local/job_victim/victim.ipynb`;
    expect(await rejection(artifacts.readSubmitted('acme', escape, LIMIT))).toBeInstanceOf(
      InvalidRequestError,
    );
  });

  it('refuses files outside the workspace, links that lead out, and other schemes', async () => {
    writeFileSync(join(outside, 'secret.ipynb'), 'not for you');
    writeFileSync(join(`${workspace}-sibling`, 'x.ipynb'), 'not for you either');
    symlinkSync(join(outside, 'secret.ipynb'), join(workspace, 'link.ipynb'));
    for (const uri of [
      url(join(outside, 'secret.ipynb')),
      url(join(`${workspace}-sibling`, 'x.ipynb')), // shares the workspace's name as a prefix
      `${url(workspace)}/../elsewhere/secret.ipynb`,
      `${url(workspace)}/%2e%2e/elsewhere/secret.ipynb`,
      url(join(workspace, 'link.ipynb')),
      'file:///etc/hostname',
    ]) {
      const error = await rejection(artifacts.readSubmitted('local', uri, LIMIT));
      expect(error, uri).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toMatch(/may not be submitted/);
      expect(error.message).not.toContain('not for you');
    }
    for (const uri of [
      's3://bucket/inputs/job_A/train.ipynb',
      'https://example.com/nb.ipynb',
      'relative/path.ipynb',
      '/absolute/path.ipynb',
      'file://remote-host/share/nb.ipynb',
      `${url(workspace)}/a%2fb.ipynb`,
    ]) {
      const error = await rejection(artifacts.readSubmitted('local', uri, LIMIT));
      expect(error, uri).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toMatch(/unsupported notebook URI/);
    }
    // A NUL byte made the fs calls throw a TypeError (a 500; found by fuzz.test.ts).
    for (const uri of [`${url(workspace)}/ok.ipynb%00.txt`, `${url(workspace)}/ok.ipynb\0`]) {
      for (const read of [
        () => artifacts.readSubmitted('local', uri, LIMIT),
        () => artifacts.listSubmitted('local', uri, 10),
      ]) {
        const error = await rejection(read());
        expect(error, uri).toBeInstanceOf(InvalidRequestError);
        expect(error.message).toMatch(/NUL byte/);
      }
    }
  });

  it('refuses a named pipe in the workspace at once instead of waiting for a writer', async () => {
    // Opening a FIFO for reading blocks a libuv thread until someone writes; four of them hung the server.
    execFileSync('mkfifo', [join(workspace, 'pipe.ipynb')]);
    const error = await rejection(
      artifacts.readSubmitted('local', url(join(workspace, 'pipe.ipynb')), LIMIT),
    );
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error.message).toMatch(/is not a file/);
  });

  it('a link swapped between check and read never yields a file outside the workspace', async () => {
    writeFileSync(join(workspace, 'inside.ipynb'), 'inside');
    writeFileSync(join(outside, 'target.ipynb'), 'OUTSIDE');
    const link = join(workspace, 'swap.ipynb');
    const toInside = join(workspace, 'swap-in');
    const toOutside = join(workspace, 'swap-out');
    symlinkSync(join(workspace, 'inside.ipynb'), toInside);
    symlinkSync(join(outside, 'target.ipynb'), toOutside);
    symlinkSync(join(workspace, 'inside.ipynb'), link);
    let running = true;
    const swapper = (async () => {
      let flip = false;
      while (running) {
        // rename over the link is atomic: the link always exists, pointing one way or the other.
        symlinkSync(flip ? join(workspace, 'inside.ipynb') : join(outside, 'target.ipynb'), `${link}.new`);
        renameSync(`${link}.new`, link);
        flip = !flip;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      try {
        seen.add((await artifacts.readSubmitted('local', url(link), LIMIT)).toString());
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidRequestError);
        seen.add('refused');
      }
    }
    running = false;
    await swapper;
    expect(seen.has('OUTSIDE')).toBe(false);
    expect(seen.has('refused')).toBe(true); // the swap really happened
  });
});

describe("the service's own artifacts (put, read, exists, deleteJob)", () => {
  it('puts, reads and tells existence by the URI put returns, and reads nothing else', async () => {
    const key = inputKey('local', 'job_A', 'train.ipynb');
    const uri = await artifacts.put(key, '{"cells": []}');
    expect(uri).toBe(artifacts.uriFor(key));
    expect(uri).toBe(url(join(root, key)));
    expect((await artifacts.read(uri)).toString('utf8')).toBe('{"cells": []}');
    expect(await artifacts.exists(uri)).toBe(true);

    const bytes = Buffer.from([0, 255, 10, 13, 0xe2, 0x82, 0xac]);
    const binary = await artifacts.put(outputKey('local', 'job_A', 'odd name #1 é.ipynb'), bytes);
    expect(await artifacts.read(binary)).toEqual(bytes);
    await artifacts.put(key, 'second');
    expect((await artifacts.read(uri)).toString('utf8')).toBe('second');

    const missing = artifacts.uriFor(outputKey('local', 'job_A', 'none.ipynb'));
    expect(await artifacts.exists(missing)).toBe(false);
    expect(await rejection(artifacts.read(missing))).toBeInstanceOf(NotFoundError);
    const folder = url(join(root, 'inputs', 'local', 'job_A'));
    expect(await artifacts.exists(folder)).toBe(false);
    expect(await rejection(artifacts.read(folder))).toBeInstanceOf(InvalidRequestError);
    // A workspace file is not one of the service's artifacts.
    writeFileSync(join(workspace, 'plain.ipynb'), 'plain');
    expect(await rejection(artifacts.read(url(join(workspace, 'plain.ipynb'))))).toBeInstanceOf(
      InvalidRequestError,
    );
    expect(await artifacts.exists(url(join(workspace, 'plain.ipynb')))).toBe(false);
  });

  it('concurrent writers of one key each use their own temp file (no ENOENT, nothing left over)', async () => {
    const key = outputKey('local', 'job_B', 'nb.html');
    const bodies = Array.from({ length: 40 }, (_, i) => `body ${i} `.repeat(20_000));
    await Promise.all(bodies.map((body) => artifacts.put(key, body)));
    expect(bodies).toContain((await artifacts.read(artifacts.uriFor(key))).toString());
    expect(readdirSync(join(root, 'outputs', 'local', 'job_B'))).toEqual(['nb.html']);
  });

  it('refuses keys that are not plain relative paths', async () => {
    for (const key of [
      '../escape.txt',
      'inputs/../../escape.txt',
      '..',
      '/etc/passwd',
      'inputs/local/job_A/../../../x',
      'inputs/local/job_B/../job_C/nb.ipynb',
      'inputs//x.ipynb',
      'inputs/a\\..\\b.ipynb',
      'inputs/a/\nb.ipynb',
    ]) {
      const error = await rejection(artifacts.put(key, 'x'));
      expect(error, key).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toContain('invalid artifact key');
      expect(() => artifacts.uriFor(key)).toThrow(InvalidRequestError);
    }
    expect(existsSync(join(data, 'escape.txt'))).toBe(false);
  });

  it('deleteJob removes that tenant-and-job folder only, and refuses non-ids', async () => {
    const ids = new MonotonicJobIds();
    const [del, other, nothing] = [ids.jobId(), ids.jobId(), ids.jobId()];
    const mine = [
      inputKey('t1', del, 'a.ipynb'),
      outputKey('t1', del, 'a.ipynb'),
      outputKey('t1', del, 'b.html'),
    ];
    const others = [
      inputKey('t1', `${del}X`, 'a.ipynb'), // an id with mine as a prefix
      inputKey('t1', other, 'a.ipynb'),
      outputKey('t2', del, 'a.ipynb'), // the same id under another tenant
      `${uploadsPrefix('t1')}${del}/a.ipynb`, // not an inputs/outputs folder
    ];
    for (const key of [...mine, ...others]) await artifacts.put(key, key);
    await artifacts.deleteJob('t1', del);
    for (const key of mine) expect(existsSync(join(root, key)), key).toBe(false);
    for (const key of others) expect((await artifacts.read(artifacts.uriFor(key))).toString(), key).toBe(key);
    await artifacts.deleteJob('t1', nothing);
    await artifacts.deleteJob('t1', del);
    for (const bad of ['', '..', 'job_DEL', '../inputs']) {
      await expect(artifacts.deleteJob('t1', bad)).rejects.toThrow(InvalidRequestError);
    }
    await expect(artifacts.deleteJob('..', other)).rejects.toThrow(InvalidRequestError);
    expect(existsSync(join(root, inputKey('t1', other, 'a.ipynb')))).toBe(true);
  });
});
