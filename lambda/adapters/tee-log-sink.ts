/**
 * One LogSink that writes every line to several (AWS mode: stdout for CloudWatch and the console,
 * S3 log pages for API and MCP reads). It is behind while any of them is, so the runner pauses the
 * engine until the slowest has caught up.
 */
import type { LogLine, LogSink } from '../core/ports.ts';

interface FlowControl {
  readonly backlogged: boolean;
  drained(): Promise<void>;
}

const flowControlled = (sink: LogSink): sink is LogSink & FlowControl =>
  typeof (sink as Partial<FlowControl>).drained === 'function';

export class TeeLogSink implements LogSink {
  constructor(private readonly sinks: readonly LogSink[]) {}

  write(line: LogLine): void {
    for (const sink of this.sinks) sink.write(line);
  }

  get backlogged(): boolean {
    return this.sinks.some((sink) => flowControlled(sink) && sink.backlogged);
  }

  /** Resolves once no sink is behind. */
  async drained(): Promise<void> {
    while (this.backlogged)
      await Promise.all(this.sinks.map((sink) => (flowControlled(sink) ? sink.drained() : undefined)));
  }

  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((sink) => sink.flush()));
  }
}
