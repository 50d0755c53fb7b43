/**
 * Secrets by reference and sensitive parameters: what a job may ask for, checked at submit.
 *
 * A job names secrets as `{"DB_PASSWORD": "<reference>"}`. The job record keeps only the
 * references; the runner resolves them just before the kernel starts (container/runner/secrets.ts)
 * and hands the values to the kernel as environment variables. Which references a deployment
 * resolves, and which of them a tenant may name, is decided here, once, for REST and MCP alike:
 * - `env:<VARIABLE>` (local): a variable of the service's environment whose name starts with the
 *   operator's prefix (`serve --secret-env-prefix`, default NOTEBOOK_SECRET_);
 * - `file:<relative path>` (local): a file under the operator's secrets folder (`--secrets-dir`);
 * - `secretsmanager:<name or ARN>` (AWS): a secret named `notebook-jobs/<tenant>/...`;
 * - `ssm:<parameter path>` (AWS): a parameter under `/notebook-jobs/<tenant>/`.
 * So a tenant can name only its own secrets; the runner checks the same rules again, and on AWS its
 * credentials can read only the secrets its job names (job-credentials.ts).
 */
import { InvalidRequestError } from './errors.ts';
import { inputKey, type JobRecord } from './job.ts';
import { jobFields, type LogFn } from './logging.ts';
import type { Artifacts } from './ports.ts';

export const SECRET_SCHEMES = ['env', 'file', 'secretsmanager', 'ssm'] as const;
export type SecretScheme = (typeof SECRET_SCHEMES)[number];

/** What a deployment resolves: its reference schemes, and the prefix of `env:` names. */
export interface SecretPolicy {
  schemes: readonly SecretScheme[];
  /** `env:` references must name a variable starting with this (and longer than it). */
  envPrefix: string;
}

export const DEFAULT_SECRET_ENV_PREFIX = 'NOTEBOOK_SECRET_';

/** Without configuration a deployment resolves no secrets: each entry point names its schemes. */
export const NO_SECRETS: SecretPolicy = { schemes: [], envPrefix: DEFAULT_SECRET_ENV_PREFIX };

/**
 * The shortest secret value (and redacted parameter text) accepted. Redaction replaces every
 * occurrence of a value in outputs and logs; a value of 1-3 characters occurs by chance in almost
 * any text, so redacting it would garble the output and still leak it by the pattern of what was
 * replaced. Such a value is refused (a secret at resolution, failing the job; a parameter at submit).
 */
export const MIN_SECRET_CHARS = 4;
/** The largest secret value the runner hands a kernel (an environment variable, not a file). */
export const MAX_SECRET_BYTES = 64 * 1024;
export const MAX_SECRETS = 32;

/** The folder-like prefix under which a tenant's AWS secrets and parameters must be named. */
export const AWS_SECRET_ROOT = 'notebook-jobs';
export const awsSecretPrefix = (tenant: string) => `${AWS_SECRET_ROOT}/${tenant}/`;
export const ssmParameterPrefix = (tenant: string) => `/${AWS_SECRET_ROOT}/${tenant}/`;

/** The text a redacted parameter's value is replaced with in the stored notebook and the job view. */
export const REDACTED = '[redacted]';
/** What an occurrence of a secret (or redacted parameter) value becomes in outputs and logs. */
export const redactionMark = (name: string) => `[redacted:${name}]`;

export const SECRET_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * Names a secret may not take: variables that change how the kernel, its language runtime, the
 * dynamic linker or the shell behave, and the families the kernel's environment never carries
 * (lambda/kernels/kernel-env.ts). A secret named PATH or LD_PRELOAD would be a way to run code.
 */
const RESERVED_NAMES = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'PWD',
  'OLDPWD',
  'TMPDIR',
  'TMP',
  'TEMP',
  'LANG',
  'LANGUAGE',
  'TZ',
  'IFS',
  'ENV',
  'BASH_ENV',
  'PS4',
  'TERM',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'NODE_OPTIONS',
  'NODE_PATH',
  'PERL5LIB',
  'PERL5OPT',
  'RUBYOPT',
  'RUBYLIB',
  'GCONV_PATH',
  'HOSTALIASES',
  'LOCALDOMAIN',
  'RES_OPTIONS',
  'POWERSHELL_TELEMETRY_OPTOUT',
]);
const RESERVED_PREFIXES = [
  'LD_',
  'DYLD_',
  'LC_',
  'PYTHON',
  'PYDEVD_',
  'IPYTHON',
  'JUPYTER',
  'JPY_',
  'AWS_',
  'NOTEBOOK_JOBS_',
  'ECS_',
  'CONDA_',
  'MAMBA_',
  'DOTNET_',
  'NUGET_',
  'SSL_',
  'MALLOC_',
  'BASH_FUNC_',
];

