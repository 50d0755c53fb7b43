/**
 * The runner: runs one job. Loads it, fetches the notebook stored at submit (already parameterized)
 * and runs exactly that, drives an engine, reports stage and per-cell progress (throttled), streams
 * output to the log, saves the executed notebook on every ending, and writes the final state
 * through the lifecycle (conditional on `running`). The same code runs as a local child process and
 * as the container entrypoint on ECS.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SETTINGS } from '../../lambda/core/settings.ts';
import { errorMessage } from '../../lambda/core/errors.ts';
import { ProgressReporter, type RunOutcome } from './progress-reporter.ts';
import { Lifecycle } from '../../lambda/core/lifecycle.ts';
import { jobFields, textLog, type LogFn } from '../../lambda/core/logging.ts';
import { isTerminal, outputKey, type JobError, type JobRecord } from '../../lambda/core/job.ts';
import type {
  Artifacts,
  JobEventPublisher,
  JobStore,
  LogSink,
  NotebookRenderer,
} from '../../lambda/core/ports.ts';
import {
  cellSource,
  cellTags,
  executableCodeCells,
  parseNotebookText,
  sourcePreview,
  type Notebook,
} from '../../lambda/notebook/notebook.ts';
import { injectParameters, languageForKernel } from '../../lambda/notebook/parameters.ts';
import { type EngineEvent, outcomeOf, stopper, killLeftover } from './engine-process.ts';
import { saveFiles, saveHtml } from './work-files.ts';
import { dropRedactedValues } from './secrets.ts';
import { readKernelFile } from '../../lambda/kernels/engine-sandbox.ts';
import { freshWorkDir, startEngine, type WarmEngine } from './engine-process.ts';
import { placeInputFiles } from './work-files.ts';
import type { KernelAwsAccess } from './kernel-credentials.ts';
import type { EngineName } from '../../lambda/kernels/python.ts';
import { engineScript, ENGINES_DIR } from '../../lambda/kernels/engines.ts';
import {
  BoundedLogSink,
  boundedOutput,
  DEFAULT_LIMITS,
  isFlowControlled,
  LineSplitter,
  type RunnerLimits,
} from './limits.ts';
import { Redactor } from './redact.ts';
import {
  resolveSecrets,
  redactedNotebook,
  SecretUnavailableError,
  withRedactedParameters,
  type SecretSources,
} from './secrets.ts';

/**
 * Why a running job is asked to stop: cancelled by its caller; past its timeout; its local server
 * is gone; or its container was stopped by the platform (ECS SIGTERM without a cancel, e.g. a
 * Fargate Spot interruption).
 */
export type StopReason = 'cancel' | 'timeout' | 'orphaned' | 'interrupted';

export interface RunnerDeps {
  store: JobStore;
  artifacts: Artifacts;
  logs: LogSink;
  python: string;
  engine: EngineName;
  /** A scratch folder for this job's notebooks. */
  workDir: string;
  /** Where the engine drivers are (default: container/engines beside this file). */
  enginesDir?: string;
  /** Minimum time between progress writes (stage changes are written at once). */
  progressIntervalMs?: number;
  /**
   * How long the engine gets to save after SIGTERM before the sandbox kills it and everything the
   * job started.
   */
  stopGraceMs?: number;
  /** The user the engine and kernel run as, when not the runner's own (the runner must be root). */
  kernelUser?: string;
  /** More variable names an operator lets through to kernels (NOTEBOOK_JOBS_KERNEL_ENV_PASS). */
  kernelEnvPass?: readonly string[];
  /** Where the final state change is published (AWS: EventBridge). */
  events?: JobEventPublisher;
  /**
   * Renders an HTML copy of the executed notebook beside it before the job ends (AWS, where the
   * API cannot run nbconvert). Local mode renders on request instead.
   */
  renderer?: NotebookRenderer;
  /** What the job may produce (default DEFAULT_LIMITS). */
  limits?: RunnerLimits;
  /**
   * The tenant the runner was started for (AWS: its credentials are scoped to that tenant's
   * folders); a job of another tenant is refused.
   */
  tenant?: string;
  /**
   * AWS access for the job's kernel (AWS mode: its tenant's notebook role, if any). Unset or
   * without a role: the kernel has no AWS credentials.
   */
  kernelAws?: (job: JobRecord, say: (text: string) => void) => Promise<KernelAwsAccess | null>;
  /**
   * An engine started before the job was known, its kernel in `workDir` (the runner's warm mode,
   * engine-process.ts). Used when the job fits it; otherwise it is shut down and the job starts cold.
   */
  warm?: WarmEngine;
  /** The runner's own operational log (not the job's): default text lines on stderr. */
  log?: LogFn;
  /** Where the job's secret references are resolved (secrets.ts); unset: a job with secrets fails. */
  secrets?: SecretSources;
}

