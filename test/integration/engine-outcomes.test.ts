/**
 * The cross-engine behaviour table (issue 15): one small notebook per behaviour, one expected
 * outcome each, run as jobs by the runner with both engines and real kernels: the local engine
 * (nbclient driver) and the papermill driver against the fake papermill in
 * test/fixtures/fake-papermill (the image test runs the same rows with real papermill). The rule
 * itself is container/engines/outcome.py, after papermill 2.6.0's raise_for_execution_errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocumentClient } from '../../lambda/adapters/dynamodb/client.ts';
import { createJobTable } from '../../lambda/adapters/dynamodb/table.ts';
import { DynamoDbJobStore } from '../../lambda/adapters/dynamodb/dynamodb-job-store.ts';
import { FileArtifacts } from '../../lambda/adapters/file-artifacts.ts';
import { FileLogReader, FileLogSink, jobLogPath } from '../../lambda/adapters/file-logs.ts';
import { inputKey, outputKey, type JobStatus } from '../../lambda/core/job.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';
import { parseNotebookText, type Notebook as ParsedNotebook } from '../../lambda/notebook/notebook.ts';
import { summarizeNotebook, type ResultSummary } from '../../lambda/notebook/result-summary.ts';
import type { EngineName } from '../../lambda/kernels/python.ts';
import { runJob } from '../../container/runner/runner.ts';
import { codeCell, makeNotebook, markdownCell, type NotebookCell } from '../helpers/notebooks.ts';
import { TEST_PYTHON } from '../helpers/local-service.ts';
import { jobRecord } from '../helpers/jobs.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// The runner passes PYTHONPATH on to the engine (lambda/kernels/kernel-env.ts): the papermill
// driver finds the fake package there; the nbclient driver never imports papermill.
process.env.PYTHONPATH = join(ROOT, 'test/fixtures/fake-papermill');

const db = dynalite({ createTableMs: 0 });
const work = mkdtempSync(join(tmpdir(), 'notebook-jobs-outcomes-'));
const artifacts = new FileArtifacts({ root: join(work, 'artifacts'), workspace: work });
const logsFolder = join(work, 'logs');
const ids = new MonotonicJobIds();
let store: DynamoDbJobStore;

beforeAll(async () => {
  await new Promise<void>((r) => db.listen(0, '127.0.0.1', () => r()));
  const client = createDocumentClient({ endpoint: `http://127.0.0.1:${(db.address() as AddressInfo).port}` });
  await createJobTable(client, 'outcomes');
  store = new DynamoDbJobStore({ client, tableName: 'outcomes' });
});
afterAll(async () => {
  await new Promise<void>((r) => db.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

const MARKER_TAG = 'papermill-error-cell-tag';
const marker = (text: string): NotebookCell => ({ ...markdownCell(text), metadata: { tags: [MARKER_TAG] } });
const stale = (source: string): NotebookCell => ({
  ...codeCell(source),
  execution_count: 7,
  outputs: [{ output_type: 'error', ename: 'NameError', evalue: 'stale', traceback: [] }],
  metadata: { papermill: { status: 'failed', exception: true } },
});

interface Row {
  name: string;
  cells: NotebookCell[];
  parameters?: Record<string, unknown>;
  cellTimeout?: number;
  jobTimeoutSeconds?: number;
  expected: {
    status: JobStatus;
    type?: string;
    ename?: string;
    cellIndex?: number;
    /** Code cells (indices in the executed notebook) that ran: they have an execution count. */
    ran: number[];
    /** metadata.papermill.status of every cell of the executed notebook. */
    papermill: string[];
    /** Where the result summary says the notebook stopped itself. */
    stoppedAt?: number;
  };
  check?: (nb: ParsedNotebook, summary: ResultSummary, log: string[]) => void;
}

