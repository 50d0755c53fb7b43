/**
 * A job's input files at submit: read from where the request says (the notebook's folder, paths or
 * globs in it, an archive, a folder URI) by the caller's own read rules (Artifacts.readSubmitted /
 * listSubmitted), checked against the caps, and only then stored with the job, so the job never
 * depends on the caller's folder again and a refused request has written nothing.
 */
import { InvalidRequestError } from './errors.ts';
import {
  globMatcher,
  inputFileKey,
  inputFilesManifestKey,
  InputFileSet,
  RESERVED_FILE_PATHS,
  storedFile,
  type FilesManifest,
  type InputFile,
  type InputFileCaps,
} from './job-files.ts';
import type { Artifacts } from './ports.ts';
import type { FilesSource, CreateJobRequest } from './schemas.ts';
import { unpackArchive } from '../notebook/archive.ts';

/** Reads and checks the files a request names; throws a 4xx saying what is wrong. */
export async function readInputFiles(
  artifacts: Artifacts,
  tenant: string,
  files: FilesSource,
  notebook: CreateJobRequest['notebook'],
  caps: InputFileCaps & { maxArchiveBytes: number },
): Promise<InputFile[]> {
  if ('uri' in files) {
    const set = new InputFileSet(caps, `files.uri ${files.uri}`);
    if (files.uri.endsWith('/')) await readFolder(artifacts, tenant, files.uri, () => true, set);
    else
      await unpackArchive(
        await artifacts.readSubmitted(tenant, files.uri, caps.maxArchiveBytes),
        set,
        files.uri,
      );
    return set.files;
  }
  if (!('uri' in notebook))
    throw new InvalidRequestError(
      `files.${'from' in files ? 'from' : 'paths'} takes files from the notebook's folder, so the notebook must be given by notebook.uri; for an inline notebook, upload the files as an archive (POST /v1/uploads) and pass files.uri`,
    );
  const folder = notebook.uri.replace(/[?#].*$/, '').replace(/[^/]*$/, '');
  if ('from' in files) {
    const set = new InputFileSet(caps, `the notebook's folder ${folder}`);
    // The runner's own names are left out of a whole folder (a notebook may be called input.ipynb).
    await readFolder(artifacts, tenant, folder, (path) => !RESERVED_FILE_PATHS.has(path), set);
    return set.files;
  }
  const matchers = files.paths.map((pattern) => ({ pattern, matches: globMatcher(pattern) }));
  const set = new InputFileSet(caps, `files.paths in ${folder}`);
  const used = new Set<string>();
  await readFolder(
    artifacts,
    tenant,
    folder,
    (path) => {
      const hits = matchers.filter((m) => m.matches(path));
      for (const hit of hits) used.add(hit.pattern);
      return hits.length > 0;
    },
    set,
  );
  const unused = files.paths.filter((pattern) => !used.has(pattern));
  if (unused.length)
    throw new InvalidRequestError(
      `files.paths: nothing in ${folder} matches ${unused.map((p) => JSON.stringify(p)).join(', ')}`,
      { unmatched: unused },
    );
  return set.files;
}

/** Lists a folder (the listing caps the count), then reads each chosen file within the byte cap. */
async function readFolder(
  artifacts: Artifacts,
  tenant: string,
  folderUri: string,
  chosen: (path: string) => boolean,
  set: InputFileSet,
): Promise<void> {
  // The listing is capped generously (a folder may hold more than is chosen); the set caps what is taken.
  const listed = await artifacts.listSubmitted(tenant, folderUri, 100_000);
  for (const file of listed) {
    if (!chosen(file.path)) continue;
    set.reserve(file.path, file.size);
    const body = await artifacts.readSubmitted(tenant, file.uri, file.size);
    set.add(file.path, body);
  }
}

/**
 * Stores a job's input files and their manifest (what the runner places, with the hashes that
 * tell an untouched input from an output). Returns what the job record says of them.
 */
export async function storeInputFiles(
  artifacts: Artifacts,
  tenant: string,
  jobId: string,
  files: InputFile[],
): Promise<{ count: number; bytes: number }> {
  const manifest: FilesManifest = { files: [], note: null };
  for (const file of files) {
    await artifacts.put(inputFileKey(tenant, jobId, file.path), file.body);
    manifest.files.push(storedFile(file.path, file.body));
  }
  await artifacts.put(inputFilesManifestKey(tenant, jobId), JSON.stringify(manifest));
  return { count: files.length, bytes: files.reduce((sum, f) => sum + f.body.length, 0) };
}
