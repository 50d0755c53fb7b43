/**
 * The MCP resources, whatever the protocol era: a job (`notebook-jobs://jobs/{job_id}`), its
 * executed notebook (`notebook-jobs://jobs/{job_id}/output`) and its output files
 * (`notebook-jobs://jobs/{job_id}/files/{path}`). Failures are typed errors (AppError); each era's
 * server turns them into its own protocol error.
 */
import { InvalidRequestError } from '../core/errors.ts';
import { clip } from '../core/names.ts';
import { IPYNB_MIME, jobResourceUri, outputResourceUri, type McpCallContext } from './tools.ts';

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

export const FILE_RESOURCE = {
  name: 'job-file',
  title: 'Output file',
  description:
    "A file a job's notebook created or changed in its working folder (text or base64 blob); results link each one.",
};

/** The URI template of output files ({+path}: the path keeps its '/'). */
export const FILE_RESOURCE_TEMPLATE = 'notebook-jobs://jobs/{job_id}/files/{+path}';

/**
 * The job id and file path an output file URI names (segments percent-decoded), or null when it is
 * not such a URI. The path is checked (and looked up in the job's list of files) by the reader.
 */
function parseFileResourceUri(uri: string): { jobId: string; path: string } | null {
  const match = /^notebook-jobs:\/\/jobs\/([^/?#]+)\/files\/([^?#]+)$/.exec(uri);
  if (!match?.[1] || !match[2]) return null;
  try {
    return {
      jobId: decodeURIComponent(match[1]),
      path: match[2].split('/').map(decodeURIComponent).join('/'),
    };
  } catch {
    return null;
  }
}

/** The answer to a URI that names none of our resources (a long one quoted back shortened). */
export function noResource(uri: string): string {
  return `no resource ${clip(uri)}`;
}

/** Media types served as text (when the bytes are UTF-8); anything else is a base64 blob. */
const TEXT_MEDIA_TYPE = /^(text\/.*|application\/(json|xml|yaml|javascript)|.*\+(json|xml))$/;

/**
 * An output file's contents, tenant-checked by the service (another tenant's job is not found),
 * only a path the job's file list has (a path is looked up, never joined onto a folder), up to
 * `maxBytes` as served (base64 grows a blob by a third; larger: the error names the REST download).
 */
async function readFileResource(
  ctx: McpCallContext,
  uri: string,
  { jobId, path }: { jobId: string; path: string },
  maxBytes: number,
) {
  // Binary files go out as base64 (4 characters for every 3 bytes).
  const read = await ctx.service.file(ctx.tenant, jobId, path, {
    allowUrl: false,
    maxBytes: (file) => (TEXT_MEDIA_TYPE.test(file.media_type) ? maxBytes : Math.floor(maxBytes / 4) * 3),
  });
  if (!('body' in read)) throw new Error('unreachable: inline file asked for');
  const { file, body } = read;
  if (TEXT_MEDIA_TYPE.test(file.media_type)) {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
      return { contents: [{ uri, mimeType: file.media_type, text }] };
    } catch {
      // Not UTF-8 after all: served as bytes.
    }
  }
  return { contents: [{ uri, mimeType: file.media_type, blob: body.toString('base64') }] };
}

/** resources/templates/list: the same three templates in every era. */
export const RESOURCE_TEMPLATES = [
  { uriTemplate: jobResourceUri('{job_id}'), ...JOB_RESOURCE },
  { uriTemplate: outputResourceUri('{job_id}'), ...OUTPUT_RESOURCE },
  { uriTemplate: FILE_RESOURCE_TEMPLATE, ...FILE_RESOURCE },
];

/** The caller's 20 newest jobs, as resources/list shows them. */
export async function listJobResources(ctx: McpCallContext) {
  const { jobs } = await ctx.service.list(ctx.tenant, { limit: 20 });
  return jobs.map((job) => ({
    ...JOB_RESOURCE,
    uri: jobResourceUri(job.job_id),
    name: job.job_id,
    title: `${job.notebook.name} (${job.status})`,
  }));
}

/**
 * resources/read in every era: the resource `uri` names, read for the caller, or null when the URI
 * names none of ours (each era answers that with its own protocol error). Failures are AppErrors.
 */
export function readResource(ctx: McpCallContext, uri: string, maxBytes: number) {
  const file = parseFileResourceUri(uri);
  if (file) return readFileResource(ctx, uri, file, maxBytes);
  const match = /^notebook-jobs:\/\/jobs\/([^/?#]+)(\/output)?$/.exec(uri);
  if (!match?.[1]) return null;
  let jobId: string;
  try {
    jobId = decodeURIComponent(match[1]);
  } catch {
    return null;
  }
  return match[2] ? readOutputResource(ctx, uri, jobId, maxBytes) : readJobResource(ctx, uri, jobId);
}

/** A job resource's contents. */
async function readJobResource(ctx: McpCallContext, uri: string, jobId: string) {
  const job = await ctx.service.get(ctx.tenant, jobId);
  return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(job) }] };
}

/** An executed notebook's contents, up to `maxBytes` (larger ones: the error names the download URL). */
async function readOutputResource(ctx: McpCallContext, uri: string, jobId: string, maxBytes: number) {
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