const ROWS: Row[] = [
  {
    name: 'success',
    cells: [codeCell('x = 1'), codeCell('print(x)')],
    expected: { status: 'completed', ran: [0, 1], papermill: ['completed', 'completed'] },
  },
  {
    name: 'an error in the middle',
    cells: [codeCell('a = 1'), codeCell('1 / 0'), codeCell('b = 2')],
    expected: {
      status: 'failed',
      type: 'cell_error',
      ename: 'ZeroDivisionError',
      cellIndex: 1,
      ran: [0, 1],
      papermill: ['completed', 'failed', 'pending'],
    },
  },
  ...['sys.exit(0)', 'sys.exit()'].map((exit): Row => ({
    name: exit,
    cells: [codeCell('a = 1'), codeCell(`import sys\n${exit}`), codeCell("print('never')")],
    expected: {
      status: 'completed',
      ran: [0, 1],
      // papermill marks the exiting cell failed (cell_exception) and leaves the rest pending
      papermill: ['completed', 'failed', 'pending'],
      stoppedAt: 1,
    },
    check: (nb, summary, log) => {
      expect(nb.metadata.papermill).toMatchObject({ exception: true });
      expect(summary.cells.map((c) => c.status)).toEqual(['ok', 'ok', 'not_run']);
      expect(summary.error).toBeNull();
      expect(log).toContainEqual(expect.stringMatching(/stopped itself at cell 1 .*did not run/));
    },
  })),
  {
    name: 'sys.exit(1)',
    cells: [codeCell('import sys\nsys.exit(1)'), codeCell('b = 2')],
    expected: {
      status: 'failed',
      type: 'cell_error',
      ename: 'SystemExit',
      cellIndex: 0,
      ran: [0],
      papermill: ['failed', 'pending'],
    },
    check: (_nb, summary) => expect(summary.stopped).toBeNull(),
  },
  {
    // IPython prints the UsageError and replies "error" with no error output: papermill's
    // "CellExecutionError", with the reply's ename kept (outcome.py)
    name: 'an unknown line magic',
    cells: [codeCell('a = 1'), codeCell('%no_such_magic'), codeCell('b = 2')],
    expected: {
      status: 'failed',
      type: 'cell_error',
      ename: 'UsageError',
      cellIndex: 1,
      ran: [0, 1],
      papermill: ['completed', 'failed', 'pending'],
    },
  },
  {
    name: 'a cell timeout',
    cells: [codeCell('a = 1'), codeCell('import time\ntime.sleep(30)'), codeCell('b = 2')],
    cellTimeout: 1,
    expected: {
      status: 'failed',
      type: 'timeout',
      cellIndex: 1,
      ran: [0, 1],
      // a departure from papermill, which leaves the cut-short cell and all after it "completed"
      papermill: ['completed', 'failed', 'pending'],
    },
  },
  {
    name: 'a job timeout',
    cells: [codeCell('a = 1'), codeCell('import time\ntime.sleep(60)'), codeCell('b = 2')],
    // long enough for a kernel to start on a loaded CI machine before the deadline
    jobTimeoutSeconds: 15,
    expected: {
      status: 'failed',
      type: 'timeout',
      ran: [0, 1],
      papermill: ['completed', 'failed', 'pending'],
    },
  },
  {
    name: 'input()',
    cells: [codeCell('answer = input("name? ")'), codeCell('b = 2')],
    expected: {
      status: 'failed',
      type: 'cell_error',
      ename: 'StdinNotImplementedError',
      cellIndex: 0,
      ran: [0],
      papermill: ['failed', 'pending'],
    },
  },
  {
    name: 'a display that is updated',
    cells: [codeCell("h = display('first', display_id=True)"), codeCell("h.update('second')")],
    expected: { status: 'completed', ran: [0, 1], papermill: ['completed', 'completed'] },
    check: (nb) => {
      const shown = nb.cells[0]?.outputs ?? [];
      expect(shown).toHaveLength(1);
      expect(shown[0]).toMatchObject({ output_type: 'display_data' });
      const data = (shown[0]?.data ?? {}) as Record<string, unknown>;
      expect([data['text/plain']].flat().join('')).toBe("'second'");
      expect(nb.cells[1]?.outputs).toEqual([]);
    },
  },
  {
    name: 'parameters given to a notebook without a parameters cell',
    cells: [codeCell('print(n * 2)')],
    parameters: { n: 21 },
    expected: { status: 'completed', ran: [0, 1], papermill: ['completed', 'completed'] },
    check: (nb, summary) => {
      // papermill's parameterize_notebook: a new first cell, tagged, with its "# Parameters" header
      expect(nb.cells[0]?.metadata.tags).toEqual(['injected-parameters']);
      expect([nb.cells[0]?.source].flat().join('')).toBe('# Parameters\nn = 21\n');
      expect(nb.metadata.papermill).toMatchObject({ parameters: { n: 21 } });
      expect(summary.cells[1]?.output_text).toBe('42\n');
    },
  },
  {
    name: 'stale error markers from an earlier run',
    cells: [marker('An Exception was encountered'), stale('a = 1'), marker('here'), stale('print(a)')],
    expected: { status: 'completed', ran: [0, 1], papermill: ['completed', 'completed'] },
    check: (nb) => {
      expect(nb.cells.every((c) => !(c.metadata.tags ?? []).includes(MARKER_TAG))).toBe(true);
      expect(nb.cells[0]?.outputs).toEqual([]);
      expect(nb.metadata.papermill).toMatchObject({ exception: null });
    },
  },
  {
    // nbclient runs on after a cell tagged raises-exception; papermill still fails the job on its
    // error output (raise_for_execution_errors), and so does the local engine
    name: 'an error in a cell tagged raises-exception',
    cells: [codeCell('1 / 0', ['raises-exception']), codeCell('b = 2')],
    expected: {
      status: 'failed',
      type: 'cell_error',
      ename: 'ZeroDivisionError',
      cellIndex: 0,
      ran: [0, 1],
      papermill: ['completed', 'completed'],
    },
  },
];

