/**
 * Operational logging shared by the service, the runner and the handlers: every line about a job
 * carries `job_id` and `tenant`, and an error goes along whole (with its `cause` chain), never
 * flattened to its message. Structured loggers (Powertools on AWS) take the fields as keys; text
 * sinks (the local server's stderr) get them appended by `formatLogLine`.
 */
import { errorDetail } from './errors.ts';
import type { JobRecord } from './job.ts';

/** What a log line is about. `error` is the thrown value itself, so its cause survives. */
export interface LogFields {
  job_id?: string;
  tenant?: string;
  error?: unknown;
  [key: string]: unknown;
}

/** Where failures that reach no caller are reported. */
export type LogFn = (message: string, fields?: LogFields) => void;

/** The correlation fields of a job. */
export function jobFields(job: Pick<JobRecord, 'job_id' | 'tenant'>): LogFields {
  return { job_id: job.job_id, tenant: job.tenant };
}

/**
 * One text line for a plain sink: the message, then `key=value` for each field (strings as JSON),
 * then the error's stack and causes.
 */
export function formatLogLine(message: string, fields: LogFields = {}): string {
  const { error, ...rest } = fields;
  const pairs = Object.entries(rest)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`);
  const head = [message, ...pairs].join(' ');
  return error === undefined ? head : `${head}\n${errorDetail(error)}`;
}

/** A LogFn that adds `fields` to every line (a request's or a job's correlation fields). */
export function withFields(log: LogFn, fields: LogFields): LogFn {
  return (message, more) => log(message, { ...fields, ...more });
}

/** A LogFn over a text sink (default: stderr). */
export function textLog(write: (line: string) => void = (line) => console.error(line)): LogFn {
  return (message, fields) => write(formatLogLine(message, fields));
}
