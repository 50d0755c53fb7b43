/**
 * Unpacking a job's input-file archive (.zip, .tar.gz) in memory, safely: every entry name passes
 * the one file-path check (no absolute path, no `..`, no backslash), links of any kind (symbolic,
 * hard) and special files are refused outright, and the caps count what actually comes out of the
 * decompressor, chunk by chunk, so an archive that lies in its headers (a zip bomb) is stopped at the
 * cap, not after. Anything that is not one of the two formats, or is damaged, is a 400 that says so.
 * Nothing is written anywhere: the caller gets the files, or an error.
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import yauzl from 'yauzl';
import { extract } from 'tar-stream';
import { AppError, errorMessage, InvalidRequestError } from '../core/errors.ts';
import { filePathProblem, type InputFileSet } from '../core/job-files.ts';

export type ArchiveKind = 'zip' | 'tar.gz';

/** The archive format by its first bytes (names can lie; the bytes decide). */
export function archiveKind(bytes: Buffer): ArchiveKind | null {
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x04034b50) return 'zip';
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x06054b50) return 'zip'; // an empty zip
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) return 'tar.gz';
  return null;
}

/** Unpacks `bytes` into `set` (which enforces paths and caps); throws InvalidRequestError on any problem. */
export async function unpackArchive(bytes: Buffer, set: InputFileSet, source: string): Promise<void> {
  const kind = archiveKind(bytes);
  if (!kind)
    throw new InvalidRequestError(
      `${source} is not an archive: files.uri must name a .zip or a .tar.gz (gzip-compressed tar) file`,
    );
  try {
    if (kind === 'zip') await unzip(bytes, set, source);
    else await untar(bytes, set, source);
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw new InvalidRequestError(`${source} is not a readable ${kind} archive: ${errorMessage(error)}`);
  }
}

/** Unix file-type bits of a zip entry made on Unix (external attributes, high 16 bits). */
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

async function unzip(bytes: Buffer, set: InputFileSet, source: string): Promise<void> {
  // decodeStrings false: yauzl's own name check throws a generic error; ours says what is wrong.
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(
      bytes,
      { lazyEntries: true, decodeStrings: false, validateEntrySizes: true },
      (error, file) => (error ? reject(error) : resolve(file)),
    ),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        readZipEntry(zip, entry, set, source).then(() => zip.readEntry(), reject);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

async function readZipEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, set: InputFileSet, source: string) {
  const raw = entry.fileName as unknown as Buffer;
  const name = raw.toString('utf8');
  const madeOnUnix = entry.versionMadeBy >> 8 === 3;
  const type = madeOnUnix ? (entry.externalFileAttributes >>> 16) & S_IFMT : 0;
  if (name.endsWith('/') || type === S_IFDIR) {
    checkEntryName(name.replace(/\/+$/, ''), source, true);
    return;
  }
  if (type !== 0 && type !== S_IFREG)
    throw linkRefused(name, source, type === 0o120000 ? 'a symbolic link' : 'not a regular file');
  const path = checkEntryName(name, source, false);
  set.reserve(path, 0);
  if (entry.isEncrypted()) throw new InvalidRequestError(`${source}: "${path}" is encrypted`);
  const stream = await new Promise<Readable>((resolve, reject) =>
    zip.openReadStream(entry, (error, s) => (error ? reject(error) : resolve(s))),
  );
  set.add(path, await collect(stream, set));
}

async function untar(bytes: Buffer, set: InputFileSet, source: string): Promise<void> {
  const tar = extract();
  const gunzip = createGunzip();
  const done = new Promise<void>((resolve, reject) => {
    tar.on('entry', (header, stream, next) => {
      const type = header.type ?? 'file';
      const name = header.name;
      // Old tars mark a folder only by its trailing '/'.
      if (type === 'directory' || (type === 'file' && name.endsWith('/') && !header.size)) {
        checkEntryName(name.replace(/\/+$/, ''), source, true);
        stream.resume();
        next();
        return;
      }
      if (type !== 'file' && type !== 'contiguous-file') {
        const what = type === 'symlink' ? 'a symbolic link' : type === 'link' ? 'a hard link' : `a ${type}`;
        fail(linkRefused(name, source, what));
        return;
      }
      let path: string;
      try {
        path = checkEntryName(name, source, false);
        set.reserve(path, 0);
      } catch (error) {
        fail(error);
        return;
      }
      collect(stream as unknown as Readable, set).then((body) => {
        set.add(path, body);
        next();
      }, fail);
    });
    tar.on('finish', resolve);
    tar.on('error', reject);
    gunzip.on('error', reject);
    function fail(error: unknown) {
      reject(error);
      gunzip.destroy();
      tar.destroy();
    }
  });
  Readable.from([bytes]).pipe(gunzip).pipe(tar);
  await done;
}

/** Reads an entry's bytes, counting each decompressed chunk against the set's size cap as it comes. */
async function collect(stream: Readable, set: InputFileSet): Promise<Buffer> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) {
      set.count((chunk as Buffer).length);
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    stream.destroy();
    throw error;
  }
  return Buffer.concat(chunks);
}

/** An entry name as a working-folder path: `./` prefixes dropped, then the one file-path check. */
function checkEntryName(name: string, source: string, folder: boolean): string {
  const path = name.replace(/^(\.\/)+/, '');
  if (folder && path === '') return path; // "./" itself
  const problem = path.includes('\ufffd') ? 'is not valid UTF-8' : filePathProblem(path);
  if (problem)
    throw new InvalidRequestError(
      `${source}: entry ${JSON.stringify(name.slice(0, 200))} ${problem}; archive entries must be relative paths inside the archive`,
      { entry: name.slice(0, 200) },
    );
  return path;
}

function linkRefused(name: string, source: string, what: string): InvalidRequestError {
  return new InvalidRequestError(
    `${source}: entry ${JSON.stringify(name.slice(0, 200))} is ${what}; archives of input files may hold only regular files and folders`,
    { entry: name.slice(0, 200) },
  );
}
