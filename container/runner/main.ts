/**
 * Runner entry point: `node container/runner/main.ts <job_id>` (or NOTEBOOK_JOBS_JOB_ID).
 * Reads its configuration once from the environment, wires the adapters, runs the job, exits.
 *
 * Environment:
 *   NOTEBOOK_JOBS_JOB_ID              the job to run (or the first argument)
 *   NOTEBOOK_JOBS_TABLE               DynamoDB table (required)
 *   NOTEBOOK_JOBS_DYNAMODB_ENDPOINT   endpoint override (local mode: the embedded dynalite)
 *   NOTEBOOK_JOBS_DATA                local data folder: artifacts/, logs/, work/ (required locally)
 *   NOTEBOOK_JOBS_WORKSPACE           folder file:// submissions may come from (default: cwd)
 *   NOTEBOOK_JOBS_PYTHON              interpreter with nbclient + ipykernel (default: probed)
 *   NOTEBOOK_JOBS_ENGINE              auto | nbclient | papermill (default auto)
 *   NOTEBOOK_JOBS_ENGINES_DIR         folder of the engine drivers (default: ../engines from here;
 *                                     set when the runner runs bundled)
 *   NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS  minimum time between progress writes (default 2000)
 *   NOTEBOOK_JOBS_WATCH_STDIN         1: stop the job when stdin closes (the local server died)
 */
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { intEnv, oneOfEnv, optionalEnv, requireEnv } from '../../lambda/core/config.ts';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import { findPython } from './python.ts';
import { RunnerControl, runJob } from './runner.ts';

async function main(): Promise<number> {
  const env = process.env;
  const jobId = process.argv[2] ?? requireEnv(env, 'NOTEBOOK_JOBS_JOB_ID');
  const table = requireEnv(env, 'NOTEBOOK_JOBS_TABLE');
  const data = requireEnv(env, 'NOTEBOOK_JOBS_DATA');
  const engineSetting = oneOfEnv(
    env,
    'NOTEBOOK_JOBS_ENGINE',
    ['auto', 'nbclient', 'papermill'] as const,
    'auto',
  );
  const configuredPython = optionalEnv(env, 'NOTEBOOK_JOBS_PYTHON');
  const python =
    configuredPython && engineSetting !== 'auto'
      ? { python: configuredPython, engine: engineSetting }
      : await findPython({ configured: configuredPython, engine: engineSetting });

  const control = new RunnerControl();
  process.on('SIGTERM', () => control.stop('cancel'));
  process.on('SIGINT', () => control.stop('cancel'));
  if (env.NOTEBOOK_JOBS_WATCH_STDIN === '1') {
    process.stdin.on('end', () => control.stop('orphaned'));
    process.stdin.on('error', () => control.stop('orphaned'));
    process.stdin.resume();
  }

  const store = new DynamoDbJobStore({
    client: createDocumentClient({
      endpoint: optionalEnv(env, 'NOTEBOOK_JOBS_DYNAMODB_ENDPOINT'),
      region: optionalEnv(env, 'AWS_REGION'),
    }),
    tableName: table,
  });
  const artifacts = new FileArtifacts({
    root: join(data, 'artifacts'),
    workspace: optionalEnv(env, 'NOTEBOOK_JOBS_WORKSPACE') ?? process.cwd(),
  });
  const logs = new FileLogSink(jobLogPath(join(data, 'logs'), jobId));
  const workDir = join(data, 'work', jobId);
  try {
    const outcome = await runJob(
      jobId,
      {
        store,
        artifacts,
        logs,
        python: python.python,
        engine: python.engine,
        workDir,
        enginesDir: optionalEnv(env, 'NOTEBOOK_JOBS_ENGINES_DIR'),
        progressIntervalMs: intEnv(env, 'NOTEBOOK_JOBS_PROGRESS_INTERVAL_MS', 2000, 0, 600_000),
      },
      control,
    );
    return outcome.status === 'completed' || outcome.status === 'skipped' ? 0 : 1;
  } finally {
    await logs.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(2);
  },
);
