/**
 * The MCP resources, whatever the protocol era: a job (`notebook-jobs://jobs/{job_id}`) and its
 * executed notebook (`notebook-jobs://jobs/{job_id}/output`). Failures are typed errors (AppError);
 * each era's server turns them into its own protocol error.
 */
import { InvalidRequestError } from '../core/errors.ts';
import { IPYNB_MIME, jobResourceUri, type McpCallContext } from './tools.ts';

export const JOB_RESOURCE = {
  name: 'job',
  title: 'Notebook job',
  description: 'A job as manage_async_job status shows it.',
  mimeType: 'application/json',
};

export const OUTPUT_RESOURCE = {
  name: 'job-output',
  title: 'Executed notebook',
  description: "A job's executed notebook (partial for failed and cancelled jobs).",
  mimeType: IPYNB_MIME,
};

/** The caller's 20 newest jobs, as resources/list shows them. */
export async function listJobResources(ctx: McpCallContext) {
  const { jobs } = await ctx.service.list(ctx.tenant, { limit: 20 });
  return jobs.map((job) => ({
    uri: jobResourceUri(job.job_id),
    name: job.job_id,
    title: `${job.notebook.name} (${job.status})`,
    mimeType: 'application/json',
  }));
}

/** A job resource's contents. */
export async function readJobResource(ctx: McpCallContext, uri: string, jobId: string) {
  const job = await ctx.service.get(ctx.tenant, jobId);
  return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(job) }] };
}

/** An executed notebook's contents, up to `maxBytes` (larger ones: the error names the download URL). */
export async function readOutputResource(ctx: McpCallContext, uri: string, jobId: string, maxBytes: number) {
  const output = await ctx.service.output(ctx.tenant, jobId, 'ipynb', { allowUrl: false });
  if (!('body' in output)) throw new Error('unreachable: inline output asked for');
  if (output.body.length > maxBytes) {
    const job = await ctx.service.get(ctx.tenant, jobId);
    throw new InvalidRequestError(
      `the executed notebook is ${output.body.length} bytes, more than the ${maxBytes} served here; download it from ${job.output.download_url ?? job.links.output}`,
    );
  }
  return { contents: [{ uri, mimeType: IPYNB_MIME, text: output.body.toString('utf8') }] };
}
