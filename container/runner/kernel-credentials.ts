/**
 * The only AWS credentials a kernel ever gets: its tenant's notebook role, as a shared credentials
 * file the kernel user can read but not change, named by AWS_SHARED_CREDENTIALS_FILE and rewritten
 * before the credentials expire (role chaining caps them at one hour). Without a notebook role the
 * kernel gets no AWS variable and no file: no AWS credentials at all.
 */
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../lambda/core/errors.ts';
import type { AssumedRole, Credentials } from './job-credentials.ts';

/** What the runner gives a job's kernel: variables for its environment, and how to take them back. */
export interface KernelAwsAccess {
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** Retry after a failed refresh; the old credentials stay in place until they expire. */
const RETRY_MS = 60_000;
/** Never rewrite more often than this, whatever the expiry says. */
const MIN_REFRESH_MS = 30_000;

/** A shared credentials file with one `[default]` profile. */
export function credentialsFileText(credentials: Credentials): string {
  const values = [credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken];
  // Values come from STS; a line break in one would let it add settings to the file.
  if (values.some((value) => /[\r\n]/.test(value)))
    throw new Error('STS returned credentials with a line break');
  return [
    '[default]',
    `aws_access_key_id = ${credentials.accessKeyId}`,
    `aws_secret_access_key = ${credentials.secretAccessKey}`,
    `aws_session_token = ${credentials.sessionToken}`,
    '',
  ].join('\n');
}

/**
 * Writes the notebook role's credentials into `folder` (created fresh, the runner's, mode 0755: the
 * kernel user may read the file and nothing else may be put there) and keeps them fresh until
 * stop(). The folder must not be inside the kernel's working folder, where the kernel could put a
 * link in the file's place.
 */
export async function notebookRoleCredentials(options: {
  role: AssumedRole;
  folder: string;
  region: string | undefined;
  log: (text: string) => void;
  now?: () => number;
}): Promise<KernelAwsAccess> {
  const { role, folder, log } = options;
  const now = options.now ?? Date.now;
  const file = join(folder, 'credentials');
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder, { recursive: true, mode: 0o755 });
  await chmod(folder, 0o755); // whatever the umask
  const write = async () => {
    const text = credentialsFileText(await role.provider());
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, text, { mode: 0o644 });
    await chmod(temporary, 0o644);
    await rename(temporary, file); // readers see the old file or the new one, never half of one
  };
  await write();

  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const schedule = (delay: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      write().then(
        () => schedule(nextRefresh()),
        (error: unknown) => {
          log(`could not refresh the notebook role's credentials (retrying): ${errorMessage(error)}`);
          schedule(RETRY_MS);
        },
      );
    }, delay);
    timer.unref();
  };
  const nextRefresh = () => Math.max(MIN_REFRESH_MS, (role.refreshDueAt() ?? now()) - now());
  schedule(nextRefresh());

  const env: Record<string, string> = { AWS_SHARED_CREDENTIALS_FILE: file };
  if (options.region) Object.assign(env, { AWS_REGION: options.region, AWS_DEFAULT_REGION: options.region });
  return {
    env,
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await rm(folder, { recursive: true, force: true });
    },
  };
}
