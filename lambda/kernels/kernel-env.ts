/**
 * The environment a job's engine and kernel start with: built from an allow-list, never a copy of
 * the runner's (which holds the service's settings and, on AWS, the task role's credentials URI).
 * The one place that decides what a notebook sees of its host's environment.
 */
import { ConfigError, type Env } from '../core/config.ts';
import { isReservedSecretName } from '../core/secrets.ts';

/**
 * Copied when the runner has them. Each is configuration a kernel needs to behave as it would in a
 * terminal, and none carries a credential:
 * - PATH: where `!pip`, `!git`, `dotnet` and the kernels' own launchers are found.
 * - LANG, LANGUAGE (and every LC_*, below), TZ: text encoding, messages and local time.
 * - TMPDIR: where temporary files go (Python falls back to /tmp when it is not writable).
 * - PYTHONPATH, PYTHONDONTWRITEBYTECODE: import path and bytecode setting the operator chose for
 *   notebooks (the image sets the latter because its root filesystem is read-only).
 * - SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE: trust store paths; without them HTTPS from a
 *   notebook fails behind a TLS-inspecting proxy.
 * - JUPYTER_PATH: extra kernelspec folders; the service lists kernels with it, so the engine must
 *   find them with it too. (Not JUPYTER_RUNTIME_DIR / JUPYTER_DATA_DIR: connection files with the
 *   kernel's key belong under the kernel's own HOME.)
 * - CONDA_PREFIX, CONDA_DEFAULT_ENV, CONDA_EXE, CONDA_PYTHON_EXE, CONDA_SHLVL, MAMBA_ROOT_PREFIX,
 *   MAMBA_EXE: locate the active conda environment for `%conda` / `%pip` and for packages that look
 *   up their data under CONDA_PREFIX. Named one by one: conda reads any CONDA_<setting>, which may
 *   hold channel tokens.
 * - NUGET_PACKAGES, NUGET_HTTP_CACHE_PATH, NUGET_PLUGINS_CACHE_PATH: where .NET Interactive's
 *   `#r "nuget: ..."` restores packages. Named one by one: NuGet feed credentials travel in other
 *   variables (NuGetPackageSourceCredentials_*, VSS_NUGET_EXTERNAL_FEED_ENDPOINTS).
 * - POWERSHELL_TELEMETRY_OPTOUT: the .NET PowerShell kernel's telemetry switch.
 */
const NAMES = [
  'PATH',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'PYTHONPATH',
  'PYTHONDONTWRITEBYTECODE',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'REQUESTS_CA_BUNDLE',
  'JUPYTER_PATH',
  'CONDA_PREFIX',
  'CONDA_DEFAULT_ENV',
  'CONDA_EXE',
  'CONDA_PYTHON_EXE',
  'CONDA_SHLVL',
  'MAMBA_ROOT_PREFIX',
  'MAMBA_EXE',
  'NUGET_PACKAGES',
  'NUGET_HTTP_CACHE_PATH',
  'NUGET_PLUGINS_CACHE_PATH',
  'POWERSHELL_TELEMETRY_OPTOUT',
];

/**
 * Families copied whole: LC_* (locale categories) and DOTNET_* (the .NET runtime and SDK: DOTNET_ROOT
 * finds the runtime the .NET Interactive kernels run on; the rest are telemetry, first-run and
 * runtime switches). Neither family has credential variables.
 */
const PREFIXES = ['LC_', 'DOTNET_'];

/**
 * Never given to a kernel, whatever an operator lists: the service's own settings and anything
 * the AWS SDKs and the ECS agent read credentials or endpoints from.
 */
const DENIED_PREFIXES = ['AWS_', 'NOTEBOOK_JOBS_', 'ECS_'];

/** Set for every engine: unbuffered output reaches the log live; no debugger warning per start. */
const FIXED = { PYTHONUNBUFFERED: '1', PYDEVD_DISABLE_FILE_VALIDATION: '1' };

export interface KernelEnvOptions {
  /** The environment to pick from: the runner's own. */
  from: Env;
  /** The job's working folder. */
  workDir: string;
  /**
   * The user the kernel runs as, when it is not the runner's. Its HOME is then the working folder
   * (writable, private to the job and removed with it; `%pip install --user` and NuGet land there),
   * and USER / LOGNAME name it. Unset: the runner's own HOME, USER and LOGNAME.
   */
  kernelUser?: string;
  /** More variable names an operator lets through (NOTEBOOK_JOBS_KERNEL_ENV_PASS); never denied ones. */
  extraNames?: readonly string[];
  /**
   * The job's own variables (its resolved secrets); they win over everything above but the
   * notebook role's. A reserved name (lambda/core/secrets.ts) is refused: submit refuses it already.
   */
  jobVariables?: Readonly<Record<string, string>>;
  /**
   * The AWS variables the runner itself hands the kernel: only its tenant's notebook role, as a
   * credentials file (kernel-credentials.ts). The one way an AWS_* variable reaches a kernel.
   */
  notebookAws?: Readonly<Record<string, string>>;
}

/** Whether a name may never reach a kernel (checked for operator-listed names too). */
export function isDeniedKernelVariable(name: string): boolean {
  return DENIED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** Reads NOTEBOOK_JOBS_KERNEL_ENV_PASS (comma-separated names); a denied name is a ConfigError. */
export function kernelEnvPass(env: Env): string[] {
  const names = (env.NOTEBOOK_JOBS_KERNEL_ENV_PASS ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new ConfigError(`NOTEBOOK_JOBS_KERNEL_ENV_PASS: not a variable name: "${name}"`);
    if (isDeniedKernelVariable(name))
      throw new ConfigError(`NOTEBOOK_JOBS_KERNEL_ENV_PASS: ${name} is never passed to kernels`);
  }
  return names;
}

/** The engine's and kernel's environment for one job. */
export function kernelEnvironment(options: KernelEnvOptions): Record<string, string> {
  const { from, kernelUser } = options;
  const env: Record<string, string> = {};
  const copy = (name: string) => {
    const value = from[name];
    if (value !== undefined && !isDeniedKernelVariable(name)) env[name] = value;
  };
  for (const name of [...NAMES, ...(options.extraNames ?? [])]) copy(name);
  for (const name of Object.keys(from)) if (PREFIXES.some((prefix) => name.startsWith(prefix))) copy(name);
  if (kernelUser) {
    Object.assign(env, { HOME: options.workDir, USER: kernelUser, LOGNAME: kernelUser });
  } else {
    for (const name of ['HOME', 'USER', 'LOGNAME']) copy(name);
  }
  for (const name of Object.keys(options.jobVariables ?? {}))
    if (isReservedSecretName(name) || isDeniedKernelVariable(name))
      throw new Error(`${name} is reserved and cannot be a job's variable`);
  return { ...env, ...FIXED, ...options.jobVariables, ...options.notebookAws };
}
