/**
 * The service's settings, each written once: its default, its bounds, the environment variable
 * that sets it (and the name it had before, still read with a warning), and the CDK context key
 * when the stack sets it. Read by `serve` (bin/serve.ts, lambda/local/local-server.ts), the AWS
 * entry points (lambda/aws/config.ts), the runner (container/runner/config.ts) and the stack
 * (lib/stack-config.ts), so a default or a bound cannot differ between them. README.md and
 * docs/deploy.md list them.
 */
import { intEnv, withRenamed, type Env } from './config.ts';
import { DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES } from './job.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An integer setting. */
export interface IntSetting {
  /** The environment variable that sets it; none for a setting only the stack takes. */
  readonly variable?: string;
  /** The variable's former name: still read, with a warning to rename it. */
  readonly oldVariable?: string;
  /** The CDK context key, for settings the stack takes (cdk.json `context`, `-c key=value`). */
  readonly context?: string;
  readonly default: number;
  readonly min: number;
  readonly max: number;
}

export const SETTINGS = {
  /** Jobs running at once per deployment; more wait queued (DESIGN 4, Concurrency). */
  maxConcurrentJobs: {
    variable: 'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS',
    oldVariable: 'NOTEBOOK_JOBS_MAX_CONCURRENT',
    context: 'maxConcurrentJobs',
    default: 5,
    min: 1,
    max: 1000,
  },
  /** Days an ended job, its notebooks, its idempotency key and a revoked token are kept. */
  retentionDays: {
    variable: 'NOTEBOOK_JOBS_RETENTION_DAYS',
    context: 'retentionDays',
    default: 30,
    min: 1,
    max: 3650,
  },
  /**
   * Days Lambda, task and API logs are kept (stack only; must also be one of CloudWatch Logs'
   * retention values, which lib/stack-config.ts checks). A month, as for the jobs themselves.
   */
  logRetentionDays: {
    context: 'logRetentionDays',
    default: 30,
    min: 1,
    max: 3653,
  },
  /** Local kernels of the default kernel started ahead of demand, one job each (`serve --warm-kernels`). */
  warmKernels: { variable: 'NOTEBOOK_JOBS_WARM_KERNELS', default: 1, min: 0, max: 32 },
  /** The local server's port (`serve --port`); the CLI's default URL points at it. */
  port: { variable: 'NOTEBOOK_JOBS_PORT', default: 8080, min: 0, max: 65535 },
  /** Minimum time between the runner's progress writes (stage changes are written at once). */
  progressIntervalMs: {
    variable: 'NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS',
    default: 2000,
    min: 0,
    max: 600_000,
  },
  /** Log bytes kept per job; past it one line says so and output is dropped (a million typical lines). */
  maxLogBytes: {
    variable: 'NOTEBOOK_JOBS_MAX_LOG_BYTES',
    default: 64 * MiB,
    min: 4 * KiB,
    max: Number.MAX_SAFE_INTEGER,
  },
  /**
   * UTF-8 bytes of text in one log line: a screenful many times over (the engines send output in
   * pieces of this size too). At most 128 KiB, so a line stays under the log readers' 1 MiB
   * whole-line limit even when JSON escaping makes every byte six.
   */
  maxLogLineBytes: {
    variable: 'NOTEBOOK_JOBS_MAX_LOG_LINE_BYTES',
    default: 64 * KiB,
    min: 256,
    max: 128 * KiB,
  },
  /** Largest executed notebook saved as is; a larger one fails the job and is saved cut down. */
  maxOutputBytes: {
    variable: 'NOTEBOOK_JOBS_MAX_OUTPUT_BYTES',
    default: DEFAULT_MAX_OUTPUT_NOTEBOOK_BYTES,
    min: KiB,
    max: 1024 * MiB,
  },
  /**
   * How long a job keeps waiting queued while its launches meet no capacity, the account's quota or
   * throttling (AWS: Fargate), counted from the first such try; a try failing after it fails the
   * job (`infrastructure`). Long enough for Fargate capacity to come back, short enough that a
   * caller hears of a real shortage within a coffee break.
   */
  launchDeadlineSeconds: {
    variable: 'NOTEBOOK_JOBS_LAUNCH_DEADLINE_SECONDS',
    default: 15 * 60,
    min: 0,
    max: 24 * 3600,
  },
  /**
   * Runs of one job, the first included: a run lost to infrastructure (Fargate Spot interruption,
   * a task that failed to start) is requeued as a new attempt until this many ran; the last loss
   * fails the job. Notebook errors are never retried.
   */
  maxAttempts: { variable: 'NOTEBOOK_JOBS_MAX_ATTEMPTS', default: 3, min: 1, max: 10 },
  /** Files a job may bring (input files: a folder, a list of paths, an archive or an s3:// prefix). */
  maxInputFiles: { variable: 'NOTEBOOK_JOBS_MAX_INPUT_FILES', default: 1000, min: 1, max: 100_000 },
  /** Total bytes of a job's input files, counted as unpacked (an archive's actual output, not its headers). */
  maxInputFilesBytes: {
    variable: 'NOTEBOOK_JOBS_MAX_INPUT_FILES_BYTES',
    default: 100 * MiB,
    min: KiB,
    max: 10 * 1024 * MiB,
  },
  /** Files kept of those a notebook creates or changes in its working folder; past it, the first ones. */
  maxOutputFiles: { variable: 'NOTEBOOK_JOBS_MAX_OUTPUT_FILES', default: 100, min: 0, max: 10_000 },
  /** Total bytes of the output files kept. */
  maxOutputFilesBytes: {
    variable: 'NOTEBOOK_JOBS_MAX_OUTPUT_FILES_BYTES',
    default: 100 * MiB,
    min: 0,
    max: 10 * 1024 * MiB,
  },
} as const satisfies Record<string, IntSetting>;