const NOTEBOOK_FIELDS = [
  'default_parameters',
  'duration',
  'end_time',
  'environment_variables',
  'exception',
  'input_path',
  'output_path',
  'parameters',
  'start_time',
  'version',
];
const CELL_FIELDS = ['duration', 'end_time', 'exception', 'start_time', 'status'];
// papermill 2.6.0: datetime.utcnow().isoformat(), UTC without an offset
const PAPERMILL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$/;

// At most this many jobs (kernels) at once: the rows run concurrently, on CI machines with 2 cores.
const MAX_JOBS = 3;
let jobsRunning = 0;
const waiting: Array<() => void> = [];

async function withJobSlot<T>(task: () => Promise<T>): Promise<T> {
  if (jobsRunning >= MAX_JOBS) await new Promise<void>((resolve) => waiting.push(resolve));
  jobsRunning++;
  try {
    return await task();
  } finally {
    jobsRunning--;
    waiting.shift()?.();
  }
}

async function runRow(engine: EngineName, row: Row) {
  return withJobSlot(() => runJobOf(engine, row));
}

async function runJobOf(engine: EngineName, row: Row) {
  const jobId = ids.jobId();
  const notebook = makeNotebook(row.cells);
  const uri = await artifacts.put(inputKey('local', jobId, 'nb.ipynb'), JSON.stringify(notebook));
  const outputUri = artifacts.uriFor(outputKey('local', jobId, 'nb.ipynb'));
  await store.create(
    jobRecord(jobId, {
      notebook: { name: 'nb.ipynb', uri },
      output_uri: outputUri,
      parameters: row.parameters ?? {},
      cell_timeout_seconds: row.cellTimeout ?? null,
      timeout_seconds: row.jobTimeoutSeconds ?? 3600,
    }),
  );
  const deadline = row.jobTimeoutSeconds ? new Date(Date.now() + row.jobTimeoutSeconds * 1000) : null;
  const job = await store.update(jobId, ['queued'], {
    status: 'running',
    stage: 'provisioning',
    started_at: new Date().toISOString(),
    deadline_at: deadline ? deadline.toISOString() : null,
    attempt: 1,
  });
  const logs = new FileLogSink(jobLogPath(logsFolder, jobId));
  try {
    await runJob(jobId, {
      store,
      artifacts,
      logs,
      python: TEST_PYTHON,
      engine,
      workDir: join(work, 'w', jobId),
      stopGraceMs: 5000,
    });
  } finally {
    await logs.close();
  }
  const ended = await store.get(jobId);
  const nb = parseNotebookText(await artifacts.read(outputUri));
  const page = await new FileLogReader(logsFolder).read(job, { limit: 10_000 });
  return { ended, nb, log: page.lines.map((l) => l.text) };
}

describe.each<EngineName>(['nbclient', 'papermill'])('the %s engine', (engine) => {
  it.concurrent.each(ROWS)('$name', { timeout: 120_000 }, async (row) => {
    const { ended, nb, log } = await runRow(engine, row);
    const { expected } = row;
    const context = `${row.name}: ${JSON.stringify(ended?.error)}\n${log.join('\n')}`;

    expect(ended?.status, context).toBe(expected.status);
    expect(ended?.error?.type, context).toBe(expected.type);
    expect(ended?.error?.ename ?? undefined, context).toBe(expected.ename);
    if (expected.cellIndex !== undefined) expect(ended?.error?.cell_index).toBe(expected.cellIndex);

    const codeIndexes = nb.cells.flatMap((c, i) => (c.cell_type === 'code' ? [i] : []));
    const ran = codeIndexes.filter((i) => typeof nb.cells[i]?.execution_count === 'number');
    expect(ran, context).toEqual(expected.ran);
    const papermill = nb.cells.map((c) => (c.metadata.papermill as { status?: string } | undefined)?.status);
    expect(papermill, context).toEqual(expected.papermill);

    // The same metadata.papermill shape from both engines.
    const notebookMeta = nb.metadata.papermill as Record<string, unknown>;
    expect(Object.keys(notebookMeta).sort()).toEqual(NOTEBOOK_FIELDS);
    expect(notebookMeta.start_time).toMatch(PAPERMILL_TIME);
    expect(notebookMeta.end_time).toMatch(PAPERMILL_TIME);
    expect(notebookMeta.duration).toEqual(expect.any(Number));
    for (const cell of nb.cells) {
      const meta = cell.metadata.papermill as Record<string, unknown>;
      expect(Object.keys(meta).sort()).toEqual(CELL_FIELDS);
      if (meta.status === 'pending') continue;
      expect(meta.start_time).toMatch(PAPERMILL_TIME);
      expect(meta.end_time).toMatch(PAPERMILL_TIME);
      expect(meta.duration).toEqual(expect.any(Number));
    }

    const summary = summarizeNotebook(nb);
    expect(summary.stopped?.cell_index).toBe(expected.stoppedAt);
    row.check?.(nb, summary, log);
  });
});
