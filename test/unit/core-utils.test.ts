/**
 * Small core pieces the rest relies on: job ids (ordering = creation order), signed cursors, and
 * local artifacts (which files a request may make the service read).
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { ConfigError, intEnv, oneOfEnv, requireEnv } from '../../lambda/core/config.ts';
import { CursorCodec } from '../../lambda/core/cursor.ts';
import { InvalidRequestError, NotFoundError, PayloadTooLargeError } from '../../lambda/core/errors.ts';
import { JOB_ID_PATTERN, MonotonicJobIds, jobIdTimeBound } from '../../lambda/core/ids.ts';

const T0 = Date.parse('2026-03-04T05:06:07.089Z');

/** A generator whose clock reads `clock.now`. */
function idsAt(clock: { now: number }) {
  return new MonotonicJobIds(() => clock.now);
}

function expectStrictlyIncreasing(ids: string[]) {
  for (let i = 1; i < ids.length; i++) {
    if (!((ids[i - 1] as string) < (ids[i] as string)))
      expect.fail(`id ${i} (${ids[i]}) does not sort after id ${i - 1} (${ids[i - 1]})`);
  }
}

describe('MonotonicJobIds', () => {
  it('mints ids that match JOB_ID_PATTERN', () => {
    const ids = new MonotonicJobIds();
    for (let i = 0; i < 1000; i++) expect(ids.jobId()).toMatch(JOB_ID_PATTERN);
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAAA')).toBe(true);
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAAI')).toBe(false); // no I, L, O, U
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAA')).toBe(false);
  });

  it('mints 10,000 strictly increasing, unique ids from a frozen clock', () => {
    const ids = idsAt({ now: T0 });
    const minted = Array.from({ length: 10_000 }, () => ids.jobId());
    expect(new Set(minted).size).toBe(10_000);
    expectStrictlyIncreasing(minted);
    for (const id of minted) expect(id).toMatch(JOB_ID_PATTERN);
    // All carry the same time part: the clock's millisecond.
    expect(new Set(minted.map((id) => id.slice(0, 14))).size).toBe(1);
    expect(minted[0]?.startsWith(jobIdTimeBound(new Date(T0)))).toBe(true);
  });

  it('sorts ids of a later millisecond after every id of an earlier one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 44 }),
        fc.integer({ min: 1, max: 500 }),
        fc.integer({ min: 1, max: 100_000 }),
        (start, perMs, step) => {
          const clock = { now: start };
          const ids = idsAt(clock);
          const early = Array.from({ length: perMs }, () => ids.jobId());
          clock.now = start + step;
          const late = ids.jobId();
          expectStrictlyIncreasing([...early, late]);
          // A fresh generator (another process) at the later time sorts after them too.
          expect(idsAt(clock).jobId() > (early.at(-1) as string)).toBe(true);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('stays increasing when the clock steps back', () => {
    const clock = { now: T0 };
    const ids = idsAt(clock);
    const minted = [ids.jobId(), ids.jobId()];
    clock.now = T0 - 5000;
    minted.push(ids.jobId(), ids.jobId());
    clock.now = T0 + 1;
    minted.push(ids.jobId());
    expectStrictlyIncreasing(minted);
  });

  it('jobIdTimeBound(t) sorts above every id minted before t and below ids minted at or after t', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 44 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (t, perMs, earlier) => {
          const bound = jobIdTimeBound(new Date(t));
          const clock = { now: t - 1 };
          const ids = idsAt(clock);
          // The largest ids of t-1 ms (after many in-millisecond increments) stay below.
          const justBefore = Array.from({ length: perMs }, () => ids.jobId());
          for (const id of justBefore) expect(id < bound).toBe(true);
          expect(idsAt({ now: Math.max(0, t - earlier) }).jobId() < bound).toBe(true);
          // Ids minted at t, t + 1 ms and later sort above.
          expect(idsAt({ now: t }).jobId() > bound).toBe(true);
          clock.now = t + 1;
          expect(ids.jobId() > bound).toBe(true);
          expect(idsAt({ now: t + 1 }).jobId() > bound).toBe(true);
          expect(idsAt({ now: t + earlier }).jobId() > bound).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('CursorCodec', () => {
  const secret = 'a server secret of some length';
  const codec = new CursorCodec(secret);
  const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

  function expectInvalidCursor(decode: () => unknown) {
    let thrown: unknown;
    try {
      decode();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidRequestError);
    expect((thrown as Error).message).toMatch(/cursor/);
  }

  /** `text` with the character at `at` replaced by another base64url character. */
  function replaced(text: string, at: number, pick: number): string {
    const others = BASE64URL.replace(text[at] as string, '');
    return `${text.slice(0, at)}${others[pick % others.length]}${text.slice(at + 1)}`;
  }

  it('refuses a MAC with anything added, inserted or changed, even where base64url decoding ignores it', () => {
    const codec = new CursorCodec('a-secret-of-enough-length');
    const cursor = codec.encode('scope', '12345');
    const [payload, mac] = cursor.split('.') as [string, string];
    const last = mac.at(-1) as string;
    const sibling = String.fromCharCode(last.charCodeAt(0) ^ 1);
    for (const altered of [
      `${cursor} `,
      `${cursor}=`,
      `${cursor}!`,
      `${payload}.${mac.slice(0, 5)}\n${mac.slice(5)}`,
      `${payload}.${mac.slice(0, -1)}${sibling}`,
    ]) {
      expect(() => codec.decode('scope', altered), JSON.stringify(altered)).toThrow(/cursor/);
    }
  });

  it('refuses a short secret', () => {
    expect(() => new CursorCodec('too short')).toThrow(/16/);
  });

  it('round-trips any value within its scope', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.oneof(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.nat().map(String)),
        (scope, value) => {
          const cursor = codec.encode(scope, value);
          expect(cursor).toMatch(/^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/);
          expect(codec.decode(scope, cursor)).toBe(value);
          // Another codec with the same secret (the service after a restart) reads it too.
          expect(new CursorCodec(secret).decode(scope, cursor)).toBe(value);
        },
      ),
    );
  });

  it('rejects a cursor whose payload was changed', () => {
    const cursor = codec.encode('logs:job_A', JSON.stringify({ offset: 123456, shard: 'a' }));
    const [payload, mac] = cursor.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ offset: 0, shard: 'a' })).toString('base64url');
    expectInvalidCursor(() => codec.decode('logs:job_A', `${forged}.${mac}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}A.${mac}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload.slice(1)}.${mac}`));
    fc.assert(
      fc.property(fc.nat({ max: payload.length - 1 }), fc.nat(), (at, pick) => {
        expectInvalidCursor(() => codec.decode('logs:job_A', `${replaced(payload, at, pick)}.${mac}`));
      }),
    );
  });

  it('rejects a cursor whose MAC was changed', () => {
    const cursor = codec.encode('logs:job_A', '4096');
    const [payload, mac] = cursor.split('.') as [string, string];
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${mac.slice(0, -2)}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${mac}AAAA`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${'A'.repeat(mac.length)}`));
    // Every character but the last carries 6 bits of the 128-bit MAC.
    fc.assert(
      fc.property(fc.nat({ max: mac.length - 2 }), fc.nat(), (at, pick) => {
        expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${replaced(mac, at, pick)}`));
      }),
    );
  });

  it('rejects a cursor from another scope or signed with another secret', () => {
    const cursor = codec.encode('logs:job_A', '4096');
    expectInvalidCursor(() => codec.decode('logs:job_B', cursor));
    expectInvalidCursor(() => codec.decode('list:tenant=default', cursor));
    expectInvalidCursor(() => codec.decode('logs:job_A ', cursor));
    const other = new CursorCodec('another server secret!');
    expectInvalidCursor(() => other.decode('logs:job_A', cursor));
    expectInvalidCursor(() => codec.decode('logs:job_A', other.encode('logs:job_A', '4096')));
  });

  it.each(['', '.', 'abc', 'a.b.c', `${'x'.repeat(10)}.`, '.AAAAAAAAAAAAAAAAAAAAAA', '%%%.%%%'])(
    'rejects the malformed cursor %j',
    (cursor) => expectInvalidCursor(() => codec.decode('logs:job_A', cursor)),
  );
});

describe('FileArtifacts', () => {
  let base: string;
  let root: string;
  let workspace: string;
  let outside: string;
  let artifacts: FileArtifacts;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'notebook-jobs-artifacts-'));
    root = join(base, 'artifacts');
    workspace = join(base, 'workspace');
    outside = join(base, 'elsewhere');
    for (const dir of [workspace, outside, `${root}-sibling`]) mkdirSync(dir, { recursive: true });
    artifacts = new FileArtifacts({ root, workspace });
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

  it('refuses a file over the size limit before reading it (a sparse 200 MB file is never read)', async () => {
    const path = join(workspace, 'huge.ipynb');
    writeFileSync(path, '');
    truncateSync(path, 200 * 1024 * 1024);
    const uri = pathToFileURL(path).href;
    const error = await rejection(artifacts.read(uri, 100 * 1024 * 1024));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error.message).toBe(`${uri} is 209715200 bytes; the limit is 104857600 bytes`);
    rmSync(path);
  });

  it('reads names that merely start with two dots, but no link that leads out of the workspace', async () => {
    const dotted = join(workspace, '..notes.ipynb');
    writeFileSync(dotted, 'dotted');
    expect((await artifacts.read(pathToFileURL(dotted).href)).toString()).toBe('dotted');
    writeFileSync(join(outside, 'secret.ipynb'), 'secret');
    symlinkSync(join(outside, 'secret.ipynb'), join(workspace, 'link.ipynb'));
    await expect(artifacts.read(pathToFileURL(join(workspace, 'link.ipynb')).href)).rejects.toThrow(
      /outside the workspace/,
    );
  });

  it('puts, reads and tells existence of artifacts by the URI put returns', async () => {
    const key = 'inputs/job_A/train.ipynb';
    const uri = await artifacts.put(key, '{"cells": []}');
    expect(uri).toBe(artifacts.uriFor(key));
    expect(uri).toBe(pathToFileURL(join(root, key)).href);
    expect((await artifacts.read(uri)).toString('utf8')).toBe('{"cells": []}');
    expect(await artifacts.exists(uri)).toBe(true);

    const bytes = Buffer.from([0, 255, 10, 13, 0xe2, 0x82, 0xac]);
    const binary = await artifacts.put('outputs/job_A/odd name #1 é.ipynb', bytes);
    expect(await artifacts.read(binary)).toEqual(bytes);
    // Overwriting replaces the content; no temp files are left behind.
    await artifacts.put(key, 'second');
    expect((await artifacts.read(uri)).toString('utf8')).toBe('second');
    expect(readdirSync(join(root, 'inputs', 'job_A'))).toEqual(['train.ipynb']);

    const missing = artifacts.uriFor('outputs/job_A/none.ipynb');
    expect(await artifacts.exists(missing)).toBe(false);
    expect(await rejection(artifacts.read(missing))).toBeInstanceOf(NotFoundError);
    expect(await artifacts.exists(artifacts.uriFor('inputs/job_A'))).toBe(false); // a folder
    expect(await rejection(artifacts.read(artifacts.uriFor('inputs/job_A')))).toBeInstanceOf(
      InvalidRequestError,
    );
  });

  it('reads files under the workspace by file:// URI', async () => {
    const file = join(workspace, 'sub', 'nb.ipynb');
    mkdirSync(join(workspace, 'sub'));
    writeFileSync(file, 'in the workspace');
    expect((await artifacts.read(pathToFileURL(file).href)).toString()).toBe('in the workspace');
    expect(await artifacts.exists(pathToFileURL(file).href)).toBe(true);
  });

  it('refuses file:// URIs outside both the artifacts root and the workspace', async () => {
    const secretFile = join(outside, 'secret.ipynb');
    writeFileSync(secretFile, 'not for you');
    const sibling = join(`${root}-sibling`, 'x.ipynb'); // shares the root's name as a prefix
    writeFileSync(sibling, 'not for you either');
    const uris = [
      pathToFileURL(secretFile).href,
      pathToFileURL(sibling).href,
      `${pathToFileURL(workspace).href}/../elsewhere/secret.ipynb`,
      `${pathToFileURL(root).href}/%2e%2e/elsewhere/secret.ipynb`,
      'file:///etc/hostname',
    ];
    for (const uri of uris) {
      const error = await rejection(artifacts.read(uri));
      expect(error, uri).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toMatch(/outside the workspace/);
      expect(await artifacts.exists(uri)).toBe(false);
    }
  });

  it('rejects non-file schemes with a message naming the URI', async () => {
    const uris = [
      's3://bucket/inputs/job_A/train.ipynb',
      'https://example.com/nb.ipynb',
      'relative/path.ipynb',
      '/absolute/path.ipynb',
      'file://remote-host/share/nb.ipynb',
      `file://${workspace}/a%2fb.ipynb`,
    ];
    for (const uri of uris) {
      const error = await rejection(artifacts.read(uri));
      expect(error, uri).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toContain(`"${uri}"`);
      expect(await artifacts.exists(uri)).toBe(false);
    }
  });

  it('rejects keys that leave the artifacts root', async () => {
    for (const key of [
      '../escape.txt',
      'inputs/../../escape.txt',
      '..',
      '/etc/passwd',
      'inputs/job_A/../../../x',
    ]) {
      const error = await rejection(artifacts.put(key, 'x'));
      expect(error, key).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toContain(`invalid artifact key "${key}"`);
      expect(() => artifacts.uriFor(key)).toThrow(InvalidRequestError);
    }
    expect(existsSync(join(base, 'escape.txt'))).toBe(false);
    // `..` inside the root is fine.
    const uri = await artifacts.put('inputs/job_B/../job_C/nb.ipynb', 'c');
    expect(uri).toBe(artifacts.uriFor('inputs/job_C/nb.ipynb'));
  });

  it('deleteJob removes the inputs and outputs of that job only, and refuses non-ids', async () => {
    const ids = new MonotonicJobIds();
    const [del, other, nothing] = [ids.jobId(), ids.jobId(), ids.jobId()];
    const keys = {
      mine: [`inputs/${del}/a.ipynb`, `outputs/${del}/a.ipynb`, `outputs/${del}/nested/b.txt`],
      others: [
        `inputs/${del}X/a.ipynb`, // an id with mine as a prefix
        `outputs/${del.slice(0, -1)}/a.ipynb`,
        `inputs/${other}/a.ipynb`,
        `outputs/${other}/a.ipynb`,
        `uploads/${del}/a.ipynb`, // not an inputs/outputs folder
      ],
    };
    for (const key of [...keys.mine, ...keys.others]) await artifacts.put(key, key);
    await artifacts.deleteJob(del);
    for (const key of keys.mine) expect(existsSync(join(root, key)), key).toBe(false);
    expect(existsSync(join(root, 'inputs', del))).toBe(false);
    expect(existsSync(join(root, 'outputs', del))).toBe(false);
    for (const key of keys.others) {
      expect((await artifacts.read(artifacts.uriFor(key))).toString(), key).toBe(key);
    }
    // Deleting a job with nothing stored is fine, and deleting again too.
    await artifacts.deleteJob(nothing);
    await artifacts.deleteJob(del);
    expect(existsSync(join(root, 'inputs', other, 'a.ipynb'))).toBe(true);
    // Anything that is not a job id could address more than one job's folder.
    for (const bad of ['', '..', 'job_DEL', '../inputs']) {
      await expect(artifacts.deleteJob(bad)).rejects.toThrow(InvalidRequestError);
    }
    expect(existsSync(join(root, 'inputs', other, 'a.ipynb'))).toBe(true);
  });
});