/** Whether a secret may not use this variable name. */
export function isReservedSecretName(name: string): boolean {
  const upper = name.toUpperCase();
  return RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.some((prefix) => upper.startsWith(prefix));
}

/**
 * Checks an operator's `env:` prefix: a variable-name prefix of at least 3 characters that no
 * reserved name or family starts with, and that starts no reserved family (a prefix NOTEBOOK_ would
 * let jobs read NOTEBOOK_JOBS_TOKEN). Returns an error message, or null when it is fine.
 */
export function secretEnvPrefixProblem(prefix: string): string | null {
  if (!/^[A-Za-z_][A-Za-z0-9_]{2,63}$/.test(prefix))
    return `"${prefix}" is not a variable name prefix of 3 to 64 characters`;
  const upper = prefix.toUpperCase();
  const clash =
    isReservedSecretName(prefix) ||
    RESERVED_PREFIXES.some((reserved) => reserved.startsWith(upper)) ||
    [...RESERVED_NAMES].some((reserved) => reserved.startsWith(upper));
  return clash ? `"${prefix}" would let jobs read the service's own or reserved variables` : null;
}

export interface SecretReference {
  scheme: SecretScheme;
  /** What follows `<scheme>:`. */
  target: string;
}

/** A relative path of plain names: what a `file:` reference may say. */
const FILE_TARGET = /^[A-Za-z0-9_.@+-]+(\/[A-Za-z0-9_.@+-]+)*$/;
const ENV_TARGET = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** Secrets Manager names: letters, digits and /_+=.@- (no wildcard, so none reaches a policy). */
const SM_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const SM_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):secretsmanager:([a-z0-9-]+):(\d{12}):secret:([A-Za-z0-9/_+=.@-]{1,512})$/;
/**
 * Parameter Store names: letters, digits and _.-/ ; at most 640 characters (Parameter Store takes
 * 1,011), so the reader's session policy, which names the parameter twice, stays within STS's limit.
 */
const SSM_PATH = /^\/[A-Za-z0-9_.\-/]{1,639}$/;

/** The secret's name inside a Secrets Manager reference (the ARN's resource part, with its suffix). */
export function secretsManagerName(target: string): string {
  return SM_ARN.exec(target)?.[4] ?? target;
}

export function isSecretsManagerArn(target: string): boolean {
  return SM_ARN.test(target);
}

const hasDotSegment = (path: string) => path.split('/').some((s) => s === '.' || s === '..');

/**
 * Parses one reference and checks that `tenant` may name it in a deployment with `policy`; throws
 * InvalidRequestError saying what may be named. Never echoes more than the reference itself.
 */
export function checkSecretReference(
  tenant: string,
  name: string,
  reference: string,
  policy: SecretPolicy,
): SecretReference {
  const colon = reference.indexOf(':');
  const scheme = reference.slice(0, colon) as SecretScheme;
  const target = reference.slice(colon + 1);
  const problem = (why: string) =>
    new InvalidRequestError(`secrets.${name}: ${why}`, { secret: name, reference });
  if (colon < 0 || !SECRET_SCHEMES.includes(scheme))
    throw problem(
      `"${reference}" is not a secret reference; use one of ${SECRET_SCHEMES.map((s) => `${s}:...`).join(', ')}`,
    );
  if (!policy.schemes.includes(scheme))
    throw problem(
      `${scheme}: references are not resolved by this deployment; it resolves ${
        policy.schemes.map((s) => `${s}:`).join(', ') || 'no secrets'
      }`,
    );
  switch (scheme) {
    case 'env':
      if (!ENV_TARGET.test(target) || !target.startsWith(policy.envPrefix) || target === policy.envPrefix)
        throw problem(
          `env: references may name only variables whose names start with ${policy.envPrefix} (the service's secret prefix)`,
        );
      break;
    case 'file':
      if (!FILE_TARGET.test(target) || hasDotSegment(target) || target.length > 1024)
        throw problem(
          'file: references are relative paths of plain names under the secrets folder (no leading /, no . or .. segments)',
        );
      break;
    case 'secretsmanager': {
      const secret = secretsManagerName(target);
      if (
        (!SM_NAME.test(target) && !SM_ARN.test(target)) ||
        hasDotSegment(secret) ||
        !secret.startsWith(awsSecretPrefix(tenant)) ||
        secret === awsSecretPrefix(tenant)
      )
        throw problem(
          `secretsmanager: references must name a secret ${awsSecretPrefix(tenant)}<name> (or its ARN): a tenant may reference only its own secrets`,
        );
      break;
    }
    case 'ssm':
      if (
        !SSM_PATH.test(target) ||
        hasDotSegment(target) ||
        !target.startsWith(ssmParameterPrefix(tenant)) ||
        target === ssmParameterPrefix(tenant)
      )
        throw problem(
          `ssm: references must name a parameter ${ssmParameterPrefix(tenant)}<name>: a tenant may reference only its own parameters`,
        );
      break;
  }
  return { scheme, target };
}

