/**
 * Where the engine programs are: the Python drivers and the sandbox in container/engines/. A file
 * location, not a module: the runner and the local server start them as programs.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineName } from './python.ts';

/**
 * container/engines/ in a source checkout. A bundled runner is elsewhere and gets the folder from
 * NOTEBOOK_JOBS_ENGINES_DIR instead (the image sets it; the local server always passes it).
 */
export const ENGINES_DIR = fileURLToPath(new URL('../../container/engines/', import.meta.url));

/** The driver program of an engine. */
export function engineScript(engine: EngineName, dir = ENGINES_DIR): string {
  return join(dir, `${engine}_driver.py`);
}