describe('configuration', () => {
  it('fails fast naming the variable, and rejects malformed values instead of defaulting', () => {
    expect(() => requireEnv({}, 'NOTEBOOK_JOBS_TABLE')).toThrow(
      /missing required environment variable NOTEBOOK_JOBS_TABLE/,
    );
    expect(() => requireEnv({ NOTEBOOK_JOBS_TABLE: '' }, 'NOTEBOOK_JOBS_TABLE')).toThrow(ConfigError);
    expect(requireEnv({ NOTEBOOK_JOBS_TABLE: 'jobs' }, 'NOTEBOOK_JOBS_TABLE')).toBe('jobs');
    expect(intEnv({}, 'PORT', 8080, 0, 65535)).toBe(8080);
    expect(intEnv({ PORT: '9000' }, 'PORT', 8080, 0, 65535)).toBe(9000);
    for (const bad of ['80a', '1.5', '-1', '70000']) {
      expect(() => intEnv({ PORT: bad }, 'PORT', 8080, 0, 65535), bad).toThrow(
        /PORT must be an integer from 0 to 65535/,
      );
    }
    expect(oneOfEnv({}, 'ENGINE', ['auto', 'nbclient'] as const, 'auto')).toBe('auto');
    expect(() => oneOfEnv({ ENGINE: 'spark' }, 'ENGINE', ['auto', 'nbclient'] as const, 'auto')).toThrow(
      /ENGINE must be one of auto, nbclient, got "spark"/,
    );
  });
});
