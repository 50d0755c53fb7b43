/**
 * Artifacts on the local disk (local mode). Keys map to files under `root`. Callers may name two
 * kinds of file by file:// URI: their own uploads under the root, and notebooks under the workspace
 * folder, but never anything else of the data folder (other jobs' notebooks, logs, the store, the
 * cursor secret), even when the data folder lies inside the workspace (the default).
 *
 * Every check is made on the file that was actually opened (its real path read back from the open
 * descriptor), so swapping a symbolic link between the check and the read cannot lead outside.
 */
import { mkdir, open, readdir, rm, rename, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { constants, readlinkSync, realpathSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkSize, InvalidRequestError, NotFoundError } from '../core/errors.ts';
import type { Artifacts, SubmittedFile } from '../core/ports.ts';
import { SKIPPED_FOLDERS } from '../core/job-files.ts';
import { JOB_ID_PATTERN } from '../core/ids.ts';
import { checkArtifactKey, jobKeyPrefixes, uploadsPrefix } from '../core/job.ts';

export interface FileArtifactsOptions {
  /** Where artifacts are kept (`<data>/artifacts`). */
  root: string;
  /** Folder callers may submit notebooks from by file:// URI. */
  workspace: string;
  /**
   * Folders no submission may read even inside the workspace (the data folder). The root is
   * always one of them, except for the caller's own uploads.
   */
  private?: string[];
}

export class FileArtifacts implements Artifacts {
  private readonly root: string;
  private readonly workspace: string;
  private readonly privateFolders: string[];

  constructor(options: FileArtifactsOptions) {
    this.root = resolve(options.root);
    this.workspace = resolve(options.workspace);
    this.privateFolders = [this.root, ...(options.private ?? []).map((p) => resolve(p))];
  }

  uriFor(key: string): string {
    return pathToFileURL(this.pathFor(key)).href;
  }

  async put(key: string, body: Buffer | string): Promise<string> {
    const path = this.pathFor(key);
    await mkdir(dirname(path), { recursive: true });
    // Write a temp file of this write's own, then rename: a reader never sees half a notebook, and
    // two writers of the same key (two first requests for an HTML copy) do not share a temp file.
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(temp, body, { flag: 'wx' });
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return pathToFileURL(path).href;
  }

  async read(uri: string, maxBytes?: number): Promise<Buffer> {
    return this.readWithin(uri, maxBytes, (real) => within(realPathOf(this.root), real));
  }

  async readSubmitted(tenant: string, uri: string, maxBytes: number): Promise<Buffer> {
    return this.readWithin(uri, maxBytes, this.submittable(tenant));
  }

  async listSubmitted(tenant: string, folderUri: string, maxFiles: number): Promise<SubmittedFile[]> {
    const allowed = this.submittable(tenant);
    const folder = this.pathOfUri(folderUri);
    let real: string;
    try {
      real = realpathSync(folder);
    } catch {
      throw new NotFoundError(`no folder at ${folderUri}`, { uri: folderUri });
    }
    if (!allowed(real)) throw this.outside(folderUri);
    const found: SubmittedFile[] = [];
    // Walks the real folder: links to folders are not followed (a file link is listed, and its
    // target checked when it is read); a folder the caller may not read (the data folder inside the
    // workspace) is left out, not an error, so "the notebook's folder" works at the workspace root.
    const walk = async (dir: string, prefix: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true });
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        const full = join(dir, entry.name);
        const path = `${prefix}${entry.name}`;
        if (entry.isDirectory()) {
          if (SKIPPED_FOLDERS.has(entry.name) || !allowed(full)) continue;
          await walk(full, `${path}/`);
          continue;
        }
        let stats;
        try {
          stats = await stat(full);
        } catch {
          continue; // a dangling link
        }
        if (!stats.isFile()) continue;
        if (found.length >= maxFiles)
          throw new InvalidRequestError(
            `${folderUri} holds more than ${maxFiles} files; a job may bring at most ${maxFiles} (NOTEBOOK_JOBS_MAX_INPUT_FILES): name the ones it needs with files.paths`,
            { max_files: maxFiles },
          );
        found.push({ path, uri: pathToFileURL(full).href, size: stats.size });
      }
    };
    await walk(real, '');
    return found;
  }

  /** Where a caller may read: its own uploads, and the workspace outside the private folders. */
  private submittable(tenant: string): (realPath: string) => boolean {
    const uploads = realPathOf(this.pathFor(uploadsPrefix(tenant)));
    const privateFolders = this.privateFolders.map(realPathOf);
    const workspace = realPathOf(this.workspace);
    return (real) =>
      within(uploads, real) ||
      (within(workspace, real) && !privateFolders.some((folder) => within(folder, real)));
  }

  async exists(uri: string): Promise<boolean> {
    try {
      const handle = await this.openWithin(uri, (real) => within(realPathOf(this.root), real));
      await handle.close();
      return true;
    } catch {
      return false;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathFor(key), { force: true });
  }

  async deleteJob(tenant: string, jobId: string): Promise<void> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidRequestError(`not a job id: "${jobId}"`);
    for (const prefix of jobKeyPrefixes(tenant, jobId)) {
      await rm(this.pathFor(prefix), { recursive: true, force: true });
    }
  }

  private async readWithin(
    uri: string,
    maxBytes: number | undefined,
    allowed: (realPath: string) => boolean,
  ): Promise<Buffer> {
    const handle = await this.openWithin(uri, allowed);
    try {
      if (maxBytes !== undefined) checkSize(uri, (await handle.stat()).size, maxBytes);
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  /**
   * Opens the file behind a file:// URI, then checks where the opened file really is. Refuses
   * folders, and anything `allowed` rejects, with a message that says what may be named.
   */
  private async openWithin(uri: string, allowed: (realPath: string) => boolean): Promise<FileHandle> {
    const path = this.pathOfUri(uri);
    let handle: FileHandle;
    try {
      // Non-blocking: opening a named pipe for reading would otherwise wait for a writer, holding
      // a libuv thread (four hang the server); it opens at once and is refused as not a file.
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`no file at ${uri}`, { uri });
      if (code === 'EACCES' || code === 'ELOOP') throw this.outside(uri);
      throw error;
    }
    try {
      if (!allowed(openedPath(handle, path))) throw this.outside(uri);
      if (!(await handle.stat()).isFile()) throw new InvalidRequestError(`${uri} is not a file`, { uri });
      return handle;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  private pathOfUri(uri: string): string {
    // A NUL byte (%00) names no file: the fs calls throw a TypeError on it, which is not a 500.
    if (/%00|\0/.test(uri))
      throw new InvalidRequestError(`a file:// URI cannot contain a NUL byte (%00): ${uri.slice(0, 200)}`, {
        uri,
      });
    try {
      if (!uri.startsWith('file://')) throw new Error('scheme');
      return fileURLToPath(uri);
    } catch {
      throw new InvalidRequestError(
        `unsupported notebook URI: locally only file:// URIs of files under the workspace folder ${this.workspace} (or the notebook_uri of an upload) can be submitted`,
        { uri },
      );
    }
  }

  private outside(uri: string): InvalidRequestError {
    return new InvalidRequestError(
      `${uri} may not be submitted: only files under the workspace folder ${this.workspace} (outside the service's data folder) and your own uploads can be read`,
      { uri },
    );
  }

  private pathFor(key: string): string {
    const path = resolve(this.root, checkArtifactKey(key, { folder: key.endsWith('/') }));
    if (!within(this.root, path)) throw new InvalidRequestError(`invalid artifact key "${key}"`);
    return path;
  }
}

function within(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** Where an open file really is: Linux tells through /proc; elsewhere the path's real path. */
function openedPath(handle: FileHandle, path: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${handle.fd}`);
  } catch {
    return realpathSync(path);
  }
}

/** The real path (links resolved) of a path, or of its nearest existing parent plus the rest. */
function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realPathOf(parent), basename(path));
  }
}
