/**
 * Unpacking input-file archives: zips written here byte by byte (so entries can lie and carry what
 * attackers put in them), tar.gz written with tar-stream. Every refusal is an InvalidRequestError
 * (400) that names the problem, and the caps count actual decompressed bytes.
 */
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import {
  globMatcher,
  filePathProblem,
  InputFileSet,
  parseFilesManifest,
} from '../../lambda/core/job-files.ts';
import { unpackArchive } from '../../lambda/notebook/archive.ts';

interface ZipEntry {
  name: string;
  body?: Buffer;
  /** Unix mode in the external attributes (e.g. 0o120777 for a symlink). */
  mode?: number;
  /** The uncompressed size the headers claim (default: the truth). */
  claimedSize?: number;
}

/** A zip with deflated entries, made on Unix (version made by 3.20). */
function zip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0);
    const data = deflateRawSync(body);
    const name = Buffer.from(e.name);
    const crc = crc32(body);
    const size = e.claimedSize ?? body.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((e.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += local.length + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

async function tarGz(entries: Array<{ name: string; body?: string; type?: 'symlink' | 'link' | 'fifo' }>) {
  const p = pack();
  for (const e of entries) {
    if (e.type) p.entry({ name: e.name, type: e.type, linkname: 'target' });
    else p.entry({ name: e.name }, e.body ?? '');
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

const caps = { maxFiles: 10, maxBytes: 1024 * 1024 };

async function unpack(bytes: Buffer, limits = caps) {
  const set = new InputFileSet(limits, 'files.uri');
  await unpackArchive(bytes, set, 'files.uri');
  return set.files.map((f) => [f.path, f.body.toString()]);
}

async function refusal(bytes: Buffer, limits = caps): Promise<string> {
  const error = await unpack(bytes, limits).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidRequestError);
  return (error as Error).message;
}

describe('unpackArchive', () => {
  it('unpacks a zip and a tar.gz with folders', async () => {
    const files = [
      { name: 'data/', body: undefined },
      { name: 'data/a.csv', body: 'x,y\n' },
      { name: './utils.py', body: 'def f(): pass\n' },
    ];
    expect(
      await unpack(zip(files.map((f) => ({ name: f.name, body: f.body ? Buffer.from(f.body) : undefined })))),
    ).toEqual([
      ['data/a.csv', 'x,y\n'],
      ['utils.py', 'def f(): pass\n'],
    ]);
    expect(await unpack(await tarGz(files))).toEqual([
      ['data/a.csv', 'x,y\n'],
      ['utils.py', 'def f(): pass\n'],
    ]);
  });

  it.each([
    ['zip-slip', '../evil.py', 'contains ".."'],
    ['zip-slip deeper', 'data/../../evil.py', 'contains ".."'],
    ['an absolute path', '/etc/cron.d/evil', 'is absolute'],
    ['a drive letter', 'C:/evil', 'is absolute'],
    ['a backslash', '..\\evil', 'backslash'],
    ['a reserved name', 'output.ipynb', 'name the runner uses'],
  ])('refuses %s in a zip and in a tar.gz', async (_what, name, message) => {
    expect(await refusal(zip([{ name, body: Buffer.from('x') }]))).toContain(message);
    expect(await refusal(await tarGz([{ name, body: 'x' }]))).toContain(message);
  });

  it('refuses links and special files', async () => {
    expect(
      await refusal(zip([{ name: 'link', body: Buffer.from('/etc/shadow'), mode: 0o120777 }])),
    ).toContain('is a symbolic link');
    expect(await refusal(await tarGz([{ name: 'link', type: 'symlink' }]))).toContain('is a symbolic link');
    expect(await refusal(await tarGz([{ name: 'hard', type: 'link' }]))).toContain('is a hard link');
    expect(await refusal(await tarGz([{ name: 'pipe', type: 'fifo' }]))).toContain('is a fifo');
  });

  it('stops a bomb at the cap by counting what the decompressor produces, even when headers lie', async () => {
    const zeros = Buffer.alloc(8 * 1024 * 1024);
    const small = { maxFiles: 10, maxBytes: 1024 * 1024 };
    expect(await refusal(zip([{ name: 'bomb', body: zeros }]), small)).toMatch(
      /more than 1048576 bytes unpacked/,
    );
    // Headers claiming 10 bytes: refused all the same (by the cap or by the size check), never unpacked whole.
    expect(await refusal(zip([{ name: 'bomb', body: zeros, claimedSize: 10 }]), small)).toBeTruthy();
    expect(await refusal(await tarGz([{ name: 'bomb', body: zeros.toString() }]), small)).toMatch(
      /more than 1048576 bytes unpacked/,
    );
  });

  it('refuses more files than the cap, duplicates, and a file that is also a folder', async () => {
    const many = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, body: Buffer.from('x') }));
    expect(await refusal(zip(many))).toContain('more than 10 files');
    expect(await refusal(zip([{ name: 'a' }, { name: 'a' }]))).toContain('appears twice');
    expect(await refusal(zip([{ name: 'a' }, { name: 'a/b' }]))).toContain('both a file and a folder');
  });

  it('refuses what is not an archive, and a damaged one', async () => {
    expect(await refusal(Buffer.from('name,value\n'))).toContain('is not an archive');
    const broken = zip([{ name: 'a', body: Buffer.from('hello') }]).subarray(0, 40);
    expect(await refusal(broken)).toContain('not a readable zip archive');
    expect(await refusal(gzipSync(Buffer.from('not a tar at all, just text'.repeat(40))))).toMatch(
      /not a readable tar.gz archive/,
    );
  });
});

