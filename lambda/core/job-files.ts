/**
 * A job's files: the input files it brings (placed in its working folder before the kernel starts)
 * and the output files its notebook creates or changes there (saved when it ends). Both are kept
 * beside the job's notebooks, each folder with a manifest:
 *
 *   inputs/<tenant>/<job>/files/<path>    inputs/<tenant>/<job>/files.json   (written at submit)
 *   outputs/<tenant>/<job>/files/<path>   outputs/<tenant>/<job>/files.json  (written by the runner)
 *
 * A manifest is what is served: a file path is looked up in it, never joined onto a folder, so a
 * request can only name a file the service itself listed. Paths are data too: one check
 * (`checkFilePath`) for every path, whatever supplied it (a folder, a glob, an archive, a request).
 */
import { createHash } from 'node:crypto';
import { InvalidRequestError } from './errors.ts';
import { checkArtifactKey } from './job.ts';

/** The runner's own files at the top of the working folder: never inputs, never outputs. */
export const RESERVED_FILE_PATHS: ReadonlySet<string> = new Set(['input.ipynb', 'output.ipynb']);

/** Folders of caches and tools, left out of a notebook's folder and of its outputs. */
export const SKIPPED_FOLDERS: ReadonlySet<string> = new Set([
  '.git',
  '.ipynb_checkpoints',
  '__pycache__',
  'node_modules',
]);

/** One entry of a files manifest (its schema, for the API, is `StoredFileSchema` in contract.ts). */
export interface StoredFile {
  path: string;
  size: number;
  sha256: string;
  media_type: string;
}

export interface FilesManifest {
  files: StoredFile[];
  note: string | null;
}

/**
 * Reads a files manifest, checking its shape without zod: the runner reads input manifests, and
 * zod would add about 0.7 MB to the runner's bundle, which every cold job loads before its kernel
 * starts (bench row (a)). Paths are checked again by whoever joins them onto a folder.
 */
export function parseFilesManifest(value: unknown): FilesManifest {
  const bad = (what: string) => new Error(`files manifest: ${what}`);
  if (typeof value !== 'object' || value === null || !Array.isArray((value as FilesManifest).files))
    throw bad('not an object with a files array');
  const { files, note } = value as FilesManifest;
  if (note !== null && typeof note !== 'string') throw bad('note is neither a string nor null');
  for (const file of files) {
    const ok =
      typeof file === 'object' &&
      file !== null &&
      typeof file.path === 'string' &&
      Number.isSafeInteger(file.size) &&
      file.size >= 0 &&
      typeof file.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(file.sha256) &&
      typeof file.media_type === 'string';
    if (!ok) throw bad(`bad entry ${JSON.stringify(file)?.slice(0, 200)}`);
  }
  return {
    files: files.map(({ path, size, sha256, media_type }) => ({ path, size, sha256, media_type })),
    note,
  };
}

export function inputFileKey(tenant: string, jobId: string, path: string): string {
  return checkArtifactKey(`inputs/${tenant}/${jobId}/files/${path}`);
}
export function inputFilesManifestKey(tenant: string, jobId: string): string {
  return checkArtifactKey(`inputs/${tenant}/${jobId}/files.json`);
}
export function outputFileKey(tenant: string, jobId: string, path: string): string {
  return checkArtifactKey(`outputs/${tenant}/${jobId}/files/${path}`);
}
export function outputFilesManifestKey(tenant: string, jobId: string): string {
  return checkArtifactKey(`outputs/${tenant}/${jobId}/files.json`);
}

/** Path length in UTF-8 bytes: fits S3's 1,024-byte keys with the prefix in front. */
const MAX_PATH_BYTES = 768;
const MAX_SEGMENT_BYTES = 255;

/**
 * What is wrong with a relative file path, or null when it is a plain relative path of plain
 * names: no absolute path (`/x`, `C:x`, `\\server`), no `.`/`..`/empty segment, no backslash, no
 * control or invisible character, segments within file-system limits.
 */
export function filePathProblem(path: string): string | null {
  if (path === '') return 'is empty';
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'is absolute';
  if (path.includes('\\')) return "contains a backslash (use '/' between folders)";
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(path)) return 'contains a control or invisible character';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  for (const segment of path.split('/')) {
    if (segment === '') return 'has an empty folder name (// or a trailing /)';
    if (segment === '.' || segment === '..') return `contains "${segment}"`;
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)
      return `has a name longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return null;
}

/** Checks a relative file path (see filePathProblem); throws InvalidRequestError naming `what`. */
export function checkFilePath(path: string, what = 'file path'): string {
  const problem = filePathProblem(path);
  if (problem)
    throw new InvalidRequestError(`${what} ${JSON.stringify(path.slice(0, 200))} ${problem}`, {
      path: path.slice(0, 1024),
    });
  return path;
}

/**
 * A glob over relative '/'-separated paths: `*` and `?` stay within one name, `**` spans folders
 * (`data/**` is everything under data, `**\/*.csv` every CSV), `[abc]` a character class. A pattern
 * naming a folder (`data`, `data/`) takes everything under it.
 */
