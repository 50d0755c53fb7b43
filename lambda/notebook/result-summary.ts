/**
 * The result summary of an executed notebook: what an agent reads instead of downloading the
 * notebook (DESIGN.md section 3). Pure: derived from the notebook document alone.
 */
import { InvalidRequestError } from '../core/errors.ts';
import {
  cellSource,
  cellTags,
  sourcePreview,
  type Notebook,
  type NotebookCell,
  type NotebookOutput,
  isExecutable,
} from './notebook.ts';

import type { CellError, CellResult, CellStatus, ResultSummary } from '../core/contract.ts';
export type { CellError, CellResult, CellStatus, ResultSummary } from '../core/contract.ts';

export interface SummaryOptions {
  /** Per-cell limit of `output_text`, in characters (default 2000). */
  maxOutputChars?: number;
}

export const DEFAULT_MAX_OUTPUT_CHARS = 2000;
export const RESULTS_TAG = 'results';
export const SCRAPBOOK_JSON_MIME = 'application/scrapbook.scrap.json+json';
export const SCRAPBOOK_TEXT_MIME = 'application/scrapbook.scrap.text+json';

// CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and two-character escapes.
// eslint-disable-next-line no-control-regex -- matching the ESC control character is the point
const ANSI_PATTERN = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;

/** Removes ANSI escape sequences (IPython colours its tracebacks). */
export function stripAnsi(text: string): string {
  return text.replace(ANSI_PATTERN, '');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function textOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join('');
  return null;
}

function outputData(output: NotebookOutput): Record<string, unknown> {
  return isObject(output.data) ? output.data : {};
}

function errorOf(output: NotebookOutput): CellError {
  const traceback = Array.isArray(output.traceback)
    ? output.traceback.map((line) => stripAnsi(String(line)))
    : [];
  return {
    ename: typeof output.ename === 'string' ? output.ename : '',
    evalue: typeof output.evalue === 'string' ? stripAnsi(output.evalue) : '',
    traceback,
  };
}

/** What the output shows as text: stream text, text/plain, the traceback, or a note of its mime types. */
function outputAsText(output: NotebookOutput): string {
  switch (output.output_type) {
    case 'stream':
      return textOf(output.text) ?? '';
    case 'error': {
      const error = errorOf(output);
      return error.traceback.length > 0 ? error.traceback.join('\n') : `${error.ename}: ${error.evalue}`;
    }
    default: {
      const data = outputData(output);
      const plain = textOf(data['text/plain']);
      if (plain !== null) return plain;
      const mimes = Object.keys(data);
      return mimes.length > 0 ? `[${mimes.join(', ')}]` : '';
    }
  }
}

function joinOutputs(outputs: readonly NotebookOutput[]): string {
  let text = '';
  for (const output of outputs) {
    const piece = outputAsText(output);
    if (piece === '') continue;
    // Stream chunks carry their own newlines; other outputs start on a new line.
    if (text !== '' && !text.endsWith('\n') && output.output_type !== 'stream') text += '\n';
    text += piece;
  }
  return text;
}

/** The last `max` characters of `text`, not starting in the middle of a surrogate pair. */
function keepEnd(text: string, max: number): string {
  if (text.length <= max) return text;
  let start = text.length - max;
  const code = text.charCodeAt(start);
  if (code >= 0xdc00 && code <= 0xdfff) start++;
  return text.slice(start);
}

const ISO_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/;

/** Seconds since the epoch of an ISO 8601 timestamp, keeping the microseconds Jupyter writes. */
function isoSeconds(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const match = ISO_TIME.exec(value.trim());
  if (!match) return null;
  const zone = match[3] ?? 'Z';
  const whole = Date.parse(`${match[1]}${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`);
  if (Number.isNaN(whole)) return null;
  const fraction = match[2] ? Number(`0.${match[2]}`) : 0;
  return whole / 1000 + fraction;
}

