/**
 * The CloudWatch log reader against a mocked CloudWatch Logs client (aws-sdk-client-mock): exact
 * GetLogEvents inputs for forward paging and tail, the end condition (the same token handed back),
 * empty pages before the end, a missing stream, raw messages, and a property check that paging
 * never skips or repeats a line, on a stream modelled on GetLogEvents' documented token behaviour.
 */
import {
  CloudWatchLogsClient,
  DeleteLogStreamCommand,
  GetLogEventsCommand,
  InvalidParameterException,
  ResourceNotFoundException,
  type GetLogEventsCommandInput,
  type GetLogEventsCommandOutput,
} from '@aws-sdk/client-cloudwatch-logs';
import { mockClient } from 'aws-sdk-client-mock';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { CloudWatchLogReader } from '../../lambda/adapters/aws/cloudwatch-log-reader.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import type { LogLine } from '../../lambda/core/ports.ts';

const TASK_ID = '0123456789abcdef0123456789abcdef';
const TASK_ARN = `arn:aws:ecs:eu-west-1:123456789012:task/notebook-jobs/${TASK_ID}`;
const GROUP = '/notebook-jobs/runner';
const STREAM = `runner/runner/${TASK_ID}`;
const job = { job_id: 'job_01', runner_ref: TASK_ARN };

const client = new CloudWatchLogsClient({
  region: 'eu-west-1',
  credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
});
const cw = mockClient(client);
const reader = new CloudWatchLogReader(client, {
  logGroup: GROUP,
  streamPrefix: 'runner',
  containerName: 'runner',
});

/** An event as the StdoutLogSink writes it. */
function event(i: number, stream: LogLine['stream'] = 'stdout') {
  const line: LogLine = { ts: `2026-05-01T10:00:0${i % 10}.000Z`, stream, text: `line ${i}` };
  return {
    timestamp: Date.parse(line.ts),
    message: JSON.stringify(line),
    ingestionTime: Date.parse(line.ts) + 5,
  };
}
const textOf = (lines: LogLine[]) => lines.map((l) => l.text);
const inputs = () => cw.commandCalls(GetLogEventsCommand).map((c) => c.args[0].input);
const forward = (limit: number, nextToken?: string) => ({
  logGroupName: GROUP,
  logStreamName: STREAM,
  startFromHead: true,
  limit,
  nextToken,
});

beforeEach(() => cw.reset());

