/**
 * What every CLI command shares (split from notebook-jobs.ts): the option table and its parsing, usage errors, and the HTTP client of the service.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const OPTIONS = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  port: { type: 'string' },
  host: { type: 'string' },
  data: { type: 'string' },
  workspace: { type: 'string' },
  'max-concurrent': { type: 'string' },
  'warm-kernels': { type: 'string' },
  python: { type: 'string' },
  'allowed-hosts': { type: 'string' },
  'kernel-user': { type: 'string' },
  'secret-env-prefix': { type: 'string' },
  'secrets-dir': { type: 'string' },
  secret: { type: 'string', multiple: true },
  'redact-param': { type: 'string', multiple: true },
  'oauth-issuer': { type: 'string' },
  'oauth-audience': { type: 'string' },
  param: { type: 'string', short: 'p', multiple: true },
  kernel: { type: 'string' },
  timeout: { type: 'string' },
  'cell-timeout': { type: 'string' },
  priority: { type: 'string' },
  tag: { type: 'string', multiple: true },
  'idempotency-key': { type: 'string' },
  'allow-unknown-parameters': { type: 'boolean' },
  wait: { type: 'boolean' },
  files: { type: 'string', multiple: true },
  tail: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  status: { type: 'string' },
  limit: { type: 'string' },
  output: { type: 'string', short: 'o' },
  'older-than': { type: 'string' },
  tenant: { type: 'string' },
  scopes: { type: 'string' },
  'expires-in-days': { type: 'string' },
  description: { type: 'string' },
  'notebook-role': { type: 'string' },
  table: { type: 'string' },
} satisfies ParseArgsConfig['options'];

export function parse(argv: string[]) {
  // `-p name value` takes two words; parseArgs takes one, so join them first.
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-p' || arg === '--param') {
      const name = argv[i + 1];
      const value = argv[i + 2];
      if (name === undefined || value === undefined)
        throw new CliError(`${arg} takes a name and a value: ${arg} epochs 10`);
      joined.push('--param', `${name}=${value}`);
      i += 2;
    } else joined.push(arg);
  }
  return parseArgs({ args: joined, options: OPTIONS, allowPositionals: true, strict: true });
}

export type Values = ReturnType<typeof parse>['values'];

/** A failure to report without a stack trace; exit 2 for usage errors, 1 for everything else. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/**
 * An integer flag, within `bounds` when given (a setting's own bounds, so a flag is held to the
 * same range as its variable).
 */
export function intOption(
  values: Values,
  name: keyof Values,
  bounds?: { min: number; max: number },
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || (bounds && (n < bounds.min || n > bounds.max))) {
    const range = bounds ? ` from ${bounds.min} to ${bounds.max}` : '';
    throw new CliError(`--${String(name)} must be an integer${range}, got "${String(raw)}"`);
  }
  return n;
}

export class Api {
  constructor(
    readonly base: string,
    /** Bearer token (NOTEBOOK_JOBS_TOKEN): an AWS deployment's, or the local server's when it has one. */
    private readonly token?: string,
  ) {}

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const response = await this.fetch(method, path, body, headers);
    const text = await response.text();
    const data = text
      ? (JSON.parse(text) as T & { error?: { message: string } })
      : ({} as T & { error?: { message: string } });
    if (!response.ok) throw new CliError(`${response.status}: ${data.error?.message ?? text}`, 1);
    return data;
  }

  async fetch(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    raw?: Buffer,
  ): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: raw ? new Uint8Array(raw) : body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new CliError(
        `cannot reach ${this.base} (${(error as Error).cause ?? (error as Error).message}); start it with: notebook-jobs serve`,
        1,
      );
    }
  }
}