export type { RunOutcome };

/** Lets the entry point ask a running job to stop (SIGTERM from cancel, parent gone). */
export class RunnerControl {
  private handler: ((reason: StopReason) => void) | null = null;
  private pending: StopReason | null = null;

  /** The first stop asked for, if any. */
  reason: StopReason | null = null;

  stop(reason: StopReason): void {
    this.reason ??= reason;
    if (this.handler) this.handler(reason);
    else this.pending ??= reason;
  }

  onStop(handler: (reason: StopReason) => void): void {
    this.handler = handler;
    if (this.pending) handler(this.pending);
  }
}

export async function runJob(
  jobId: string,
  given: RunnerDeps,
  control = new RunnerControl(),
): Promise<RunOutcome> {
  // Everything written to the log goes through the job's limits first, and its secrets come out.
  const redactor = new Redactor();
  const logs = new BoundedLogSink(given.logs, given.limits ?? DEFAULT_LIMITS, redactor);
  const deps = { ...given, logs };
  const { store } = deps;
  const say = (text: string) => logs.note(text);
  const job = await store.get(jobId);
  if (!job) throw new Error(`job ${jobId} does not exist`);
  if (job.status !== 'running') {
    say(`job is ${job.status}; nothing to run`);
    if (isTerminal(job.status)) await dropRedactedValues(job, deps.artifacts, textLog());
    await logs.flush();
    return { status: 'skipped', error: null };
  }
  say(`runner started: attempt ${job.attempt}, engine ${deps.engine}, kernel ${job.kernel}`);
  const log: LogFn = (message, fields) => (deps.log ?? textLog())(message, { ...jobFields(job), ...fields });
  const lifecycle = new Lifecycle({ store, events: deps.events });
  const reporter = new ProgressReporter(
    lifecycle,
    job,
    deps.progressIntervalMs ?? SETTINGS.progressIntervalMs.default,
    log,
  );

  let outcome: RunOutcome;
  let engineGone: Promise<void> = Promise.resolve();
  const kernelAws: { access: KernelAwsAccess | null } = { access: null };
  try {
    ({ outcome, engineGone } = await execute(job, deps, control, reporter, say, log, kernelAws, redactor));
  } catch (error) {
    if (error instanceof SecretUnavailableError) {
      outcome = { status: 'failed', error: { type: 'secret_unavailable', message: error.message } };
    } else {
      say(`runner error: ${errorMessage(error)}`);
      log('runner error; the job fails', { error });
      outcome = {
        status: 'failed',
        error: { type: 'infrastructure', message: `runner error: ${errorMessage(error)}` },
      };
    }
  }
  // A traceback or an engine's last words may hold a secret: the stored error must not.
  outcome = { ...outcome, error: redactor.error(outcome.error) };
  // The log is complete before the job shows as ended: a client that stops reading at the end
  // must not miss the last lines.
  if (outcome.status !== 'skipped')
    say(`job ${outcome.status}${outcome.error ? `: ${outcome.error.message}` : ''}`);
  else if (control.reason === 'interrupted')
    say(
      'the task was stopped (SIGTERM) without a cancel, e.g. a Fargate Spot interruption; the partial notebook was saved and the job is left to be requeued or failed',
    );
  await logs.flush();
  await reporter.finish(outcome, say);
  await logs.flush();
  await engineGone;
  await kernelAws.access?.stop();
  // An interrupted run (skipped) leaves the job to be requeued: its next attempt needs the values.
  if (outcome.status !== 'skipped') await dropRedactedValues(job, deps.artifacts, log);
  return outcome;
}

