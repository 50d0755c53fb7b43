/**
 * The runner's side of a job's files: placing the input files stored at submit in the working
 * folder before the kernel starts, and saving the files the notebook created or changed there
 * after it ends (lambda/core/job-files.ts has the layout).
 *
 * The working folder belongs to the kernel, which may have planted anything in it: links to
 * /etc/shadow or to the service's data folder, FIFOs, hard links, folders swapped for links while
 * they are walked. So the walk never follows a link, and every file is read with readKernelFile
 * (no link, one hard link, a regular file, opened where it was meant to be): what cannot be read
 * that way is left out and counted in the note.
 */
import { lstat, mkdir, readdir, realpath, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { JobRecord } from '../../lambda/core/job.ts';
import {
  parseFilesManifest,
  filePathProblem,
  inputFileKey,
  inputFilesManifestKey,
  outputFileKey,
  outputFilesManifestKey,
  RESERVED_FILE_PATHS,
  SKIPPED_FOLDERS,
  storedFile,
  type FilesManifest,
} from '../../lambda/core/job-files.ts';
import { parseJsonText } from '../../lambda/core/json.ts';
import type { Artifacts } from '../../lambda/core/ports.ts';
import { readKernelFile } from '../../lambda/kernels/engine-sandbox.ts';
import { errorMessage } from '../../lambda/core/errors.ts';
import { htmlOutputKey } from '../../lambda/core/job.ts';
import type { NotebookRenderer } from '../../lambda/core/ports.ts';
import { type RunnerLimits } from './limits.ts';
import { Redactor } from './redact.ts';
import type { RunnerDeps } from './runner.ts';

export interface OutputFileLimits {
  /** Files kept; past it, the first ones in path order. */
  maxOutputFiles: number;
  /** Total bytes kept. */
  maxOutputFilesBytes: number;
}

/** path -> sha256 of each input file placed, to tell an untouched input from an output. */
export type PlacedInputs = ReadonlyMap<string, string>;

/** Writes the job's stored input files into `workDir` (made fresh by the caller). */
export async function placeInputFiles(
  artifacts: Artifacts,
  job: JobRecord,
  workDir: string,
): Promise<PlacedInputs> {
  const placed = new Map<string, string>();
  if (!job.input_files?.count) return placed;
  const manifestUri = artifacts.uriFor(inputFilesManifestKey(job.tenant, job.job_id));
  const manifest = parseFilesManifest(
    parseJsonText((await artifacts.read(manifestUri)).toString('utf8'), 'input files manifest'),
  );
  for (const file of manifest.files) {
    // Checked again: the manifest is data, and a path is joined onto a folder here.
    const problem = filePathProblem(file.path);
    if (problem || RESERVED_FILE_PATHS.has(file.path))
      throw new Error(`input file path ${JSON.stringify(file.path)} ${problem ?? 'is reserved'}`);
    const body = await artifacts.read(artifacts.uriFor(inputFileKey(job.tenant, job.job_id, file.path)));
    const target = join(workDir, file.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await writeFile(target, body, { flag: 'wx', mode: 0o600 });
    placed.set(file.path, file.sha256);
  }
  return placed;
}

/**
 * Saves the files the notebook created or changed in `workDir` (not the untouched inputs, not the
 * runner's input.ipynb/output.ipynb, not cache folders), the first ones in path order up to the
 * caps, then the manifest that lists them with a note of what was left out and why.
 */
export async function saveOutputFiles(
  artifacts: Artifacts,
  job: JobRecord,
  workDir: string,
  inputs: PlacedInputs,
  limits: OutputFileLimits,
  /** Applied to each file before it is stored (the job's secrets redacted). */
  redact: (body: Buffer) => Buffer = (body) => body,
): Promise<FilesManifest> {
  const root = await realpath(workDir);
  const manifest: FilesManifest = { files: [], note: null };
  let bytes = 0;
  const left = { caps: 0, links: 0, unreadable: 0 };
  for (const path of await walk(root, '', left)) {
    if (RESERVED_FILE_PATHS.has(path) || filePathProblem(path)) continue;
    const remaining = limits.maxOutputFilesBytes - bytes;
    if (manifest.files.length >= limits.maxOutputFiles || remaining <= 0) {
      left.caps++;
      continue;
    }
    const full = join(root, path);
    const size = (await lstat(full).catch(() => null))?.size ?? 0;
    if (size > remaining) {
      left.caps++;
      continue;
    }
    const body = await readKernelFile(full, { openedAt: full, maxBytes: remaining }).catch(() => null);
    if (!body) {
      left.unreadable++;
      continue;
    }
    if (inputs.get(path) === storedFile(path, body).sha256) continue; // an input left as it was
    const kept = redact(body);
    if (kept.length > remaining) {
      left.caps++;
      continue;
    }
    await artifacts.put(outputFileKey(job.tenant, job.job_id, path), kept);
    manifest.files.push(storedFile(path, kept));
    bytes += kept.length;
  }
  const notes: string[] = [];
  if (left.caps)
    notes.push(
      `${left.caps} more file(s) not saved: a job keeps at most ${limits.maxOutputFiles} files and ${limits.maxOutputFilesBytes} bytes of output files (NOTEBOOK_JOBS_MAX_OUTPUT_FILES, NOTEBOOK_JOBS_MAX_OUTPUT_FILES_BYTES); the first ones in path order were kept`,
    );
  if (left.links) notes.push(`${left.links} symbolic link(s) not followed`);
  if (left.unreadable) notes.push(`${left.unreadable} file(s) skipped: not a regular file with one link`);
  manifest.note = notes.length ? notes.join('; ') : null;
  await artifacts.put(outputFilesManifestKey(job.tenant, job.job_id), JSON.stringify(manifest));
  return manifest;
}

/** Regular-file paths under `dir`, sorted; links and special files are counted, never followed. */
async function walk(
  dir: string,
  prefix: string,
  left: { links: number; unreadable: number },
): Promise<string[]> {
  const paths: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    left.unreadable++;
    return paths;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const path = `${prefix}${entry.name}`;
    const full = join(dir, entry.name);
    if (entry.isSymbolicLink()) left.links++;
    else if (entry.isDirectory()) {
      if (SKIPPED_FOLDERS.has(entry.name)) continue;
      // lstat again: a folder swapped for a link since readdir is not entered.
      const stats = await lstat(full).catch(() => null);
      if (stats?.isDirectory()) paths.push(...(await walk(full, `${path}/`, left)));
      else left.links++;
    } else if (entry.isFile()) paths.push(path);
    else left.unreadable++;
  }
  return paths;
}

/** Best effort: a job whose files cannot all be saved still has its notebook; the log says why. */
export async function saveFiles(
  job: JobRecord,
  deps: RunnerDeps,
  inputs: PlacedInputs,
  limits: RunnerLimits,
  say: (text: string) => void,
  redactor: Redactor,
): Promise<void> {
  try {
    const saved = await saveOutputFiles(deps.artifacts, job, deps.workDir, inputs, limits, (body) =>
      redactor.bytes(body),
    );
    if (saved.files.length) say(`saved ${saved.files.length} output file(s)`);
    if (saved.note) say(`output files: ${saved.note}`);
  } catch (error) {
    say(`output files not saved: ${errorMessage(error)}`);
  }
}

/** Best effort: a job whose HTML copy fails still has its notebook; the log says why. */
export async function saveHtml(
  job: JobRecord,
  executed: Buffer,
  renderer: NotebookRenderer,
  artifacts: Artifacts,
  say: (text: string) => void,
): Promise<void> {
  try {
    await artifacts.put(
      htmlOutputKey(job.tenant, job.job_id, job.notebook.name),
      await renderer.html(executed),
    );
    say('HTML copy saved');
  } catch (error) {
    say(`no HTML copy: ${errorMessage(error)}`);
  }
}