/**
 * Browser origins the MCP endpoint (locally: every route) accepts besides its own, comma-separated.
 * The old name dates from when only /mcp checked origins.
 */
export const ALLOWED_ORIGINS = {
  variable: 'NOTEBOOK_JOBS_ALLOWED_ORIGINS',
  oldVariable: 'NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS',
} as const;

/**
 * Local secrets (lambda/core/secrets.ts): the prefix of the service's environment variables jobs
 * may name as `env:` secrets (`serve --secret-env-prefix`), and the folder `file:` secrets are read
 * from (`serve --secrets-dir`; unset: no `file:` secrets). The runner reads the same variables.
 */
export const SECRET_ENV_PREFIX = {
  variable: 'NOTEBOOK_JOBS_SECRET_ENV_PREFIX',
  default: 'NOTEBOOK_SECRET_',
} as const;
export const SECRETS_DIR = { variable: 'NOTEBOOK_JOBS_SECRETS_DIR' } as const;

/** A job's `timeout_seconds` when the request names none (DESIGN 4, Timeouts). */
export const DEFAULT_TIMEOUT_SECONDS = 3600;
/** The longest `timeout_seconds` and `cell_timeout_seconds` a request may ask for: 7 days. */
export const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;

/**
 * Lambda's payload limit for a synchronous invocation: 6 MB for the whole event, in which API
 * Gateway's proxy integration carries the request body as one JSON string ("Invocation payload
 * (request and response)", https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html;
 * Lambda's error names 6291556 bytes, so 6 MiB is the limit's own size).
 */
export const LAMBDA_PAYLOAD_BYTES = 6 * MiB;

/**
 * What a proxy event holds besides the body, at most: the headers twice (`headers` and
 * `multiValueHeaders`, each up to API Gateway's 10 KiB of headers, escaped), the query string twice,
 * the path, and the request context with the authorizer's fields.
 */
export const PROXY_EVENT_ENVELOPE_BYTES = 64 * KiB;

/**
 * The most a request body can grow when the proxy event escapes it as a JSON string: a JSON body
 * has no raw control characters outside whitespace, so every byte stays one byte except `"`, `\`
 * and the whitespace characters tab, CR and LF, which become two (`\"`, `\\`, `\t`). Non-ASCII
 * text stays UTF-8 (JSON does not require \u escapes). Notebooks measure 1.17-1.28x; a body made of
 * quotes and backslashes (a notebook printing Windows paths, say) reaches 2x.
 */
export const BODY_ESCAPE_GROWTH = 2;

