/**
 * How the CLI shows a job (split from notebook-jobs.ts): its progress bar, summary, result, and following it to its end.
 */
import type { JobView as Job, ResultView } from '../lambda/core/contract.ts';
import { Api } from './cli-common.ts';

export function bar(percent: number, width = 24): string {
  const filled = Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export function progressLine(job: Job): string {
  const p = job.progress;
  if (job.status === 'queued')
    return `queued${job.queue_position ? ` (position ${job.queue_position})` : ''}`;
  const stage = job.status === 'running' ? (job.stage ?? 'running') : job.status;
  const cell =
    job.status === 'running' && p.current_cell
      ? `  cell ${p.current_cell.index}: ${p.current_cell.source_preview}`
      : '';
  return `${bar(p.percent)} ${p.cells_executed}/${p.cells_total} cells  ${stage}${cell}`;
}

export function describe(job: Job): string {
  const lines = [
    `${job.job_id}  ${job.status}${job.stage ? ` (${job.stage})` : ''}  ${job.notebook.name}`,
    progressLine(job),
  ];
  if (job.duration_seconds !== null) lines.push(`duration: ${job.duration_seconds} s`);
  if (job.error) {
    const where =
      job.error.cell_index !== undefined && job.error.cell_index !== null
        ? ` in cell ${job.error.cell_index}`
        : '';
    lines.push(`error (${job.error.type})${where}: ${job.error.message}`);
  }
  if (job.output.available) lines.push(`executed notebook: ${job.output.uri}`);
  return lines.join('\n');
}

export function describeResult(result: ResultView): string {
  if (!result.summary) return `${result.status}: no executed notebook yet`;
  const { totals, named_results: named, cells } = result.summary;
  const lines = [
    `cells: ${Object.entries(totals)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  for (const cell of cells) {
    const time = cell.duration_seconds === null ? '' : ` ${cell.duration_seconds.toFixed(2)}s`;
    const text = cell.output_text.trim().split('\n').slice(-3).join(' | ');
    lines.push(`  [${cell.index}] ${cell.status}${time}${text ? `  ${text.slice(0, 100)}` : ''}`);
  }
  if (Object.keys(named).length) lines.push(`named results: ${JSON.stringify(named)}`);
  return lines.join('\n');
}

export async function follow(api: Api, jobId: string, json: boolean): Promise<Job> {
  const tty = process.stderr.isTTY;
  let last = '';
  for (;;) {
    const job = await api.call<Job>('GET', `/v1/jobs/${jobId}`);
    const line = progressLine(job);
    if (!json && line !== last) {
      process.stderr.write(
        tty ? `\r\x1b[2K${line.slice(0, (process.stderr.columns ?? 100) - 1)}` : `${line}\n`,
      );
      last = line;
    }
    if (['completed', 'failed', 'cancelled'].includes(job.status)) {
      if (!json && tty) process.stderr.write('\n');
      return job;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
