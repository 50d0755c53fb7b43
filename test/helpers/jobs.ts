/** A complete queued job record for tests that write to a store directly. */
import type { JobRecord } from '../../lambda/core/job.ts';

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
