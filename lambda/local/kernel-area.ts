/**
 * Local mode with a kernel user (`serve --kernel-user NAME`): the one place kernels may reach on
 * disk. The data folder (jobs, notebooks, logs, the cursor secret, runner traces) stays readable by
 * the service alone; beside it, outside any folder the kernel user could not traverse, a folder of
 * root-owned copies of the engine drivers (readable, not writable, so one job cannot plant code in
 * the next one's driver) and the jobs' working folders, each of which the sandbox hands to the
 * kernel user for its job.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkKernelUser } from '../kernels/engine-sandbox.ts';
import { engineScript, ENGINES_DIR } from '../kernels/engines.ts';
import { kernelEnvironment } from '../kernels/kernel-env.ts';
import type { EngineName } from '../kernels/python.ts';

export interface KernelArea {
  /** Root-owned copies of the drivers and the sandbox (NOTEBOOK_JOBS_ENGINES_DIR). */
  enginesDir: string;
  /** Where each job's working folder is made (NOTEBOOK_JOBS_WORK_ROOT). */
  workRoot: string;
  /** Removes the area (server shutdown). */
  remove(): void;
}

/**
 * Makes the area under the temporary folder (a fresh name: a predictable one could be made first
 * by another local user) and checks that `kernelUser` can run the engine from it. Throws, naming
 * the cause, when the service is not root or the user cannot run the engine.
 */
export async function prepareKernelArea(options: {
  kernelUser: string;
  python: string;
  engine: EngineName;
}): Promise<KernelArea> {
  const uid = process.getuid?.();
  if (uid !== 0)
    throw new Error(
      `--kernel-user ${options.kernelUser} needs the service to run as root, to start each kernel as ` +
        `that user (it runs as uid ${uid ?? 'unknown'}); without it kernels run as the service's own user`,
    );
  const root = mkdtempSync(join(tmpdir(), 'notebook-jobs-kernels-'));
  try {
    chmodSync(root, 0o711); // traversable, not listable: no job sees the others' folder names
    const enginesDir = join(root, 'engines');
    mkdirSync(enginesDir, { mode: 0o755 });
    for (const file of readdirSync(ENGINES_DIR).filter((name) => name.endsWith('.py'))) {
      copyFileSync(join(ENGINES_DIR, file), join(enginesDir, file));
      chmodSync(join(enginesDir, file), 0o644);
    }
    const workRoot = join(root, 'work');
    mkdirSync(workRoot, { mode: 0o711 });
    await checkKernelUser({
      python: options.python,
      enginesDir,
      driver: engineScript(options.engine, enginesDir),
      kernelUser: options.kernelUser,
      env: kernelEnvironment({ from: process.env, workDir: workRoot, kernelUser: options.kernelUser }),
    });
    return { enginesDir, workRoot, remove: () => rmSync(root, { recursive: true, force: true }) };
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}