/** papermill's `metadata.papermill.duration`, else nbclient's `metadata.execution` timestamps. */
function cellDuration(cell: NotebookCell): number | null {
  const papermill = cell.metadata.papermill;
  if (isObject(papermill) && typeof papermill.duration === 'number' && Number.isFinite(papermill.duration)) {
    return papermill.duration;
  }
  const execution = cell.metadata.execution;
  if (!isObject(execution)) return null;
  const start = isoSeconds(execution['iopub.execute_input']) ?? isoSeconds(execution['iopub.status.busy']);
  const end = isoSeconds(execution['shell.execute_reply']) ?? isoSeconds(execution['iopub.status.idle']);
  if (start === null || end === null || end < start) return null;
  // Microsecond precision, without float noise such as 1.2000000000000002.
  return Math.round((end - start) * 1e6) / 1e6;
}

function papermillStatus(cell: NotebookCell): string | null {
  const papermill = cell.metadata.papermill;
  return isObject(papermill) && typeof papermill.status === 'string' ? papermill.status : null;
}

/**
 * A SystemExit whose value is empty or "0": papermill's clean stop, not an error
 * (papermill/execute.py raise_for_execution_errors; container/engines/outcome.py).
 */
function isCleanExit(output: NotebookOutput): boolean {
  return (
    output.output_type === 'error' &&
    output.ename === 'SystemExit' &&
    (output.evalue === '' || output.evalue === '0')
  );
}

function cellStatus(cell: NotebookCell, outputs: readonly NotebookOutput[]): CellStatus {
  if (!isExecutable(cell)) return 'skipped';
  const pm = papermillStatus(cell);
  // papermill marks every cell pending before the run; a cell still pending (or left running
  // when the run was stopped) never finished, whatever stale outputs it carries.
  if (pm === 'pending' || pm === 'running') return 'not_run';
  const errors = outputs.filter((o) => o.output_type === 'error');
  // The cell that stopped the notebook cleanly ran and ended as asked (papermill marks it failed).
  if (errors.length > 0 && errors.every(isCleanExit)) return 'ok';
  if (errors.length > 0) return 'error';
  const papermill = cell.metadata.papermill;
  if (pm === 'failed' || (isObject(papermill) && papermill.exception === true)) return 'error';
  const executed = typeof cell.execution_count === 'number' || pm === 'completed' || outputs.length > 0;
  return executed ? 'ok' : 'not_run';
}

function parseJsonData(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  // Some front ends store application/json as its serialized text.
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}

/** Sets an own property even for keys such as `__proto__` (plain assignment would change the prototype). */
function setResult(into: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
}

function collectNamedResults(
  cell: NotebookCell,
  outputs: readonly NotebookOutput[],
  into: Record<string, unknown>,
): void {
  for (const output of outputs) {
    const data = outputData(output);
    for (const mime of [SCRAPBOOK_JSON_MIME, SCRAPBOOK_TEXT_MIME]) {
      const scrap = data[mime];
      if (isObject(scrap) && typeof scrap.name === 'string' && 'data' in scrap) {
        setResult(into, scrap.name, scrap.data);
      }
    }
  }
  if (!cellTags(cell).includes(RESULTS_TAG)) return;
  let merged = false;
  for (const output of outputs) {
    const json = parseJsonData(outputData(output)['application/json']);
    if (isObject(json)) {
      for (const [key, value] of Object.entries(json)) setResult(into, key, value);
      merged = true;
    }
  }
  if (merged) return;
  for (let i = outputs.length - 1; i >= 0; i--) {
    const output = outputs[i] as NotebookOutput;
    const plain =
      output.output_type === 'stream'
        ? output.name === 'stdout'
          ? textOf(output.text)
          : null
        : textOf(outputData(output)['text/plain']);
    if (plain !== null) {
      setResult(into, 'results', plain);
      return;
    }
  }
}

