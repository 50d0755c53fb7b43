/** Job records for tests that write to a store directly. */
import { inputKey, outputKey, type JobRecord } from '../../lambda/core/job.ts';
import type { Artifacts, JobStore } from '../../lambda/core/ports.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';

const ids = new MonotonicJobIds();

/**
 * Stores `notebook` as a new job's input and records the job as just started (running,
 * provisioning, attempt 1): what a runner finds when it is launched. Without `overrides` the record
 * is one written before submit stored parameterized notebooks (no `input_parameterized`).
 */
export async function runningJob(
  store: JobStore,
  artifacts: Artifacts,
  notebook: object,
  overrides: Partial<JobRecord> = {},
): Promise<JobRecord> {
  const jobId = ids.jobId();
  const uri = await artifacts.put(inputKey('local', jobId, 'nb.ipynb'), JSON.stringify(notebook));
  await store.create(
    jobRecord(jobId, {
      notebook: { name: 'nb.ipynb', uri },
      output_uri: artifacts.uriFor(outputKey('local', jobId, 'nb.ipynb')),
      ...overrides,
    }),
  );
  return store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: new Date().toISOString(),
    attempt: 1,
  });
}

export function jobRecord(jobId: string, overrides: Partial<JobRecord> = {}): JobRecord {
  const now = new Date().toISOString();
  return {
    job_id: jobId,
    tenant: 'local',
    status: 'queued',
    stage: null,
    notebook: { name: 'nb.ipynb', uri: `file:///data/inputs/${jobId}/nb.ipynb` },
    parameters: {},
    kernel: 'python3',
    language: 'python',
    progress: { cells_total: 0, cells_executed: 0, percent: 0, current_cell: null },
    created_at: now,
    started_at: null,
    updated_at: now,
    ended_at: null,
    timeout_seconds: 3600,
    cell_timeout_seconds: null,
    deadline_at: null,
    priority: 0,
    tags: {},
    attempt: 0,
    cpu: null,
    memory: null,
    output_uri: `file:///data/outputs/${jobId}/nb.ipynb`,
    error: null,
    runner_ref: null,
    idempotency_key: null,
    request_hash: null,
    ...overrides,
  };
}