describe('paths and globs', () => {
  it('accepts plain relative paths only', () => {
    expect(filePathProblem('data/sales.csv')).toBeNull();
    for (const bad of ['', '/x', 'a//b', 'a/', './a', 'a/../b', 'a\\b', 'a\u0000b', 'a\u202eb'])
      expect(filePathProblem(bad), JSON.stringify(bad)).not.toBeNull();
  });

  it('matches globs as a shell would, and a folder takes what is under it', () => {
    const csv = globMatcher('data/*.csv');
    expect(['data/a.csv', 'data/sub/b.csv', 'a.csv'].filter(csv)).toEqual(['data/a.csv']);
    expect(['a.csv', 'x/y/b.csv', 'c.txt'].filter(globMatcher('**/*.csv'))).toEqual(['a.csv', 'x/y/b.csv']);
    expect(['data/a', 'data/x/y', 'database'].filter(globMatcher('data'))).toEqual(['data/a', 'data/x/y']);
    expect(['f1.txt', 'f2.txt', 'f10.txt'].filter(globMatcher('f?.txt'))).toEqual(['f1.txt', 'f2.txt']);
    expect(() => globMatcher('../x')).toThrow(InvalidRequestError);
  });
});

describe('parseFilesManifest', () => {
  const sha = 'a'.repeat(64);
  it('reads a manifest and keeps only its known fields', () => {
    const manifest = {
      files: [{ path: 'a/b.csv', size: 3, sha256: sha, media_type: 'text/csv', x: 1 }],
      note: null,
    };
    expect(parseFilesManifest(manifest)).toEqual({
      files: [{ path: 'a/b.csv', size: 3, sha256: sha, media_type: 'text/csv' }],
      note: null,
    });
  });
  it.each([
    null,
    [],
    { files: {} },
    { files: [], note: 3 },
    { files: [null], note: null },
    { files: [{ path: 'a', size: -1, sha256: sha, media_type: 't' }], note: null },
    { files: [{ path: 'a', size: 1.5, sha256: sha, media_type: 't' }], note: null },
    { files: [{ path: 'a', size: 1, sha256: 'A'.repeat(64), media_type: 't' }], note: null },
    { files: [{ path: 1, size: 1, sha256: sha, media_type: 't' }], note: null },
    { files: [{ path: 'a', size: 1, sha256: sha }], note: null },
  ])('refuses a malformed manifest: %j', (value) => {
    expect(() => parseFilesManifest(value)).toThrow(/files manifest/);
  });
});