/**
 * Summarizes an executed notebook, per code cell (markdown and raw cells are left out):
 *
 * - status: `error` when the cell has an error output (or papermill marked it failed), except a
 *   clean `SystemExit` (empty or "0" value), which is `ok` and reported as `stopped`; `skipped`
 *   when its source is blank (kernels do not run those); `not_run` when papermill still marks it
 *   pending/running; `ok` when it ran (has an execution_count, papermill says completed, or it has
 *   outputs); otherwise `not_run`.
 * - duration from papermill's `metadata.papermill.duration`, else nbclient's `metadata.execution`
 *   (`iopub.execute_input` to `shell.execute_reply`).
 * - output_text: the outputs' text (stream text, `text/plain`, tracebacks without ANSI codes, or the
 *   mime types of outputs with no text) joined; past `maxOutputChars` only the end is kept, since the
 *   last lines (final results, the exception) matter most.
 *
 * Named results, in cell order (later ones win):
 * - every output carrying a scrapbook scrap (`application/scrapbook.scrap.json+json`, and the
 *   `text+json` variant of scrapbook's text encoder) gives `named_results[scrap.name] = scrap.data`;
 * - in cells tagged `results`, every `application/json` output that is an object is merged into
 *   named_results key by key; a `results` cell without such output stores the text of its last
 *   output that has text (`text/plain`, else stdout) under the key `results`.
 * Cells that did not run contribute nothing (their outputs would be stale).
 */
export function summarizeNotebook(nb: Notebook, options: SummaryOptions = {}): ResultSummary {
  const max = options.maxOutputChars ?? DEFAULT_MAX_OUTPUT_CHARS;
  if (!Number.isInteger(max) || max < 0) {
    throw new InvalidRequestError(`maxOutputChars must be a non-negative integer, got ${String(max)}`);
  }
  const cells: CellResult[] = [];
  const totals = { code_cells: 0, ok: 0, error: 0, skipped: 0, not_run: 0 };
  const named: Record<string, unknown> = {};
  let firstError: ResultSummary['error'] = null;
  let stopped: ResultSummary['stopped'] = null;

  nb.cells.forEach((cell, index) => {
    if (cell.cell_type !== 'code') return;
    const outputs = Array.isArray(cell.outputs) ? cell.outputs : [];
    const status = cellStatus(cell, outputs);
    const text = status === 'not_run' || status === 'skipped' ? '' : joinOutputs(outputs);
    const result: CellResult = {
      index,
      execution_count: typeof cell.execution_count === 'number' ? cell.execution_count : null,
      status,
      duration_seconds: status === 'ok' || status === 'error' ? cellDuration(cell) : null,
      source_preview: sourcePreview(cellSource(cell)),
      output_text: keepEnd(text, max),
      output_chars: text.length,
      truncated: text.length > max,
    };
    if (status === 'error') {
      const errorOutput = outputs.find((o) => o.output_type === 'error');
      // papermill can mark a cell failed with no error output (a cell timeout, a dead kernel).
      result.error = errorOutput
        ? errorOf(errorOutput)
        : {
            ename: 'CellExecutionError',
            evalue: 'the cell failed without reporting an error output',
            traceback: [],
          };
      firstError ??= { cell_index: index, ...result.error };
    }
    const exit = status === 'ok' ? outputs.find(isCleanExit) : undefined;
    if (exit && !stopped) {
      const evalue = String(exit.evalue);
      stopped = {
        cell_index: index,
        ename: 'SystemExit',
        evalue,
        message: `the notebook stopped itself at cell ${index} (SystemExit(${evalue})); the cells after it did not run`,
      };
    }
    if (status === 'ok' || status === 'error') collectNamedResults(cell, outputs, named);
    totals.code_cells++;
    totals[status]++;
    cells.push(result);
  });

  return { cells, totals, named_results: named, error: firstError, stopped: firstError ? null : stopped };
}