describe('CloudWatchLogReader: forward paging', () => {
  it('pages through three pages to the end; the end is the same token handed back', async () => {
    cw.on(GetLogEventsCommand)
      .resolvesOnce({ events: [event(1), event(2)], nextForwardToken: 'f/2', nextBackwardToken: 'b/0' })
      .resolvesOnce({ events: [event(3), event(4)], nextForwardToken: 'f/4', nextBackwardToken: 'b/2' })
      .resolvesOnce({ events: [event(5)], nextForwardToken: 'f/5', nextBackwardToken: 'b/4' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/5', nextBackwardToken: 'b/5' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/5', nextBackwardToken: 'b/5' });

    const p1 = await reader.read(job, { limit: 2 });
    const p2 = await reader.read(job, { limit: 2, cursor: p1.next_cursor });
    const p3 = await reader.read(job, { limit: 2, cursor: p2.next_cursor });
    const p4 = await reader.read(job, { limit: 2, cursor: p3.next_cursor });

    expect([p1, p2, p3, p4].map((p) => [textOf(p.lines), p.next_cursor, p.at_end])).toEqual([
      [['line 1', 'line 2'], 'f/2', false],
      [['line 3', 'line 4'], 'f/4', false],
      [['line 5'], 'f/5', true],
      [[], 'f/5', true],
    ]);
    expect(inputs()).toEqual([
      forward(2, undefined),
      forward(2, 'f/2'),
      forward(2, 'f/4'),
      forward(1, 'f/5'), // a short page is not proof of the end: ask once more for the rest
      forward(2, 'f/5'),
    ]);
  });

  it('reads on past empty pages before the end', async () => {
    cw.on(GetLogEventsCommand)
      .resolvesOnce({ events: [], nextForwardToken: 'f/11' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/12' })
      .resolvesOnce({ events: [event(7)], nextForwardToken: 'f/13' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/13' });

    const page = await reader.read(job, { limit: 3, cursor: 'f/10' });

    expect(page).toEqual({
      lines: [{ ts: '2026-05-01T10:00:07.000Z', stream: 'stdout', text: 'line 7' }],
      next_cursor: 'f/13',
      at_end: true,
    });
    expect(inputs()).toEqual([
      forward(3, 'f/10'),
      forward(3, 'f/11'),
      forward(3, 'f/12'),
      forward(2, 'f/13'),
    ]);
  });

  it('stops after a bounded number of empty pages without claiming the end', async () => {
    let n = 20;
    cw.on(GetLogEventsCommand).callsFake(async () => ({ events: [], nextForwardToken: `f/${++n}` }));

    const page = await reader.read(job, { limit: 10, cursor: 'f/20' });

    expect(page).toEqual({ lines: [], next_cursor: 'f/25', at_end: false });
    expect(inputs()).toHaveLength(5);
  });

  it('keeps each line of the runner as written, and raw messages as stdout with the event time', async () => {
    const stderr = { ts: '2026-05-01T10:00:00.100Z', stream: 'stderr', text: 'warn: x\n  y "quoted" ✓' };
    cw.on(GetLogEventsCommand)
      .resolvesOnce({
        events: [
          { timestamp: 1777629600000, message: JSON.stringify(stderr) },
          { timestamp: 1777629601000, message: 'node: a crash stack line' },
          { timestamp: 1777629602000, message: '{"not": "a log line"}' },
        ],
        nextForwardToken: 'f/3',
      })
      .resolvesOnce({ events: [], nextForwardToken: 'f/3' });

    const page = await reader.read(job, { limit: 10 });

    expect(page.lines).toEqual([
      stderr,
      { ts: '2026-05-01T10:00:01.000Z', stream: 'stdout', text: 'node: a crash stack line' },
      { ts: '2026-05-01T10:00:02.000Z', stream: 'stdout', text: '{"not": "a log line"}' },
    ]);
  });
});

describe('CloudWatchLogReader: tail', () => {
  it('returns the last N lines and a cursor that continues right after them', async () => {
    cw.on(GetLogEventsCommand)
      .resolvesOnce({
        events: [event(7), event(8), event(9)],
        nextForwardToken: 'f/9',
        nextBackwardToken: 'b/6',
      })
      .resolvesOnce({ events: [event(10)], nextForwardToken: 'f/10' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/10' });

    const tail = await reader.read(job, { limit: 100, tail: 3 });
    const next = await reader.read(job, { limit: 100, cursor: tail.next_cursor });

    expect(textOf(tail.lines)).toEqual(['line 7', 'line 8', 'line 9']);
    expect(tail).toMatchObject({ next_cursor: 'f/9', at_end: true });
    expect(textOf(next.lines)).toEqual(['line 10']);
    expect(inputs()).toEqual([
      { logGroupName: GROUP, logStreamName: STREAM, startFromHead: false, limit: 3 },
      forward(100, 'f/9'),
      forward(99, 'f/10'),
    ]);
  });

  it('walks back while the newest page comes back short, stopping at the start of the stream', async () => {
    cw.on(GetLogEventsCommand)
      .resolvesOnce({ events: [event(5)], nextForwardToken: 'f/5', nextBackwardToken: 'b/4' })
      .resolvesOnce({ events: [event(3), event(4)], nextBackwardToken: 'b/2' })
      .resolvesOnce({ events: [], nextBackwardToken: 'b/2' });

    const tail = await reader.read(job, { limit: 100, tail: 5 });

    expect(textOf(tail.lines)).toEqual(['line 3', 'line 4', 'line 5']);
    expect(tail.next_cursor).toBe('f/5');
    expect(inputs()).toEqual([
      { logGroupName: GROUP, logStreamName: STREAM, startFromHead: false, limit: 5 },
      { logGroupName: GROUP, logStreamName: STREAM, nextToken: 'b/4', limit: 4 },
      { logGroupName: GROUP, logStreamName: STREAM, nextToken: 'b/2', limit: 2 },
    ]);
  });
});

describe('CloudWatchLogReader: before the stream exists, cursors, delete', () => {
  it('a missing stream is an empty log at its end, resumable from the start', async () => {
    cw.on(GetLogEventsCommand)
      .rejectsOnce(
        new ResourceNotFoundException({ message: 'The specified log stream does not exist.', $metadata: {} }),
      )
      .resolvesOnce({ events: [event(1)], nextForwardToken: 'f/1' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/1' });

    const empty = await reader.read(job, { limit: 10 });
    expect(empty).toEqual({ lines: [], next_cursor: 'head', at_end: true });

    const later = await reader.read(job, { limit: 10, cursor: empty.next_cursor });
    expect(textOf(later.lines)).toEqual(['line 1']);
    expect(inputs()[1]).toEqual(forward(10, undefined));
  });

  it('a job without a task yet has an empty log and no call is made', async () => {
    expect(await reader.read({ job_id: 'job_01', runner_ref: null }, { limit: 10 })).toEqual({
      lines: [],
      next_cursor: 'head',
      at_end: true,
    });
    expect(cw.calls()).toHaveLength(0);
  });

  it('refuses a cursor the service cannot have issued, without a call', async () => {
    for (const cursor of ['garbage', 'b/123', 'f/', `f/${'1'.repeat(600)}`, 'f/1 2']) {
      await expect(reader.read(job, { limit: 10, cursor })).rejects.toBeInstanceOf(InvalidRequestError);
    }
    expect(cw.calls()).toHaveLength(0);
  });

  it('turns an expired token into a clear 400', async () => {
    cw.on(GetLogEventsCommand).rejects(
      new InvalidParameterException({ message: 'The specified nextToken is invalid.', $metadata: {} }),
    );
    await expect(reader.read(job, { limit: 10, cursor: 'f/42' })).rejects.toThrow(
      'cursor has expired or is no longer valid (CloudWatch Logs tokens last 24 hours)',
    );
  });

  it('deletes the task stream; a missing stream or task is a no-op', async () => {
    cw.on(DeleteLogStreamCommand)
      .resolvesOnce({})
      .rejectsOnce(new ResourceNotFoundException({ message: 'gone', $metadata: {} }));

    await reader.delete(job);
    await reader.delete(job);
    await reader.delete({ job_id: 'job_02', runner_ref: null });

    expect(cw.commandCalls(DeleteLogStreamCommand).map((c) => c.args[0].input)).toEqual([
      { logGroupName: GROUP, logStreamName: STREAM },
      { logGroupName: GROUP, logStreamName: STREAM },
    ]);
  });
});

/**
 * A stream with GetLogEvents' documented token behaviour: a forward token marks a position (plus a
 * generation, so an empty page "before the end" hands out a new token for the same place); at the
 * end the given token comes back; pages may hold fewer events than asked (the 1 MB cap).
 */
class FakeStream {
  readonly events: ReturnType<typeof event>[] = [];
  private generation = 0;

  constructor(private readonly quirks: { emptyPages: boolean[]; caps: number[] }) {}

  append(count: number): void {
    for (let i = 0; i < count; i++) this.events.push(event(this.events.length));
  }

  getLogEvents(input: GetLogEventsCommandInput): Partial<GetLogEventsCommandOutput> {
    expect(input.startFromHead).toBe(true);
    const pos = input.nextToken ? Number(input.nextToken.split('/')[1]) : 0;
    if (this.quirks.emptyPages.shift())
      return { events: [], nextForwardToken: `f/${pos}/${++this.generation}` };
    const take = Math.min(
      input.limit ?? 10_000,
      this.quirks.caps.shift() ?? 10_000,
      this.events.length - pos,
    );
    if (take === 0 && input.nextToken) return { events: [], nextForwardToken: input.nextToken };
    return {
      events: this.events.slice(pos, pos + take),
      nextForwardToken: `f/${pos + take}/${this.generation}`,
    };
  }
}

describe('CloudWatchLogReader: paging by cursor never skips or repeats', () => {
  it('holds for any page sizes, empty pages and lines appended while reading', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.boolean(), { maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 40 }),
        async (appends, limits, emptyPages, caps) => {
          cw.reset();
          const stream = new FakeStream({ emptyPages, caps });
          cw.on(GetLogEventsCommand).callsFake(async (input) => stream.getLogEvents(input));
          const seen: string[] = [];
          let cursor: string | undefined;
          for (let round = 0; round < 200; round++) {
            if (appends.length && round % 2 === 0) stream.append(appends.shift() ?? 0);
            const page = await reader.read(job, { limit: limits[round % limits.length]!, cursor });
            seen.push(...textOf(page.lines));
            cursor = page.next_cursor;
            if (page.at_end && appends.length === 0) break;
          }
          expect(seen).toEqual(stream.events.map((_, i) => `line ${i}`));
        },
      ),
      { numRuns: 200 },
    );
  });
});
