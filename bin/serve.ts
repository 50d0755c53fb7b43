/**
 * `notebook-jobs serve` / `npm start`: the local service. Flags win over environment variables,
 * which win over defaults.
 */
import { intEnv, optionalEnv } from '../lambda/core/config.ts';
import { startLocalServer } from '../lambda/local/local-server.ts';

export interface ServeOptions {
  port?: number;
  host?: string;
  data?: string;
  workspace?: string;
  maxConcurrent?: number;
  python?: string;
  kernelUser?: string;
}

export async function serve(options: ServeOptions): Promise<void> {
  const env = process.env;
  const server = await startLocalServer({
    port: options.port ?? intEnv(env, 'NOTEBOOK_JOBS_PORT', 8080, 0, 65535),
    host: options.host ?? '127.0.0.1',
    dataDir: options.data ?? optionalEnv(env, 'NOTEBOOK_JOBS_DATA') ?? '.notebook-jobs',
    workspace: options.workspace,
    maxConcurrentJobs: options.maxConcurrent ?? intEnv(env, 'NOTEBOOK_JOBS_MAX_CONCURRENT', 5, 1, 1000),
    python: options.python ?? optionalEnv(env, 'NOTEBOOK_JOBS_PYTHON'),
    kernelUser: options.kernelUser ?? optionalEnv(env, 'NOTEBOOK_JOBS_KERNEL_USER'),
    mcpToken: optionalEnv(env, 'NOTEBOOK_JOBS_MCP_TOKEN'),
    mcpAllowedOrigins: (optionalEnv(env, 'NOTEBOOK_JOBS_MCP_ALLOWED_ORIGINS') ?? '')
      .split(',')
      .map((origin) => origin.trim())
      .filter(Boolean),
  });
  console.error(`notebook-jobs listening on ${server.url} (data: ${server.dataDir})`);
  console.error(`MCP endpoint: ${server.url}/mcp (streamable HTTP)`);
  const stop = (signal: string) => {
    console.error(`${signal}: stopping; running jobs end as failed when their runner sees the server gone`);
    server.close().then(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