export function globMatcher(pattern: string): (path: string) => boolean {
  const clean = pattern.replace(/^\.\//, '').replace(/\/+$/, '');
  checkFilePath(clean.replace(/[*?[\]]/g, 'x'), 'files path');
  let source = '';
  for (let i = 0; i < clean.length; i++) {
    const ch = clean[i] as string;
    if (ch === '*' && clean[i + 1] === '*') {
      const slash = clean[i + 2] === '/';
      source += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (ch === '*') source += '[^/]*';
    else if (ch === '?') source += '[^/]';
    else if (ch === '[') {
      const end = clean.indexOf(']', i + 1);
      if (end < 0) throw new InvalidRequestError(`files path ${JSON.stringify(pattern)} has an unclosed [`);
      source += `[${clean
        .slice(i + 1, end)
        .replace(/^!/, '^')
        .replace(/[\\\]]/g, '\\$&')}]`;
      i = end;
    } else source += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  const exact = new RegExp(`^${source}$`, 'u');
  const under = new RegExp(`^${source}/`, 'u');
  return (path) => exact.test(path) || under.test(path);
}

const MEDIA_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  webp: 'image/webp',
  pdf: 'application/pdf',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  txt: 'text/plain',
  log: 'text/plain',
  md: 'text/markdown',
  html: 'text/html',
  htm: 'text/html',
  json: 'application/json',
  ipynb: 'application/x-ipynb+json',
  py: 'text/x-python',
  xml: 'application/xml',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  zip: 'application/zip',
  gz: 'application/gzip',
  parquet: 'application/vnd.apache.parquet',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

/** The media type a file name suggests (the extension only: a file's bytes are the notebook's). */
export function mediaTypeOf(path: string): string {
  const ext = /\.([^./]+)$/.exec(path)?.[1]?.toLowerCase() ?? '';
  return MEDIA_TYPES[ext] ?? 'application/octet-stream';
}

export function sha256Of(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

export function storedFile(path: string, body: Buffer): StoredFile {
  return { path, size: body.length, sha256: sha256Of(body), media_type: mediaTypeOf(path) };
}

/** The REST path of an output file: each segment percent-encoded, so any name survives the URL. */
export function fileDownloadPath(jobId: string, path: string): string {
  return `/v1/jobs/${jobId}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** A file taken in at submit: its path in the working folder and its bytes. */
export interface InputFile {
  path: string;
  body: Buffer;
}

/** The caps on a job's input files. */
export interface InputFileCaps {
  maxFiles: number;
  maxBytes: number;
}

/**
 * Collects input files one by one, refusing bad and reserved paths, duplicates, a file where a
 * folder is (and the reverse), and anything past the caps, with a message that says which.
 */
export class InputFileSet {
  readonly files: InputFile[] = [];
  private readonly paths = new Set<string>();
  private readonly folders = new Set<string>();
  private bytes = 0;

  constructor(
    private readonly caps: InputFileCaps,
    private readonly source: string,
  ) {}

  get totalBytes(): number {
    return this.bytes;
  }

  /** Call before reading a file's bytes: refuses the file past the count cap, or past the size cap. */
  reserve(path: string, size: number): void {
    checkFilePath(path, `${this.source}: file`);
    if (RESERVED_FILE_PATHS.has(path))
      throw new InvalidRequestError(
        `${this.source}: "${path}" is a name the runner uses for the notebook itself; rename the file or put it in a folder`,
        { path },
      );
    if (this.paths.has(path))
      throw new InvalidRequestError(`${this.source}: "${path}" appears twice`, { path });
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join('/');
      if (this.paths.has(folder))
        throw new InvalidRequestError(`${this.source}: "${folder}" is both a file and a folder`, { path });
    }
    if (this.folders.has(path))
      throw new InvalidRequestError(`${this.source}: "${path}" is both a file and a folder`, { path });
    if (this.files.length + 1 > this.caps.maxFiles)
      throw new InvalidRequestError(
        `${this.source}: more than ${this.caps.maxFiles} files; a job may bring at most ${this.caps.maxFiles} (NOTEBOOK_JOBS_MAX_INPUT_FILES)`,
        { max_files: this.caps.maxFiles },
      );
    this.count(size);
    this.paths.add(path);
    for (let i = 1; i < segments.length; i++) this.folders.add(segments.slice(0, i).join('/'));
  }

  /**
   * Adds bytes of a reserved file as they are read (an archive's actual output, not its header).
   * Bytes past the cap are refused without being counted, so inspection can go on listing the
   * files that still fit.
   */
  count(bytes: number): void {
    if (this.bytes + bytes > this.caps.maxBytes)
      throw new InvalidRequestError(
        `${this.source}: the files come to more than ${this.caps.maxBytes} bytes unpacked; a job may bring at most ${this.caps.maxBytes} bytes of files (NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES)`,
        { max_bytes: this.caps.maxBytes },
      );
    this.bytes += bytes;
  }

  /** Undoes a successful `reserve` of a file that could not be read after all (inspection goes on). */
  release(path: string, size: number): void {
    if (this.paths.delete(path)) this.bytes -= size;
  }

  /** Records a reserved file's bytes. */
  add(path: string, body: Buffer): void {
    this.files.push({ path, body });
  }
}
