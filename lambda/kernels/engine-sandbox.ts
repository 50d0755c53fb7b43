/**
 * The runner's side of the engine sandbox (container/engines/sandbox.py): the command that starts
 * an engine driver inside it, what the sandbox reads on stdin, reading back files from a folder the
 * kernel owns, and the start-up check that a kernel user can run the engine at all.
 */
import { spawn } from 'node:child_process';
import { constants, readlinkSync, realpathSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';

/** The sandbox program, beside the engine drivers. */
export const SANDBOX_SCRIPT = 'sandbox.py';

export interface SandboxOptions {
  /** The interpreter that runs the sandbox (the engine's own). */
  python: string;
  /** Folder of sandbox.py. */
  enginesDir: string;
  /** The job's working folder: the program's cwd; with a kernel user, made that user's. */
  workDir?: string;
  /** Run the program as this user (the runner must be root). */
  kernelUser?: string;
  /** From SIGTERM to SIGKILL of everything the program started. */
  graceMs: number;
}

/**
 * argv that runs `program` in the sandbox. `-I`: the sandbox (root, with a kernel user) ignores
 * PYTHON* variables and user site-packages, and does not import from the folder it runs from.
 */
export function sandboxCommand(options: SandboxOptions, program: readonly string[]): string[] {
  const args = [options.python, '-I', join(options.enginesDir, SANDBOX_SCRIPT)];
  args.push('--grace', String(Math.max(0.1, options.graceMs / 1000)));
  if (options.workDir) args.push('--workdir', options.workDir);
  if (options.kernelUser) args.push('--user', options.kernelUser);
  return [...args, '--', ...program];
}

/**
 * What the sandbox reads on stdin: the program's whole environment. Not the sandbox's own
 * environment (a root process should not run with variables a job may set) nor argv (every user
 * can read /proc/<pid>/cmdline).
 */
export function sandboxInput(env: Readonly<Record<string, string>>): string {
  return `${JSON.stringify({ env })}\n`; // one line: what follows it is the driver's
}

/**
 * Reads a file from a folder the kernel owns, where the kernel may have put something else in its
 * place: never through a symbolic link or a second hard link (either could lead the runner to a
 * file only it may read, which would then be served as the job's output), never a FIFO or device
 * (which could block forever). Null when there is no such regular file. With `openedAt` (the real
 * path the file must have: the kernel may swap a folder on the way for a link), a file opened
 * anywhere else reads as null; with `maxBytes`, so does a larger file.
 */
export async function readKernelFile(
  path: string,
  { maxBytes, openedAt }: { maxBytes?: number; openedAt?: string } = {},
): Promise<Buffer | null> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return null;
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.nlink !== 1) return null;
    // O_NOFOLLOW guards the last name only: a folder on the way may have become a link since it was
    // listed. Where the opened file really is (Linux: /proc) must be where it was meant to be.
    if (openedAt !== undefined && !openedIs(handle.fd, path, openedAt)) return null;
    if (maxBytes !== undefined && stat.size > maxBytes) return null;
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function openedIs(fd: number, path: string, expected: string): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === expected;
  } catch {
    // No /proc (macOS): the path's real path, checked just after the open.
    try {
      return realpathSync(path) === expected;
    } catch {
      return false;
    }
  }
}

/**
 * Checks, before any job runs, that `kernelUser` exists, that this process may switch to it, and
 * that as that user the interpreter can run the engine driver (both readable, its packages
 * importable). Throws with the sandbox's own explanation.
 */
export async function checkKernelUser(options: {
  python: string;
  enginesDir: string;
  driver: string;
  kernelUser: string;
  env: Readonly<Record<string, string>>;
}): Promise<void> {
  const [program, ...args] = sandboxCommand(
    { python: options.python, enginesDir: options.enginesDir, kernelUser: options.kernelUser, graceMs: 5000 },
    [options.python, options.driver, '--help'],
  );
  const child = spawn(program as string, args, {
    cwd: '/',
    env: { PATH: options.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => undefined); // it may exit before reading: its exit code says why
  child.stdin.end(sandboxInput(options.env));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode) => resolve(exitCode));
  });
  if (code !== 0) {
    const why = stderr.trim().split('\n').slice(-3).join(' / ');
    throw new Error(
      `kernel user ${options.kernelUser} cannot run the engine (${options.driver} with ${options.python}): ${why || `exit ${code}`}`,
    );
  }
}
