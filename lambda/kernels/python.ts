/**
 * Finding the Python that runs notebooks, explicitly: a configured interpreter, else the first
 * candidate that can import nbclient and ipykernel. Never "whatever python3 is first on PATH".
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KernelCatalog, KernelInfo } from '../core/ports.ts';

const run = promisify(execFile);

export type EngineName = 'nbclient' | 'papermill';

export interface PythonEnvironment {
  python: string;
  engine: EngineName;
  kernels: KernelInfo[];
}

/** Interpreters tried in order when none is configured. */
export const PYTHON_CANDIDATES = ['/usr/bin/python3', '/opt/conda/bin/python', 'python3', 'python'];

const PROBE = `
import json, importlib.util as u
from jupyter_client.kernelspec import KernelSpecManager
specs = KernelSpecManager().get_all_specs()
print(json.dumps({
  "papermill": u.find_spec("papermill") is not None,
  "kernels": [{"name": n, "language": s["spec"].get("language", ""), "display_name": s["spec"].get("display_name", n)}
              for n, s in sorted(specs.items())],
}))
`;

async function probe(python: string): Promise<{ papermill: boolean; kernels: KernelInfo[] } | null> {
  try {
    await run(python, ['-c', 'import nbclient, ipykernel'], { timeout: 30_000 });
    const { stdout } = await run(python, ['-c', PROBE], { timeout: 30_000 });
    return JSON.parse(stdout) as { papermill: boolean; kernels: KernelInfo[] };
  } catch {
    return null;
  }
}

/**
 * Resolves the interpreter and engine. `configured` (NOTEBOOK_JOBS_PYTHON) must work if given;
 * `engine` forces one (NOTEBOOK_JOBS_ENGINE), else papermill when importable.
 */
export async function findPython(
  options: { configured?: string; engine?: EngineName | 'auto' } = {},
): Promise<PythonEnvironment> {
  const candidates = options.configured ? [options.configured] : PYTHON_CANDIDATES;
  for (const python of candidates) {
    const found = await probe(python);
    if (!found) continue;
    const wanted = options.engine ?? 'auto';
    if (wanted === 'papermill' && !found.papermill) {
      throw new Error(`NOTEBOOK_JOBS_ENGINE=papermill but ${python} cannot import papermill`);
    }
    const engine: EngineName = wanted === 'auto' ? (found.papermill ? 'papermill' : 'nbclient') : wanted;
    return { python, engine, kernels: found.kernels };
  }
  throw new Error(
    options.configured
      ? `NOTEBOOK_JOBS_PYTHON=${options.configured} cannot import nbclient and ipykernel`
      : `no Python that can import nbclient and ipykernel was found (tried ${candidates.join(', ')}); ` +
          'install them (Debian: apt-get install python3-nbclient python3-ipykernel) or set NOTEBOOK_JOBS_PYTHON',
  );
}

/** A kernel catalog fixed at start-up from the probed environment. */
export function staticKernelCatalog(kernels: KernelInfo[]): KernelCatalog {
  return { list: async () => kernels };
}
