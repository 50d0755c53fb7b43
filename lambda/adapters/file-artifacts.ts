/**
 * Artifacts on the local disk (local mode). Keys map to files under `root`; submitted notebooks may
 * also be read by file:// URI from under the workspace folder, and nowhere else.
 */
import { mkdir, readFile, rm, stat, writeFile, rename } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkSize, InvalidRequestError, NotFoundError } from '../core/errors.ts';
import type { Artifacts } from '../core/ports.ts';
import { JOB_ID_PATTERN } from '../core/ids.ts';

export class FileArtifacts implements Artifacts {
  private readonly root: string;
  private readonly workspace: string;

  constructor(options: { root: string; workspace: string }) {
    this.root = resolve(options.root);
    this.workspace = resolve(options.workspace);
  }

  uriFor(key: string): string {
    return pathToFileURL(this.pathFor(key)).href;
  }

  async put(key: string, body: Buffer | string): Promise<string> {
    const path = this.pathFor(key);
    await mkdir(dirname(path), { recursive: true });
    // Write then rename, so a reader never sees half a notebook.
    const temp = `${path}.${process.pid}.tmp`;
    await writeFile(temp, body);
    await rename(temp, path);
    return pathToFileURL(path).href;
  }

  async read(uri: string, maxBytes?: number): Promise<Buffer> {
    const path = this.allowedPath(uri);
    try {
      if (maxBytes !== undefined) checkSize(uri, (await stat(path)).size, maxBytes);
      return await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`no file at ${uri}`, { uri });
      if ((error as NodeJS.ErrnoException).code === 'EISDIR')
        throw new InvalidRequestError(`${uri} is a folder`, { uri });
      throw error;
    }
  }

  async exists(uri: string): Promise<boolean> {
    try {
      return (await stat(this.allowedPath(uri))).isFile();
    } catch {
      return false;
    }
  }

  async deleteJob(jobId: string): Promise<void> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidRequestError(`not a job id: "${jobId}"`);
    for (const prefix of ['inputs', 'outputs']) {
      await rm(this.pathFor(`${prefix}/${jobId}`), { recursive: true, force: true });
    }
  }

  /** The file behind a file:// URI, if it lies under the artifacts root or the workspace. */
  private allowedPath(uri: string): string {
    let path: string;
    try {
      if (!uri.startsWith('file://')) throw new Error('scheme');
      path = fileURLToPath(uri);
    } catch {
      throw new InvalidRequestError(
        `unsupported notebook URI "${uri}": locally only file:// URIs under ${this.workspace} are read`,
        {
          uri,
        },
      );
    }
    // Checked on real paths, so a link inside the workspace cannot lead out of it.
    const real = realPathOf(path);
    if (!within(realPathOf(this.root), real) && !within(realPathOf(this.workspace), real)) {
      throw new InvalidRequestError(
        `${uri} is outside the workspace folder ${this.workspace}; only files under it can be submitted`,
        {
          uri,
        },
      );
    }
    return path;
  }

  private pathFor(key: string): string {
    const path = resolve(this.root, key);
    if (!within(this.root, path)) throw new InvalidRequestError(`invalid artifact key "${key}"`);
    return path;
  }
}

function within(folder: string, path: string): boolean {
  const rel = relative(folder, resolve(path));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** The real path (links resolved) of a file, or of its nearest existing parent folder. */
function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realPathOf(parent), basename(path));
  }
}
