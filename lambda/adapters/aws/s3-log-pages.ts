/**
 * Job logs as pages in S3 (AWS mode): what the runner writes (S3LogPageSink) and the api and mcp
 * Lambdas read (S3LogPageReader), so a log read never calls CloudWatch Logs. Why S3 pages, with the
 * costs and request rates: docs/deploy.md, "Job logs".
 *
 * A job's log pages live in its output folder, `outputs/<tenant>/<job>/logs/`: the runner's scoped
 * session may already write there and nowhere else, the Lambdas already read it, deleting a job
 * deletes it, and the outputs lifecycle rule expires it. A page holds JSON lines exactly as the
 * local log file does. Each attempt of the job (a requeued job runs again as attempt n + 1) writes
 * its own run of pages 0, 1, 2, ...; a page holds up to PAGE_LINES lines or PAGE_BYTES bytes (it
 * is closed by the line that reaches either), the newest page of a run is rewritten as it grows, a
 * closed page never changes, and page seq + 1 is only written once page seq is complete.
 *
 * Object names count down (`998-9999999999.jsonl` is attempt 1, page 0), so listing the folder
 * with MaxKeys 1 names the newest page of the newest attempt: a tail costs one LIST whatever the
 * length of the log.
 */
import { checkArtifactKey } from '../../core/job.ts';
import { JOB_ID_PATTERN } from '../../core/ids.ts';
import { TENANT_PATTERN } from '../dynamodb/token-store.ts';

/** A page is closed at this many lines... */
export const PAGE_LINES = 1000;
/** ...or this many bytes (one line may take it past; the runner caps a line's text at 128 KiB). */
export const PAGE_BYTES = 1024 * 1024;
/** Attempts and page numbers a name can hold: names are these minus the number, zero-padded. */
const LAST_ATTEMPT = 999;
const LAST_SEQ = 9_999_999_999;
const PAGE_NAME = /^(\d{3})-(\d{10})\.jsonl$/;

/** Where one page is: the job's attempt (from 1) and the page's number in that attempt's run. */
export interface PageAddress {
  attempt: number;
  seq: number;
}

/** The folder of one job's pages. Tenant and job id are checked: they are parts of a key. */
export function logPagesPrefix(tenant: string, jobId: string): string {
  if (!TENANT_PATTERN.test(tenant) || !JOB_ID_PATTERN.test(jobId))
    throw new Error(`no log pages for tenant ${JSON.stringify(tenant)} and job ${JSON.stringify(jobId)}`);
  return checkArtifactKey(`outputs/${tenant}/${jobId}/logs/`, { folder: true });
}

/** The start of every page name of one attempt (a LIST prefix). */
export function attemptPrefix(prefix: string, attempt: number): string {
  if (!Number.isSafeInteger(attempt) || attempt < 1 || attempt > LAST_ATTEMPT)
    throw new Error(`no log pages for attempt ${attempt}`);
  return `${prefix}${String(LAST_ATTEMPT - attempt).padStart(3, '0')}-`;
}

export function logPageKey(prefix: string, { attempt, seq }: PageAddress): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > LAST_SEQ) throw new Error(`no log page ${seq}`);
  return `${attemptPrefix(prefix, attempt)}${String(LAST_SEQ - seq).padStart(10, '0')}.jsonl`;
}

/** The address of a page key under `prefix` (null for anything else). */
export function logPageAddress(prefix: string, key: string): PageAddress | null {
  if (!key.startsWith(prefix)) return null;
  const match = PAGE_NAME.exec(key.slice(prefix.length));
  return match ? { attempt: LAST_ATTEMPT - Number(match[1]), seq: LAST_SEQ - Number(match[2]) } : null;
}
