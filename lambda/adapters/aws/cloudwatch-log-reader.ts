/**
 * Job logs from CloudWatch Logs (AWS mode): the awslogs driver writes the runner's stdout to one
 * stream per task, `<prefix>/<container>/<task id>`, one event per JSON line of the StdoutLogSink.
 *
 * The continuation is GetLogEvents' own forward token. A token points just past the events returned
 * with it, so resuming from it never skips or repeats a line; the end of the stream is when the
 * service hands back the token it was given (pages may also come back empty before the end, so an
 * empty page alone proves nothing). Tokens expire after 24 hours.
 */
import {
  DeleteLogStreamCommand,
  GetLogEventsCommand,
  type CloudWatchLogsClient,
  type GetLogEventsCommandInput,
  type OutputLogEvent,
} from '@aws-sdk/client-cloudwatch-logs';
import { InvalidRequestError } from '../../core/errors.ts';
import type { LogLine, LogPage, LogReadOptions, LogReader, LogSource } from '../../core/ports.ts';
import { parseLogLine } from '../stdout-log-sink.ts';

/** The cursor for "from the first event" (a stream not created yet has no token to offer). */
const HEAD = 'head';
/** Forward tokens look like "f/3815...2808/s"; this only guards shape and size. */
const FORWARD_TOKEN = /^f\/[A-Za-z0-9/+=_-]{1,512}$/;
/** GetLogEvents calls one read may make while pages come back short or empty. */
const MAX_CALLS = 5;

interface AwsErrorShape {
  name?: string;
}

export class CloudWatchLogReader implements LogReader {
  constructor(
    private readonly logs: CloudWatchLogsClient,
    private readonly config: { logGroup: string; streamPrefix: string; containerName: string },
  ) {}

  async read(job: LogSource, options: LogReadOptions): Promise<LogPage> {
    const start = parseCursor(options.cursor);
    const stream = this.streamOf(job);
    if (!stream) return { lines: [], next_cursor: start ?? HEAD, at_end: true };
    try {
      return options.tail !== undefined
        ? await this.readTail(stream, options.tail)
        : await this.readForward(stream, start, options.limit);
    } catch (error) {
      const name = (error as AwsErrorShape).name;
      // The stream appears with the task's first output line: until then there is nothing to read.
      if (name === 'ResourceNotFoundException')
        return { lines: [], next_cursor: start ?? HEAD, at_end: true };
      if (name === 'InvalidParameterException' && start !== undefined) {
        throw new InvalidRequestError(
          'cursor has expired or is no longer valid (CloudWatch Logs tokens last 24 hours); read again without a cursor or with tail',
        );
      }
      throw error;
    }
  }

  async delete(job: LogSource): Promise<void> {
    const stream = this.streamOf(job);
    if (!stream) return;
    try {
      await this.logs.send(
        new DeleteLogStreamCommand({ logGroupName: this.config.logGroup, logStreamName: stream }),
      );
    } catch (error) {
      if ((error as AwsErrorShape).name !== 'ResourceNotFoundException') throw error;
    }
  }

  /** The task's stream: the task id is the last segment of its ARN. */
  private streamOf(job: LogSource): string | null {
    const taskId = job.runner_ref?.split('/').pop();
    if (!taskId) return null;
    return `${this.config.streamPrefix}/${this.config.containerName}/${taskId}`;
  }

  private async readForward(stream: string, start: string | undefined, limit: number): Promise<LogPage> {
    const lines: LogLine[] = [];
    let token = start;
    for (let call = 0; call < MAX_CALLS; call++) {
      const out = await this.getEvents(stream, {
        startFromHead: true,
        limit: limit - lines.length,
        nextToken: token,
      });
      lines.push(...(out.events ?? []).map(toLogLine));
      const next = out.nextForwardToken;
      if (!next || next === token) return { lines, next_cursor: token ?? HEAD, at_end: true };
      token = next;
      if (lines.length >= limit) break;
    }
    // Either the page is full or the service kept answering short pages: not known to be the end.
    return { lines, next_cursor: token ?? HEAD, at_end: false };
  }

  /**
   * The last `count` events, newest read first and walked backwards while pages come back short;
   * the forward token of the first (newest) page continues right after them.
   */
  private async readTail(stream: string, count: number): Promise<LogPage> {
    const first = await this.getEvents(stream, { startFromHead: false, limit: count });
    let events = first.events ?? [];
    let back = first.nextBackwardToken;
    for (let call = 1; call < MAX_CALLS && events.length < count && back; call++) {
      const out = await this.getEvents(stream, { nextToken: back, limit: count - events.length });
      events = [...(out.events ?? []), ...events];
      if (out.nextBackwardToken === back) break; // the start of the stream
      back = out.nextBackwardToken;
    }
    // The newest events at the time of reading: the page ends at the current end of the log.
    return { lines: events.map(toLogLine), next_cursor: first.nextForwardToken ?? HEAD, at_end: true };
  }

  private getEvents(stream: string, input: Omit<GetLogEventsCommandInput, 'logStreamName'>) {
    return this.logs.send(
      new GetLogEventsCommand({ logGroupName: this.config.logGroup, logStreamName: stream, ...input }),
    );
  }
}

function parseCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === HEAD) return undefined;
  if (!FORWARD_TOKEN.test(cursor)) throw new InvalidRequestError('cursor is invalid for this log');
  return cursor;
}

/** A line the runner wrote as JSON, or (anything else on the task's stdout) the raw message. */
function toLogLine(event: OutputLogEvent): LogLine {
  const message = event.message ?? '';
  return (
    parseLogLine(message) ?? {
      ts: event.timestamp !== undefined ? new Date(event.timestamp).toISOString() : '',
      stream: 'stdout',
      text: message.replace(/\r?\n$/, ''),
    }
  );
}