async function execute(
  job: JobRecord,
  deps: RunnerDeps,
  control: RunnerControl,
  reporter: ProgressReporter,
  say: (text: string) => void,
  log: LogFn,
  kernelAws: { access: KernelAwsAccess | null },
  redactor: Redactor,
): Promise<{ outcome: RunOutcome; engineGone: Promise<void> }> {
  if (deps.tenant !== undefined && job.tenant !== deps.tenant)
    throw new Error(`job ${job.job_id} belongs to another tenant than the runner was started for`);
  const { notebook, cellsTotal } = runnableNotebook(
    job,
    parseNotebookText(await deps.artifacts.read(job.notebook.uri)),
  );
  const stopGraceMs = deps.stopGraceMs ?? 20_000;
  // Secrets first: a job whose secret cannot be had fails before anything else starts for it.
  const jobVariables = job.secrets ? await resolveSecrets(job, deps.secrets ?? {}, redactor) : {};
  if (job.secrets) say(`secrets for the kernel: ${Object.keys(jobVariables).join(', ')}`);
  const runNotebook = await withRedactedParameters(job, notebook, deps.artifacts, redactor);
  kernelAws.access = deps.kernelAws ? await deps.kernelAws(job, say) : null;
  // A warm engine (its kernel already started) serves a job whose kernel it started and that needs
  // nothing else fixed at kernel start: no per-job kernel environment (the notebook role on AWS,
  // secrets), no input files (they are in the folder before the kernel starts, and the kernel's).
  const perJobEnv = kernelAws.access !== null || Object.keys(jobVariables).length > 0;
  const hasFiles = (job.input_files?.count ?? 0) > 0;
  let warm = deps.warm?.kernel === job.kernel && !perJobEnv && !hasFiles ? deps.warm : undefined;
  if (deps.warm && !warm)
    say(`the warm kernel (${deps.warm.kernel}) does not fit this job: starting a kernel for it`);
  if (warm)
    await warm.ready.catch((error: unknown) => {
      say(`${errorMessage(error)}; starting a kernel for the job`);
      warm = undefined;
    });
  if (deps.warm && !warm) await deps.warm.dispose();
  if (!warm) await freshWorkDir(deps.workDir);
  const inputs = await placeInputFiles(deps.artifacts, job, deps.workDir);
  if (inputs.size) say(`placed ${inputs.size} input file(s) in the working folder`);
  const inputPath = join(deps.workDir, 'input.ipynb');
  const outputPath = join(deps.workDir, 'output.ipynb');
  await writeFile(inputPath, JSON.stringify(runNotebook), { flag: 'wx' });
  reporter.setTotal(cellsTotal);
  await reporter.stage('starting_kernel');

  const cellTimeout = job.cell_timeout_seconds ?? null;
  const {
    child: engine,
    events,
    early,
  } = warm
    ? (say('using a warm kernel'),
      warm.take({ input: inputPath, output: outputPath, cell_timeout: cellTimeout }))
    : startEngine(
        {
          python: deps.python,
          engine: deps.engine,
          driver: engineScript(deps.engine, deps.enginesDir),
          enginesDir: deps.enginesDir ?? ENGINES_DIR,
          workDir: deps.workDir,
          kernelUser: deps.kernelUser,
          kernelEnvPass: deps.kernelEnvPass,
          notebookAws: kernelAws.access?.env,
          jobVariables,
          stopGraceMs,
        },
        [
          ...['--input', inputPath, '--output', outputPath, '--kernel', job.kernel],
          ...['--cwd', deps.workDir, '--events-fd', '3'],
          ...(cellTimeout ? ['--cell-timeout', String(cellTimeout)] : []),
        ],
      );
  engine.stdin?.end();
  const limits = deps.limits ?? DEFAULT_LIMITS;
  const ts = timestamps();
  const lines = new LineSplitter(
    (stream, text, truncated) =>
      deps.logs.write(truncated ? { ts: ts(), stream, text, truncated } : { ts: ts(), stream, text }),
    limits.maxLogLineBytes,
  );
  // While the log sink is behind, the engine's output waits in its pipes, not in this process.
  const keepUp = pauseWhileBehind(deps.logs, [engine.stdout, engine.stderr, engine.stdio[3] as Readable]);
  let engineErr = ''; // its tail, for the error of an engine that exits without a result
  for (const piece of early) lines.push('runner', piece.text);
  engine.stdout?.on('data', (chunk: Buffer) => {
    lines.push('runner', chunk.toString());
    keepUp();
  });
  engine.stderr?.on('data', (chunk: Buffer) => {
    engineErr = (engineErr + chunk.toString()).slice(-16 * 1024);
    lines.push('runner', chunk.toString());
    keepUp();
  });

  let stopReason: StopReason | null = null;
  const stopEngine = stopper(engine, stopGraceMs);
  control.onStop((reason) => {
    stopReason ??= reason;
    say(reason === 'cancel' ? 'stop requested: cancelling' : `stopping: ${reason}`);
    stopEngine();
  });
  const deadline = job.deadline_at ? Date.parse(job.deadline_at) - Date.now() : Infinity;
  const deadlineTimer = Number.isFinite(deadline)
    ? setTimeout(() => control.stop('timeout'), Math.max(0, deadline))
    : null;

  let finished: EngineEvent | null = null;
  let markFinished: (value: 'finished') => void = () => undefined;
  const finishedSeen = new Promise<'finished'>((resolve) => (markFinished = resolve));
  let kernelPid: number | null = null;
  events.on('line', (raw) => {
    let event: EngineEvent;
    try {
      event = JSON.parse(raw) as EngineEvent;
    } catch {
      say(`engine sent an unreadable event: ${raw.slice(0, 200)}`);
      return;
    }
    switch (event.event) {
      case 'started':
        // The count was fixed at submit from the stored notebook; an engine that counts otherwise
        // (another version, another rule for what runs) makes the progress percent wrong.
        if (event.cells_total !== undefined && event.cells_total !== cellsTotal) {
          say(`the engine will run ${event.cells_total} cells; the job counted ${cellsTotal}`);
          log('cells_total mismatch between the job and the engine', {
            cells_total: cellsTotal,
            engine_cells_total: event.cells_total,
          });
        }
        break;
      case 'kernel_started':
        kernelPid = event.pid ?? null;
        say('kernel started');
        void reporter.stage('executing');
        break;
      case 'cell_start': {
        const cell = notebook.cells[event.index ?? -1];
        reporter.cellStarted(event.index ?? 0, cell ? redactor.text(sourcePreview(cellSource(cell))) : '');
        break;
      }
      case 'output':
        lines.push(event.stream ?? 'stdout', event.text ?? '');
        break;
      case 'cell_done':
        lines.flushAll();
        if (event.status === 'error') say(`cell ${event.index} raised an error`);
        reporter.cellDone();
        break;
      case 'finished':
        if (event.stopped) say(event.stopped.message);
        finished = event;
        markFinished('finished');
        break;
    }
    keepUp();
  });

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    engine.on('close', (code, signal) => resolve({ code, signal })),
  );
  // `finished` comes once the notebook is written; the engine may still be shutting its kernel
  // down. Record the result now, but do not return before the engine (and its kernel) is gone.
  const finishedOrExited = await Promise.race([finishedSeen, exited]);
  const exit = finishedOrExited === 'finished' ? null : finishedOrExited;
  lines.flushAll();

  await reporter.stage('saving');
  let outputError: JobError | null = null;
  const written = await readKernelFile(outputPath);
  if (written) {
    const { body: bounded, error } = boundedOutput(written, notebook, limits.maxOutputBytes);
    const executed = redactedNotebook(bounded, notebook, redactor);
    outputError = error;
    if (error) say(error.message);
    await deps.artifacts.put(outputKey(job.tenant, job.job_id, job.notebook.name), executed);
    reporter.outputSaved = true;
    say('executed notebook saved');
    // Not for a stopped job: its stop timeout is for saving the notebook, not for extras.
    if (deps.renderer && !stopReason) await saveHtml(job, executed, deps.renderer, deps.artifacts, say);
  } else {
    say('the engine wrote no output notebook');
  }
  await saveFiles(job, deps, inputs, limits, say, redactor);
  let outcome = outcomeOf(job, finished, stopReason, exit, engineErr);
  // A notebook over the output limit fails a job that otherwise completed; other endings keep
  // their own cause (the log says the notebook was cut down).
  if (outputError && outcome.status === 'completed') outcome = { status: 'failed', error: outputError };
  const engineGone = exited.then(() => {
    if (deadlineTimer) clearTimeout(deadlineTimer);
    killLeftover(kernelPid);
  });
  return { outcome, engineGone };
}

