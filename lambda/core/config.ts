/**
 * Reading configuration once per entry point: required variables fail fast with their name;
 * optional ones have documented defaults; malformed values are errors, never silently ignored.
 */
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {}

export function requireEnv(env: Env, name: string): string {
  const value = env[name];
  if (value === undefined || value === '')
    throw new ConfigError(`missing required environment variable ${name}`);
  return value;
}

/**
 * `env` with a renamed variable resolved: when only `oldName` is set, its value under `name` and a
 * warning to rename it; when both are, `name` wins and the warning says the old one is ignored.
 */
export function withRenamed(env: Env, name: string, oldName: string, warn: (message: string) => void): Env {
  const old = optionalEnv(env, oldName);
  if (old === undefined) return env;
  if (optionalEnv(env, name) !== undefined) {
    warn(`${oldName} is ignored: ${name} is set`);
    return env;
  }
  warn(`${oldName} is deprecated: rename it ${name}`);
  return { ...env, [name]: old };
}

export function optionalEnv(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

export function intEnv(
  env: Env,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = optionalEnv(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

export function oneOfEnv<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = optionalEnv(env, name) ?? fallback;
  if (!allowed.includes(raw as T))
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}
