/**
 * The runner's side of secrets (lambda/core/secrets.ts): resolving a job's references just before
 * its kernel starts, and putting the real values of its redacted parameters back into the notebook
 * it runs. Every value found is added to the job's Redactor first, so nothing stored afterwards
 * can carry it. A reference that cannot be resolved fails the job with an error naming the
 * reference, never a value.
 */
import { constants, readlinkSync, realpathSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { Env } from '../../lambda/core/config.ts';
import { errorMessage } from '../../lambda/core/errors.ts';
import { inputKey, type JobRecord } from '../../lambda/core/job.ts';
import {
  checkSecretReference,
  MAX_SECRET_BYTES,
  MIN_SECRET_CHARS,
  REDACTED_PARAMETERS_FILE,
  redactedValueText,
  type SecretPolicy,
  type SecretScheme,
} from '../../lambda/core/secrets.ts';
import type { Artifacts } from '../../lambda/core/ports.ts';
import { cellTags, executableCodeCells, type Notebook } from '../../lambda/notebook/notebook.ts';
import {
  INJECTED_PARAMETERS_TAG,
  injectParameters,
  languageForKernel,
} from '../../lambda/notebook/parameters.ts';
import type { Redactor } from './redact.ts';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import { secretReaderSession, type JobScope } from './job-credentials.ts';

/** Where this runner can find secrets: what its deployment configured. */
export interface SecretSources {
  /** `env:`: the runner's environment (the service's), and the prefix names must have. */
  env?: { from: Env; prefix: string };
  /** `file:`: the operator's secrets folder. */
  secretsDir?: string;
  /** `secretsmanager:`: reads a secret's SecretString (undefined when it has none). */
  secretsManager?: (secretId: string) => Promise<string | undefined>;
  /** `ssm:`: reads a parameter's value, decrypted. */
  ssm?: (name: string) => Promise<string | undefined>;
}

/**
 * AWS mode: Secrets Manager secrets and Parameter Store parameters (SecureString values
 * decrypted), each read with a runner role session whose policy names that one secret or
 * parameter (job-credentials.ts secretReaderPolicy).
 */
export function awsSecretSources(
  sts: STSClient,
  scope: Pick<JobScope, 'runnerRoleArn' | 'region' | 'tenant' | 'jobId'>,
): SecretSources {
  return {
    secretsManager: async (secretId) => {
      const session = secretReaderSession(sts, scope, { scheme: 'secretsmanager', target: secretId });
      const client = new SecretsManagerClient({ region: scope.region, credentials: session.provider });
      try {
        return (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
      } finally {
        client.destroy();
      }
    },
    ssm: async (name) => {
      const session = secretReaderSession(sts, scope, { scheme: 'ssm', target: name });
      const client = new SSMClient({ region: scope.region, credentials: session.provider });
      try {
        const out = await client.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
        return out.Parameter?.Value;
      } finally {
        client.destroy();
      }
    },
  };
}

/** A job's secret or redacted parameter that cannot be had; the message names it, never a value. */
export class SecretUnavailableError extends Error {}

/** The reference schemes these sources resolve (the runner's copy of the deployment's policy). */
export function sourcePolicy(sources: SecretSources): SecretPolicy {
  const schemes: SecretScheme[] = [];
  if (sources.env) schemes.push('env');
  if (sources.secretsDir) schemes.push('file');
  if (sources.secretsManager) schemes.push('secretsmanager');
  if (sources.ssm) schemes.push('ssm');
  return { schemes, envPrefix: sources.env?.prefix ?? '' };
}

/**
 * Resolves every secret of a job: variable name -> value, each value added to `redactor`. The
 * references are checked again against the job's tenant (the record could be older than a rule, or
 * written by someone else than the api).
 */
export async function resolveSecrets(
  job: Pick<JobRecord, 'tenant' | 'secrets'>,
  sources: SecretSources,
  redactor: Redactor,
): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  const policy = sourcePolicy(sources);
  for (const [name, reference] of Object.entries(job.secrets ?? {})) {
    const fail = (why: string) => new SecretUnavailableError(`secret ${name} (${reference}): ${why}`);
    let parsed;
    try {
      parsed = checkSecretReference(job.tenant, name, reference, policy);
    } catch (error) {
      throw fail(errorMessage(error).replace(/^secrets\.\w+: /, ''));
    }
    let value: string | undefined;
    try {
      value = await read(parsed.scheme, parsed.target, sources);
    } catch (error) {
      if (error instanceof SecretUnavailableError) throw fail(error.message);
      throw fail(`cannot be read (${awsErrorName(error) ?? 'read failed'})`);
    }
    if (value === undefined) throw fail('has no text value');
    if (value.includes('\0')) throw fail('holds a NUL character, which an environment variable cannot');
    if (Buffer.byteLength(value) > MAX_SECRET_BYTES) throw fail(`is larger than ${MAX_SECRET_BYTES} bytes`);
    if (value.length < MIN_SECRET_CHARS)
      throw fail(`is shorter than ${MIN_SECRET_CHARS} characters, too short to redact reliably from outputs`);
    redactor.add(name, value);
    values[name] = value;
  }
  return values;
}

async function read(
  scheme: SecretScheme,
  target: string,
  sources: SecretSources,
): Promise<string | undefined> {
  switch (scheme) {
    case 'env': {
      const value = sources.env?.from[target];
      if (value === undefined) throw new SecretUnavailableError("is not set in the service's environment");
      return value;
    }
    case 'file':
      return readSecretFile(sources.secretsDir as string, target);
    case 'secretsmanager':
      return (sources.secretsManager as NonNullable<SecretSources['secretsManager']>)(target);
    case 'ssm':
      return (sources.ssm as NonNullable<SecretSources['ssm']>)(target);
  }
}

/** The AWS SDK's error name (ResourceNotFoundException, AccessDeniedException...), never its message. */
function awsErrorName(error: unknown): string | undefined {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name !== 'Error' ? name : undefined;
}

function within(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * A file under the secrets folder, checked on the file actually opened (its real path read back
 * from the descriptor), so a link leading out, or swapped in between a check and the read, is
 * refused. One trailing newline is dropped: `echo secret > file` writes one.
 */
export async function readSecretFile(secretsDir: string, target: string): Promise<string> {
  const root = realpathSync(secretsDir);
  const path = resolve(root, target);
  if (!within(root, path)) throw new SecretUnavailableError('is outside the secrets folder');
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new SecretUnavailableError(
      code === 'ENOENT' || code === 'ENOTDIR'
        ? 'no such file in the secrets folder'
        : `cannot be opened (${code})`,
    );
  }
  try {
    let real: string;
    try {
      real = readlinkSync(`/proc/self/fd/${handle.fd}`);
    } catch {
      real = realpathSync(path);
    }
    if (!within(root, real)) throw new SecretUnavailableError('leads outside the secrets folder');
    const stat = await handle.stat();
    if (!stat.isFile()) throw new SecretUnavailableError('is not a file');
    if (stat.size > MAX_SECRET_BYTES + 2)
      throw new SecretUnavailableError(`is larger than ${MAX_SECRET_BYTES} bytes`);
    return (await handle.readFile('utf8')).replace(/\r?\n$/, '');
  } finally {
    await handle.close();
  }
}

/**
 * The notebook to run for a job with redacted parameters: the stored one (which shows
 * `[redacted]`) with the real values injected again, read from the job's input folder and added to
 * `redactor`. Only the injected cell's text differs; the notebook's metadata keeps the redacted
 * values, so the executed notebook does too.
 */
export async function withRedactedParameters(
  job: Pick<JobRecord, 'job_id' | 'tenant' | 'kernel' | 'language' | 'parameters' | 'redact_parameters'>,
  stored: Notebook,
  artifacts: Artifacts,
  redactor: Redactor,
): Promise<Notebook> {
  const names = job.redact_parameters ?? [];
  if (names.length === 0) return stored;
  let values: Record<string, unknown>;
  try {
    const uri = artifacts.uriFor(inputKey(job.tenant, job.job_id, REDACTED_PARAMETERS_FILE));
    values = JSON.parse((await artifacts.read(uri)).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SecretUnavailableError(
      `the values of the redacted parameters ${names.join(', ')} are gone (they are deleted once the job has run)`,
    );
  }
  for (const name of names) {
    const text = redactedValueText(values[name]);
    if (text === null)
      throw new SecretUnavailableError(`the value of the redacted parameter ${name} is missing`);
    redactor.add(name, text);
  }
  const language = languageForKernel(job.kernel, job.language);
  if (!language) throw new Error(`cannot render parameters for language ${job.language}`);
  const real = Object.fromEntries(names.map((name) => [name, values[name]]));
  const injected = injectParameters(stored, { ...job.parameters, ...real }, language, job.kernel);
  if (executableCodeCells(injected).length !== executableCodeCells(stored).length)
    throw new Error('putting the redacted parameters back changed the notebook');
  return { ...injected, metadata: stored.metadata };
}

/**
 * The executed notebook as it may be stored for a job with secrets or redacted parameters: its
 * injected cell's text as stored (`[redacted]`, not the values the kernel ran with), consecutive
 * stream outputs of a cell joined (as Jupyter shows them; a value printed in pieces is then whole
 * again), and every occurrence of a value redacted. Parses the notebook: only for such jobs, and
 * after the output limit has bounded its size. A notebook that does not parse (cut short) still
 * gets its values redacted as text.
 */
export function redactedNotebook(body: Buffer, stored: Notebook, redactor: Redactor): Buffer {
  if (!redactor.active) return body;
  let executed: Notebook;
  try {
    executed = JSON.parse(body.toString('utf8')) as Notebook;
  } catch {
    return redactor.buffer(body);
  }
  const storedCell = stored.cells.find((cell) => cellTags(cell).includes(INJECTED_PARAMETERS_TAG));
  for (const cell of executed.cells ?? []) {
    if (storedCell && Array.isArray(cell.metadata?.tags) && cellTags(cell).includes(INJECTED_PARAMETERS_TAG))
      cell.source = storedCell.source;
    if (Array.isArray(cell.outputs)) cell.outputs = joinedStreams(cell.outputs);
  }
  return redactor.buffer(Buffer.from(JSON.stringify(executed, null, 1)));
}

const streamText = (text: unknown) => (Array.isArray(text) ? text.join('') : String(text ?? ''));

/** Consecutive stream outputs of one stream as one output (nbconvert's coalesce_streams, without its \r handling). */
function joinedStreams(outputs: NonNullable<Notebook['cells'][number]['outputs']>) {
  const joined: typeof outputs = [];
  for (const output of outputs) {
    const last = joined.at(-1);
    if (output.output_type === 'stream' && last?.output_type === 'stream' && last.name === output.name)
      joined[joined.length - 1] = { ...last, text: streamText(last.text) + streamText(output.text) };
    else joined.push(output);
  }
  return joined;
}

/** Also used by the runner when a job ends, or is found already ended (lambda/core/secrets.ts). */
export { dropRedactedValues } from '../../lambda/core/secrets.ts';