/**
 * The notebook to run and how many cells it runs. A job submitted with its notebook already
 * parameterized (`input_parameterized`) runs as stored, with the count fixed at submit; an older
 * job's input still needs its parameters injected here, and is counted here.
 */
export function runnableNotebook(
  job: JobRecord,
  stored: Notebook,
): { notebook: Notebook; cellsTotal: number } {
  if (job.input_parameterized) {
    return { notebook: withoutErrorMarkers(stored), cellsTotal: job.progress.cells_total };
  }
  const language = languageForKernel(job.kernel, job.language);
  const hasParameters = Object.keys(job.parameters).length > 0;
  if (hasParameters && !language) throw new Error(`cannot render parameters for language ${job.language}`);
  const notebook = withoutErrorMarkers(
    hasParameters && language ? injectParameters(stored, job.parameters, language, job.kernel) : stored,
  );
  return { notebook, cellsTotal: executableCodeCells(notebook).length };
}

/** papermill's tag for the error-marker cells it inserts on a cell error (papermill/execute.py). */
const ERROR_MARKER_TAG = 'papermill-error-cell-tag';

/**
 * The notebook without error-marker cells of an earlier papermill run. Both engines drop them
 * before running (container/engines/outcome.py), so cell indices in their events refer to this.
 */
function withoutErrorMarkers(nb: Notebook): Notebook {
  const cells = nb.cells.filter((cell) => !cellTags(cell).includes(ERROR_MARKER_TAG));
  return cells.length === nb.cells.length ? nb : { ...nb, cells };
}

/**
 * The time now as an ISO string, made once per millisecond: one engine read is thousands of log
 * lines, and a Date and a string per line were a good part of what the runner allocated per line.
 */
function timestamps(): () => string {
  let ms = -1;
  let iso = '';
  return () => {
    const now = Date.now();
    if (now !== ms) iso = new Date((ms = now)).toISOString();
    return iso;
  };
}

/**
 * Backpressure from the log sink to the engine: returns a check, made after each piece of engine
 * output is handed to the sink, that pauses `streams` while the sink is backlogged and resumes them
 * once it has drained. A paused stream stops reading its pipe, so the engine blocks on its next
 * write and nothing is lost; at most what was already read (one pipe read per stream) is queued on
 * top of the sink's high-water mark.
 */
function pauseWhileBehind(logs: LogSink, streams: Array<Readable | null | undefined>): () => void {
  if (!isFlowControlled(logs)) return () => undefined;
  let paused = false;
  return () => {
    if (paused || !logs.backlogged) return;
    paused = true;
    for (const stream of streams) stream?.pause();
    void logs.drained().then(() => {
      paused = false;
      for (const stream of streams) stream?.resume();
    });
  };
}
