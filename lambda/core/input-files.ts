/**
 * A job's input files at submit: read from where the request says (the notebook's folder, paths or
 * globs in it, an archive, a folder URI) by the caller's own read rules (Artifacts.readSubmitted /
 * listSubmitted), checked against the caps, and only then stored with the job, so the job never
 * depends on the caller's folder again and a refused request has written nothing.
 */
import { InvalidRequestError, NotFoundError, PayloadTooLargeError } from './errors.ts';
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
import type { InspectFiles } from './contract.ts';
import { unpackArchive } from '../notebook/archive.ts';

/** Reads and checks the files a request names; throws a 4xx saying what is wrong. */
export async function readInputFiles(
  artifacts: Artifacts,
  tenant: string,
  files: FilesSource,
  notebook: CreateJobRequest['notebook'],
  caps: InputFileCaps & { maxArchiveBytes: number },
): Promise<InputFile[]> {
  const { set } = await selectInputFiles(artifacts, tenant, files, notebook, caps, null);
  return set.files;
}

/**
 * What a request's files would bring, without storing anything (inspection): the same selection
 * as submit, but a file submit would refuse (a link leading outside, a reserved name, past a cap,
 * a pattern matching nothing, an archive that is refused) is listed with its reason instead of
 * failing the request. What the request itself gets wrong (a folder outside what the caller may
 * read, a missing folder, a bad glob, an inline notebook with folder files) is still a 4xx.
 */
export async function inspectInputFiles(
  artifacts: Artifacts,
  tenant: string,
  files: FilesSource,
  notebook: CreateJobRequest['notebook'],
  caps: InputFileCaps & { maxArchiveBytes: number },
): Promise<InspectFiles> {
  const refused: InspectFiles['refused'] = [];
  const { set, source } = await selectInputFiles(artifacts, tenant, files, notebook, caps, (path, error) =>
    refused.push({ path, reason: error.message }),
  );
  // Only the sizes are reported: the bytes were read (as submit reads them) to check each file.
  const listed = set.files.map((file) => ({ path: file.path, size: file.body.length }));
  return {
    source,
    files: listed,
    count: listed.length,
    total_bytes: listed.reduce((sum, file) => sum + file.size, 0),
    max_files: caps.maxFiles,
    max_bytes: caps.maxBytes,
    refused,
    accepted: refused.length === 0,
  };
}

/** A refusal of one file (or pattern, or archive) that inspection reports instead of throwing. */
type Refuse = (path: string, error: Error) => void;

/** Errors about one file rather than the request: inspection lists them (Refuse). */
const isFileRefusal = (error: unknown): error is Error =>
  error instanceof InvalidRequestError ||
  error instanceof PayloadTooLargeError ||
  error instanceof NotFoundError;

/**
 * The one selection of a request's files, for submit (`refuse` null: the first problem throws)
 * and inspection (each file's problem goes to `refuse`).
 */
async function selectInputFiles(
  artifacts: Artifacts,
  tenant: string,
  files: FilesSource,
  notebook: CreateJobRequest['notebook'],
  caps: InputFileCaps & { maxArchiveBytes: number },
  refuse: Refuse | null,
): Promise<{ set: InputFileSet; source: string }> {
  if ('uri' in files) {
    const source = `files.uri ${files.uri}`;
    const set = new InputFileSet(caps, source);
    if (files.uri.endsWith('/')) {
      await readFolder(artifacts, tenant, files.uri, () => true, set, refuse);
      return { set, source: files.uri };
    }
    const archive = await artifacts.readSubmitted(tenant, files.uri, caps.maxArchiveBytes);
    try {
      await unpackArchive(archive, set, files.uri);
    } catch (error) {
      if (!refuse || !isFileRefusal(error)) throw error;
      refuse(files.uri, error);
    }
    return { set, source: files.uri };
  }
  if (!('uri' in notebook))
    throw new InvalidRequestError(
      `files.${'from' in files ? 'from' : 'paths'} takes files from the notebook's folder, so the notebook must be given by notebook.uri; for an inline notebook, upload the files as an archive (POST /v1/uploads) and pass files.uri`,
    );
  const folder = notebook.uri.replace(/[?#].*$/, '').replace(/[^/]*$/, '');
  if ('from' in files) {
    const set = new InputFileSet(caps, `the notebook's folder ${folder}`);
    // The runner's own names are left out of a whole folder (a notebook may be called input.ipynb).
    await readFolder(artifacts, tenant, folder, (path) => !RESERVED_FILE_PATHS.has(path), set, refuse);
    return { set, source: folder };
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
    refuse,
  );
  const unused = files.paths.filter((pattern) => !used.has(pattern));
  if (unused.length) {
    const error = new InvalidRequestError(
      `files.paths: nothing in ${folder} matches ${unused.map((p) => JSON.stringify(p)).join(', ')}`,
      { unmatched: unused },
    );
    if (!refuse) throw error;
    for (const pattern of unused) refuse(pattern, new Error('matches nothing in the folder'));
  }
  return { set, source: folder };
}

/** Lists a folder (the listing caps the count), then reads each chosen file within the byte cap. */
async function readFolder(
  artifacts: Artifacts,
  tenant: string,
  folderUri: string,
  chosen: (path: string) => boolean,
  set: InputFileSet,
  refuse: Refuse | null,
): Promise<void> {
  // The listing is capped generously (a folder may hold more than is chosen); the set caps what is taken.
  const listed = await artifacts.listSubmitted(tenant, folderUri, 100_000);
  for (const file of listed) {
    if (!chosen(file.path)) continue;
    let reserved = false;
    try {
      set.reserve(file.path, file.size);
      reserved = true;
      // Read by the caller's rules: a link leading outside what it may read is refused here.
      const body = await artifacts.readSubmitted(tenant, file.uri, file.size);
      set.add(file.path, body);
    } catch (error) {
      if (!refuse || !isFileRefusal(error)) throw error;
      if (reserved) set.release(file.path, file.size);
      refuse(file.path, error);
    }
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
