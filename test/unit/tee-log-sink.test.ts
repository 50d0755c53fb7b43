/**
 * The AWS runner's two log sinks behind one: every line to each, behind while either is, flushed
 * together.
 */
import { describe, expect, it } from 'vitest';
import { TeeLogSink } from '../../lambda/adapters/tee-log-sink.ts';
import type { LogLine, LogSink } from '../../lambda/core/ports.ts';

class SlowSink implements LogSink {
  lines: LogLine[] = [];
  flushed = 0;
  backlogged = false;
  private waiters: Array<() => void> = [];
  write(line: LogLine): void {
    this.lines.push(line);
  }
  async flush(): Promise<void> {
    this.flushed += 1;
  }
  drained(): Promise<void> {
    return this.backlogged ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve();
  }
  catchUp(): void {
    this.backlogged = false;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

const line: LogLine = { ts: '2026-12-01T10:00:00.000Z', stream: 'stdout', text: 'hi' };

describe('TeeLogSink', () => {
  it('writes and flushes every line to each sink, and is behind until the slowest catches up', async () => {
    const plain: LogLine[] = [];
    const simple: LogSink = { write: (l) => void plain.push(l), flush: async () => undefined };
    const slow = new SlowSink();
    const tee = new TeeLogSink([simple, slow]);
    tee.write(line);
    expect(plain).toEqual([line]);
    expect(slow.lines).toEqual([line]);
    expect(tee.backlogged).toBe(false);

    slow.backlogged = true;
    expect(tee.backlogged).toBe(true);
    let drained = false;
    const waiting = tee.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(drained).toBe(false);
    slow.catchUp();
    await waiting;
    expect(tee.backlogged).toBe(false);

    await tee.flush();
    expect(slow.flushed).toBe(1);
  });
});
