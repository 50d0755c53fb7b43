/**
 * The job lifecycle: the one place that decides what each state change writes. Pure builders make
 * a `Transition` (the changes, and the statuses the job must be in for them to apply, checked
 * against TRANSITIONS in job.ts); `Lifecycle` applies one through the store as a conditional write
 * and publishes the state change. JobService (submit, dispatch, cancel, reconciliation, the sweep)
 * and the runner's progress reporter both go through here, so a terminal state is built once and
 * can never be overwritten.
 */
import { StateConflictError } from './errors.ts';
import {
  canTransition,
  emptyProgress,
  isTerminal,
  sourcesOf,
  stateChange,
  TERMINAL_STATUSES,
  type JobChanges,
  type JobError,
  type JobRecord,
  type JobStatus,
  type Progress,
  type Stage,
} from './job.ts';
import type { JobEventPublisher, JobStore } from './ports.ts';

/** One state change: what to write, applied only while the job's status is one of `from`. */
export interface Transition {
  from: readonly JobStatus[];
  changes: JobChanges;
}

/** The statuses a move to `to` may start from: all TRANSITIONS allows, or a subset of it. */
function sources(to: JobStatus, only?: readonly JobStatus[]): readonly JobStatus[] {
  if (!only) return sourcesOf(to);
  const bad = only.filter((from) => !canTransition(from, to));
  if (bad.length > 0) throw new Error(`no transition ${bad.join('|')} -> ${to}`);
  return only;
}

/** What a job being submitted is made of; the lifecycle fills in the state. */
export type NewJob = Omit<
  JobRecord,
  | 'status'
  | 'stage'
  | 'progress'
  | 'created_at'
  | 'started_at'
  | 'updated_at'
  | 'ended_at'
  | 'deadline_at'
  | 'attempt'
  | 'output_saved'
  | 'input_parameterized'
  | 'error'
  | 'runner_ref'
  | 'attempts'
  | 'launch_attempts'
  | 'launch_retry_at'
  | 'launch_deadline_at'
  | 'last_launch_error'
  | 'launch_generation'
>;

export const transitions = {
  /** A new job record: queued, its stored input already parameterized with `cellsTotal` cells to run. */
  submitted(job: NewJob, cellsTotal: number, now: Date): JobRecord {
    const at = now.toISOString();
    return {
      ...job,
      status: 'queued',
      stage: null,
      progress: emptyProgress(cellsTotal),
      created_at: at,
      started_at: null,
      updated_at: at,
      ended_at: null,
      deadline_at: null,
      attempt: 0,
      output_saved: false,
      input_parameterized: true,
      error: null,
      runner_ref: null,
    };
  },

  /** queued -> running: a slot was taken; the deadline runs from now. */
  started(job: Pick<JobRecord, 'timeout_seconds' | 'attempt'>, now: Date): Transition {
    return {
      from: sources('running', ['queued']),
      changes: {
        status: 'running',
        stage: 'provisioning',
        started_at: now.toISOString(),
        updated_at: now.toISOString(),
        deadline_at: new Date(now.getTime() + job.timeout_seconds * 1000).toISOString(),
        attempt: job.attempt + 1,
      },
    };
  },

  /** The launcher's handle of a running job's runner (no status change). */
  runnerAssigned(runnerRef: string): Transition {
    return { from: ['running'], changes: { runner_ref: runnerRef } };
  },

  /** Where a running job is and how far it got (no status change). */
  progress(stage: Stage | null, progress: Progress, now: Date): Transition {
    return { from: ['running'], changes: { stage, progress, updated_at: now.toISOString() } };
  },

  /**
   * The job ends as `status`. `from` narrows the sources TRANSITIONS allows (the runner ends only a
   * running job; cancel decides on the status it saw). With `outputSaved`, the executed notebook's
   * presence is recorded in the same write.
   */
  ended(
    status: JobStatus,
    error: JobError | null,
    now: Date,
    options: { from?: readonly JobStatus[]; progress?: Progress; outputSaved?: boolean } = {},
  ): Transition {
    if (!isTerminal(status)) throw new Error(`${status} is not an ending`);
    return {
      from: sources(status, options.from),
      changes: {
        status,
        stage: null,
        ended_at: now.toISOString(),
        updated_at: now.toISOString(),
        error,
        ...(options.progress ? { progress: options.progress } : {}),
        ...(options.outputSaved ? { output_saved: true } : {}),
      },
    };
  },

  /** Cancelled by its caller, from the status it was seen in (queued or running). */
  cancelled(seen: JobStatus, now: Date): Transition {
    return transitions.ended('cancelled', null, now, { from: [seen] });
  },

  /** A running job's runner is gone without a result (process exit, task stopped, never picked up). */
  runnerLost(message: string, now: Date): Transition {
    return transitions.ended('failed', { type: 'infrastructure', message }, now, { from: ['running'] });
  },

  /** A running job whose launch failed. */
  launchFailed(message: string, now: Date): Transition {
    return transitions.runnerLost(`the job could not be started: ${message}`, now);
  },

  /**
   * running -> queued: the platform could not take the job now (capacity, quota, throttling). The
   * start is undone (its attempt number too: nothing ran), and the job waits for its next launch
   * try at `retryAt`, failing once a try fails after `deadlineAt`. With `nothingStarted`, the next
   * try gets a fresh launch token; else it reuses this one, so a task this try may have started is
   * found again instead of doubled.
   */
  launchDeferred(
    job: Pick<JobRecord, 'attempt' | 'priority' | 'launch_attempts' | 'launch_generation'>,
    launch: { error: string; retryAt: Date; deadlineAt: Date; nothingStarted: boolean },
    now: Date,
  ): Transition {
    return {
      from: sources('queued', ['running']),
      changes: {
        ...backInQueue(job, now),
        attempt: job.attempt - 1,
        launch_attempts: (job.launch_attempts ?? 0) + 1,
        launch_retry_at: launch.retryAt.toISOString(),
        launch_deadline_at: launch.deadlineAt.toISOString(),
        last_launch_error: launch.error,
        launch_generation: (job.launch_generation ?? 0) + (launch.nothingStarted ? 1 : 0),
      },
    };
  },

  /**
   * running -> queued as a new attempt: the run was lost to infrastructure (a Fargate Spot
   * interruption, a task that failed to start). The attempt goes into the job's history; the next
   * start counts the next attempt, with fresh launch tries.
   */
  requeued(
    job: Pick<JobRecord, 'attempt' | 'priority' | 'started_at' | 'attempts' | 'progress'>,
    reason: string,
    now: Date,
  ): Transition {
    const ended = { attempt: job.attempt, started_at: job.started_at, ended_at: now.toISOString(), reason };
    return {
      from: sources('queued', ['running']),
      changes: {
        ...backInQueue(job, now),
        progress: emptyProgress(job.progress.cells_total),
        attempts: [...(job.attempts ?? []), ended],
        launch_attempts: 0,
        launch_retry_at: null,
        launch_deadline_at: null,
        last_launch_error: null,
      },
    };
  },

  /** A running job past its deadline plus grace, stopped by the sweep. */
  timedOut(job: Pick<JobRecord, 'timeout_seconds'>, now: Date): Transition {
    const message = `the job ran past its timeout of ${job.timeout_seconds} s and was stopped`;
    return transitions.ended('failed', { type: 'timeout', message }, now, { from: ['running'] });
  },

  /**
   * The executed notebook was saved for a job that had already ended by someone else's decision
   * (cancelled, or failed by the sweep, while the runner saved): only an ended job takes it.
   */
  outputSaved(): Transition {
    return { from: TERMINAL_STATUSES, changes: { output_saved: true } };
  },
};

