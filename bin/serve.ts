/**
 * `notebook-jobs serve` / `npm start`: the local service. Flags win over environment variables,
 * which win over defaults.
 */
import { ConfigError, optionalEnv, type Env } from '../lambda/core/config.ts';
import {
  DATA_DIR_VARIABLE,
  DEFAULT_DATA_DIR,
  readIntSetting,
  SECRET_ENV_PREFIX,
  SECRETS_DIR,
  SETTINGS,
} from '../lambda/core/settings.ts';
import { startLocalServer, type LocalServerOptions } from '../lambda/local/local-server.ts';
import { OAUTH_SETTINGS } from '../lambda/core/settings.ts';
import { readOAuthConfig } from '../lambda/auth/protected-resource.ts';

export interface ServeOptions {
  port?: number;
  host?: string;
  data?: string;
  workspace?: string;
  maxConcurrent?: number;
  warmKernels?: number;
  python?: string;
  kernelUser?: string;
  /** Comma-separated Host names accepted besides the loopback ones (`--allowed-hosts`). */
  allowedHosts?: string;
  /** Prefix of the variables jobs may name as env: secrets (`--secret-env-prefix`). */
  secretEnvPrefix?: string;
  /** Folder of file: secrets (`--secrets-dir`). */
  secretsDir?: string;
  /** An OAuth authorization server whose access tokens are accepted (`--oauth-issuer`). */
  oauthIssuer?: string;
  /** The resource those tokens must be issued for (`--oauth-audience`; default: this server's /mcp). */
  oauthAudience?: string;
}

/** Who may call the local server: the token and the extra hosts and origins. */
export interface AccessConfig {
  token: string | undefined;
  allowedHosts: string[];
  allowedOrigins: string[];
}

/**
 * Reads the access settings. The MCP_* names come from when only /mcp was guarded; they still
 * work, with a warning, since one token and one origin list now guard every route.
 */
export function readAccessConfig(
  env: Env,
  allowedHostsFlag: string | undefined,
  warn: (message: string) => void,
): AccessConfig {
  const token = optionalEnv(env, 'NOTEBOOK_JOBS_TOKEN');
  const oldToken = optionalEnv(env, 'NOTEBOOK_JOBS_MCP_TOKEN');
  if (oldToken !== undefined && token !== undefined && oldToken !== token) {
    warn('NOTEBOOK_JOBS_MCP_TOKEN is ignored: NOTEBOOK_JOBS_TOKEN is set and guards REST and /mcp alike');
  } else if (oldToken !== undefined && token === undefined) {
    warn(
      'NOTEBOOK_JOBS_MCP_TOKEN is deprecated: rename it NOTEBOOK_JOBS_TOKEN. It now guards REST and /mcp ' +
        'alike, and the CLI sends NOTEBOOK_JOBS_TOKEN',
    );
  }
  const oldOrigins = optionalEnv(env, 'NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS');
  if (oldOrigins !== undefined) {
    warn(
      'NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS is deprecated: rename it NOTEBOOK_JOBS_ALLOWED_ORIGINS (it now ' +
        'applies to every route)',
    );
  }
  return {
    token: token ?? oldToken,
    allowedHosts: list(allowedHostsFlag ?? optionalEnv(env, 'NOTEBOOK_JOBS_ALLOWED_HOSTS')),
    allowedOrigins: [...list(optionalEnv(env, 'NOTEBOOK_JOBS_ALLOWED_ORIGINS')), ...list(oldOrigins)],
  };
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

/** The local server's options from flags, then the environment, then the settings' defaults. */
export function readServeConfig(
  env: Env,
  options: ServeOptions,
  warn: (message: string) => void,
): LocalServerOptions & AccessConfig {
  return {
    port: options.port ?? readIntSetting(env, SETTINGS.port, warn),
    host: options.host ?? '127.0.0.1',
    dataDir: options.data ?? optionalEnv(env, DATA_DIR_VARIABLE) ?? DEFAULT_DATA_DIR,
    workspace: options.workspace,
    maxConcurrentJobs: options.maxConcurrent ?? readIntSetting(env, SETTINGS.maxConcurrentJobs, warn),
    warmKernels: options.warmKernels ?? readIntSetting(env, SETTINGS.warmKernels, warn),
    python: options.python ?? optionalEnv(env, 'NOTEBOOK_JOBS_PYTHON'),
    ...readAccessConfig(env, options.allowedHosts, warn),
    kernelUser: options.kernelUser ?? optionalEnv(env, 'NOTEBOOK_JOBS_KERNEL_USER'),
    secretEnvPrefix: options.secretEnvPrefix ?? optionalEnv(env, SECRET_ENV_PREFIX.variable),
    secretsDir: options.secretsDir ?? optionalEnv(env, SECRETS_DIR.variable),
    oauth: readServeOAuth(env, options),
  };
}

/** The OAuth settings, flags over variables; the audience may stay unset (the server's own /mcp). */
function readServeOAuth(env: Env, options: ServeOptions): LocalServerOptions['oauth'] {
  const withFlags: Env = { ...env };
  if (options.oauthIssuer !== undefined) withFlags[OAUTH_SETTINGS.issuer.variable] = options.oauthIssuer;
  if (options.oauthAudience !== undefined)
    withFlags[OAUTH_SETTINGS.audience.variable] = options.oauthAudience;
  if (optionalEnv(withFlags, OAUTH_SETTINGS.issuer.variable) === undefined) {
    if (optionalEnv(withFlags, OAUTH_SETTINGS.audience.variable) !== undefined)
      throw new ConfigError(
        `--oauth-audience (${OAUTH_SETTINGS.audience.variable}) needs --oauth-issuer too`,
      );
    return undefined;
  }
  // A placeholder audience only to validate the rest now; the real default needs the port.
  const explicit = optionalEnv(withFlags, OAUTH_SETTINGS.audience.variable);
  const config = readOAuthConfig(withFlags, 'http://127.0.0.1/mcp');
  return config ? { ...config, audience: explicit } : undefined;
}

export async function serve(options: ServeOptions): Promise<void> {
  const warn = (message: string) => console.error(`warning: ${message}`);
  const config = readServeConfig(process.env, options, warn);
  const server = await startLocalServer(config);
  console.error(`notebook-jobs listening on ${server.url} (data: ${server.dataDir})`);
  console.error(`MCP endpoint: ${server.url}/mcp (streamable HTTP)`);
  if (config.token) console.error('every route but /v1/health requires Authorization: Bearer <token>');
  if (config.oauth)
    console.error(
      `OAuth: access tokens from ${config.oauth.issuer} for ${config.oauth.audience ?? `${server.url}/mcp`} ` +
        `(metadata: ${server.url}/.well-known/oauth-protected-resource/mcp)`,
    );
  const stop = (signal: string) => {
    console.error(`${signal}: stopping; running jobs end as failed when their runner sees the server gone`);
    server.close().then(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