/** Checks a job's `secrets` (names and references) for `tenant`; throws InvalidRequestError. */
export function checkSecrets(
  tenant: string,
  secrets: Readonly<Record<string, string>>,
  policy: SecretPolicy,
): void {
  const names = Object.keys(secrets);
  if (names.length > MAX_SECRETS)
    throw new InvalidRequestError(
      `a job may name at most ${MAX_SECRETS} secrets; this one names ${names.length}`,
    );
  for (const name of names) {
    if (!SECRET_NAME_PATTERN.test(name))
      throw new InvalidRequestError(`secrets: "${name}" is not an environment variable name`, {
        secret: name,
      });
    if (isReservedSecretName(name))
      throw new InvalidRequestError(
        `secrets: ${name} is a reserved variable name (it changes how the kernel or its runtime behaves, or belongs to the service); choose another name`,
        { secret: name },
      );
    checkSecretReference(tenant, name, secrets[name] as string, policy);
  }
}

/**
 * The text of a redacted parameter's value, as it is searched for in outputs and logs: a string
 * itself, a number its JSON text. Other values (booleans, null, lists, objects) and values shorter
 * than MIN_SECRET_CHARS cannot be redacted reliably, so they are refused at submit.
 */
export function redactedValueText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return JSON.stringify(value);
  return null;
}

/** Checks `redact_parameters` against the request's parameters; throws InvalidRequestError. */
export function checkRedactParameters(
  names: readonly string[],
  parameters: Readonly<Record<string, unknown>>,
): void {
  for (const name of names) {
    if (!(name in parameters))
      throw new InvalidRequestError(
        `redact_parameters: ${name} is not among the job's parameters (${Object.keys(parameters).join(', ') || 'none'})`,
        { parameter: name },
      );
    const text = redactedValueText(parameters[name]);
    if (text === null)
      throw new InvalidRequestError(
        `redact_parameters: ${name} must be a string or a number to be redacted (it is searched for in outputs and logs)`,
        { parameter: name },
      );
    if (text.length < MIN_SECRET_CHARS)
      throw new InvalidRequestError(
        `redact_parameters: the value of ${name} is shorter than ${MIN_SECRET_CHARS} characters, too short to redact reliably`,
        { parameter: name, min_chars: MIN_SECRET_CHARS },
      );
  }
}

/** The parameters with each redacted one's value replaced by REDACTED (for the record and the stored notebook). */
export function redactedParameters(
  parameters: Readonly<Record<string, unknown>>,
  names: readonly string[],
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(parameters).map(([name, value]) => [name, names.includes(name) ? REDACTED : value]),
  );
}

/**
 * Where a job's redacted parameter values wait for its runner: an object in the job's input folder
 * (readable by that job's runner only), never the job record. The runner deletes it when the job
 * ends; the service when it ends a job itself (lifecycle.ts: a queued job cancelled or never
 * launched, a lost runner); deleting the job removes it too.
 */
export const REDACTED_PARAMETERS_FILE = 'redacted-parameters.json';

/**
 * Deletes a job's redacted parameter values (REDACTED_PARAMETERS_FILE), if it has any. A failure
 * is logged, not thrown: the job's end stands, and the object goes with the job at the latest.
 */
export async function dropRedactedValues(job: JobRecord, artifacts: Artifacts, log: LogFn): Promise<void> {
  if (!job.redact_parameters?.length) return;
  try {
    await artifacts.delete(inputKey(job.tenant, job.job_id, REDACTED_PARAMETERS_FILE));
  } catch (error) {
    log('deleting the redacted parameter values failed', { ...jobFields(job), error });
  }
}