/** What a running job going back to the queue resets: it has no run, no runner, no deadline. */
function backInQueue(job: Pick<JobRecord, 'priority'>, now: Date): JobChanges {
  return {
    status: 'queued',
    stage: null,
    started_at: null,
    deadline_at: null,
    runner_ref: null,
    error: null,
    updated_at: now.toISOString(),
    priority: job.priority,
  };
}

/** Applies transitions: conditional write, then the published state change. */
export class Lifecycle {
  /**
   * `ended`, given by the service (not the runner): called after a transition it applied ended a
   * job. Those ends (a queued job cancelled or never launched, a lost or timed-out runner) have no
   * runner left to tidy up after the job, so the service does (the runner's own end does it itself).
   */
  constructor(
    private readonly deps: {
      store: JobStore;
      events?: JobEventPublisher;
      ended?: (job: JobRecord) => Promise<void>;
    },
  ) {}

  /** Records a submitted job (fails with ConflictError if the id exists) and publishes it. */
  async create(job: JobRecord): Promise<void> {
    await this.deps.store.create(job);
    await this.deps.events?.publish(stateChange(job, null));
  }

  /**
   * Applies `transition` to `job` (as the caller last saw it); publishes when the status changed.
   * Throws StateConflictError carrying the job as it now is when it is in none of `from`, or has
   * moved to another attempt: a requeued job's earlier runner (or anyone who saw that attempt)
   * can never write over the new one.
   */
  async apply(job: JobRecord, transition: Transition): Promise<JobRecord> {
    const { job_id, attempt } = job;
    const updated = await this.deps.store.update(job_id, transition.from, transition.changes, attempt);
    if (transition.changes.status !== undefined && transition.changes.status !== job.status)
      await this.deps.events?.publish(stateChange(updated, job.status));
    if (isTerminal(updated.status) && !isTerminal(job.status)) await this.deps.ended?.(updated);
    return updated;
  }

  /** As `apply`, but a job that moved on meanwhile (someone else decided first) answers null. */
  async applyIfCurrent(job: JobRecord, transition: Transition): Promise<JobRecord | null> {
    try {
      return await this.apply(job, transition);
    } catch (error) {
      if (error instanceof StateConflictError) return null;
      throw error;
    }
  }
}