/**
 * Largest request body the REST and MCP endpoints read (local server and Lambdas alike): whatever
 * its content, once escaped into the proxy event it still fits Lambda's payload limit, so a body
 * under it reaches the service and a larger one gets a clear 413 from it pointing at
 * `POST /v1/uploads` (not a gateway 5xx). 3,112,960 bytes (about 2.97 MiB).
 */
export const MAX_REQUEST_BODY_BYTES = Math.floor(
  (LAMBDA_PAYLOAD_BYTES - PROXY_EVENT_ENVELOPE_BYTES) / BODY_ESCAPE_GROWTH,
);

/**
 * Largest notebook accepted inline (its compact JSON), leaving room in the body for the rest of the
 * create request or the JSON-RPC envelope around it (parameters, tags, names): 3,047,424 bytes.
 * Larger notebooks go by upload (`POST /v1/uploads`) or URI.
 */
export const MAX_INLINE_NOTEBOOK_BYTES = MAX_REQUEST_BODY_BYTES - 64 * KiB;

/** The local server's data folder when neither `--data` nor NOTEBOOK_JOBS_DATA says otherwise. */
export const DEFAULT_DATA_DIR = '.notebook-jobs';
export const DATA_DIR_VARIABLE = 'NOTEBOOK_JOBS_DATA';

/** Where the CLI finds a local server by default. */
export const DEFAULT_SERVICE_URL = `http://127.0.0.1:${SETTINGS.port.default}`;

const warnOnStderr = (message: string) => console.warn(`warning: ${message}`);

/**
 * Reads an integer setting from the environment: its variable (or, with a warning, its old name),
 * else its default; a value out of bounds throws a ConfigError naming the variable.
 */
export function readIntSetting(
  env: Env,
  setting: IntSetting & { variable: string },
  warn: (message: string) => void = warnOnStderr,
): number {
  const resolved =
    setting.oldVariable === undefined ? env : withRenamed(env, setting.variable, setting.oldVariable, warn);
  return intEnv(resolved, setting.variable, setting.default, setting.min, setting.max);
}

/**
 * The OAuth 2.1 resource server (lambda/auth): JWT access tokens from one authorization server,
 * accepted beside the API tokens. Set by `serve --oauth-*` and these variables locally, and by the
 * stack (context keys) on AWS. Off unless an issuer is set.
 */
export const OAUTH_SETTINGS = {
  /** The authorization server's issuer URL; its keys are found through its discovery document. */
  issuer: { variable: 'NOTEBOOK_JOBS_OAUTH_ISSUER', context: 'oauthIssuer' },
  /**
   * This server's MCP URL: the resource a token must be issued for (its `aud`, RFC 8707) and the
   * `resource` of the protected-resource metadata. Locally it defaults to the server's own /mcp URL.
   */
  audience: { variable: 'NOTEBOOK_JOBS_OAUTH_AUDIENCE', context: 'oauthAudience' },
  /**
   * The claim whose value is the caller's tenant. `sub`: the one claim every issuer guarantees
   * unique per user and never reassigned (OpenID Connect Core 2); emails and names change and can
   * be reused, and a reused value would inherit someone else's jobs.
   */
  tenantClaim: { variable: 'NOTEBOOK_JOBS_OAUTH_TENANT_CLAIM', context: 'oauthTenantClaim', default: 'sub' },
  /**
   * Scope names are this prefix + `read` / `write` (the API tokens' scopes). Cognito writes a
   * resource server's scopes as `<identifier>/<name>`; the stack's Cognito resource server is named
   * by the MCP URL, so there the prefix is that URL + `/` (lib/notebook-jobs-stack.ts).
   */
  scopePrefix: {
    variable: 'NOTEBOOK_JOBS_OAUTH_SCOPE_PREFIX',
    context: 'oauthScopePrefix',
    default: 'notebook-jobs/',
  },
  /**
   * App client ids whose access tokens may come without an `aud` claim (comma-separated). Cognito
   * access tokens carry `client_id` and no `aud`; the stack sets its own app client here.
   */
  clientIds: { variable: 'NOTEBOOK_JOBS_OAUTH_CLIENT_IDS', context: 'oauthClientIds' },
} as const;
