/**
 * The runner's side of the job lifecycle: keeps a running job's stage and per-cell progress,
 * writes it at most every `intervalMs` (a 5,000-cell notebook must not cost 5,000 writes) and at
 * once on stage changes, and writes the final state. Every write is a lifecycle transition,
 * conditional on the job still running, so a cancel or a sweep that ended the job first stands.
 */
import { StateConflictError } from '../../lambda/core/errors.ts';
import {
  percentOf,
  type JobError,
  type JobRecord,
  type JobStatus,
  type Progress,
  type Stage,
} from '../../lambda/core/job.ts';
import { transitions, type Lifecycle } from '../../lambda/core/lifecycle.ts';
import type { LogFn } from '../../lambda/core/logging.ts';

/** How a run ended ('skipped': the job was not running, so nothing is written). */
export interface RunOutcome {
  status: JobStatus | 'skipped';
  error: JobError | null;
}

export class ProgressReporter {
  private progress: Progress;
  private stageNow: Stage | null;
  private lastWrite = 0;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private ended = false;
  /** Set once the executed notebook is stored; recorded with the final state. */
  outputSaved = false;

  constructor(
    private readonly lifecycle: Lifecycle,
    private readonly job: JobRecord,
    private readonly intervalMs: number,
    private readonly log: LogFn,
  ) {
    this.progress = { ...job.progress };
    this.stageNow = job.stage;
  }

  setTotal(total: number): void {
    this.progress = { ...this.progress, cells_total: total, cells_executed: 0, percent: percentOf(0, total) };
  }

  stage(stage: Stage): Promise<void> {
    if (this.stageNow === stage) return this.writing;
    this.stageNow = stage;
    return this.write();
  }

  cellStarted(index: number, preview: string): void {
    this.progress = { ...this.progress, current_cell: { index, source_preview: preview } };
    this.schedule();
  }

  cellDone(): void {
    const executed = this.progress.cells_executed + 1;
    this.progress = {
      ...this.progress,
      cells_executed: executed,
      percent: percentOf(executed, this.progress.cells_total),
    };
    this.schedule();
  }

  async finish(outcome: RunOutcome, say: (text: string) => void): Promise<void> {
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    await this.writing;
    if (outcome.status === 'skipped') return;
    const progress =
      outcome.status === 'completed' ? { ...this.progress, current_cell: null } : this.progress;
    const ending = transitions.ended(outcome.status, outcome.error, new Date(), {
      from: ['running'],
      progress,
      outputSaved: this.outputSaved,
    });
    try {
      await this.lifecycle.apply(this.job, ending);
    } catch (error) {
      if (!(error instanceof StateConflictError)) throw error;
      // Cancelled (or failed by the sweep) while we ran: that state stands, with the saved notebook.
      say(`job is already ${error.current.status}; the runner's ${outcome.status} was not recorded`);
      if (this.outputSaved) await this.lifecycle.applyIfCurrent(this.job, transitions.outputSaved());
    }
  }

  private schedule(): void {
    if (this.timer || this.ended) return;
    const wait = Math.max(0, this.lastWrite + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.write();
    }, wait);
  }

  private write(): Promise<void> {
    if (this.ended) return this.writing;
    this.lastWrite = Date.now();
    const change = transitions.progress(this.stageNow, this.progress, new Date());
    this.writing = this.writing
      // A job cancelled meanwhile refuses progress writes (the engine is being stopped anyway).
      .then(() => this.lifecycle.applyIfCurrent(this.job, change))
      .then(
        () => undefined,
        (error: unknown) => {
          // Other failures only delay progress: the final state write is the one that must land.
          this.log('progress write failed', { error });
        },
      );
    return this.writing;
  }
}
