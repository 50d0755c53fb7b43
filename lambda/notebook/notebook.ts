/**
 * The Jupyter notebook document (nbformat 4) as the rest of the system sees it: parsing with
 * validation that says what is wrong, and small read-only helpers. Pure: no I/O.
 */
import { InvalidRequestError } from '../core/errors.ts';
import { checkJsonDepth, jsonSyntaxProblem } from '../core/json.ts';

/** nbformat's "multiline string": one string, or a list of lines that are concatenated. */
export type MultilineString = string | string[];

export const CELL_TYPES = ['code', 'markdown', 'raw'] as const;
export type CellType = (typeof CELL_TYPES)[number];

export const OUTPUT_TYPES = ['execute_result', 'display_data', 'stream', 'error'] as const;
export type OutputType = (typeof OUTPUT_TYPES)[number];

/** One output of a code cell. Fields beyond `output_type` depend on the type and are read defensively. */
export interface NotebookOutput {
  output_type: OutputType;
  [key: string]: unknown;
}

/** Cell metadata; `tags` drives papermill (`parameters`, `injected-parameters`) and result summaries. */
export interface CellMetadata {
  tags?: string[];
  [key: string]: unknown;
}

/** A notebook cell. Code cells always carry `outputs` and `execution_count` after parsing. */
export interface NotebookCell {
  cell_type: CellType;
  /** Required from nbformat 4.5 on; absent before. */
  id?: string;
  source: MultilineString;
  metadata: CellMetadata;
  execution_count?: number | null;
  outputs?: NotebookOutput[];
  [key: string]: unknown;
}

/** Notebook-level metadata; only the parts this project reads are typed. */
export interface NotebookMetadata {
  kernelspec?: { name?: string; display_name?: string; language?: string; [key: string]: unknown };
  language_info?: { name?: string; [key: string]: unknown };
  papermill?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A parsed nbformat 4 notebook. Unknown fields are preserved as they were. */
export interface Notebook {
  nbformat: 4;
  nbformat_minor: number;
  metadata: NotebookMetadata;
  cells: NotebookCell[];
  [key: string]: unknown;
}

const CELL_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The type of a value for an error message. Never the value itself: whatever was submitted as a
 * notebook (a credentials file, say) must not come back in an error.
 */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') {
    const length = Array.from(value).length;
    return length === 0 ? 'an empty string' : `a string of ${length} character${length === 1 ? '' : 's'}`;
  }
  return typeof value === 'object' || typeof value === 'undefined'
    ? `an ${typeof value}`
    : `a ${typeof value}`;
}

function invalid(message: string, details?: Record<string, unknown>): InvalidRequestError {
  return new InvalidRequestError(`invalid notebook: ${message}`, details);
}

function isMultilineString(value: unknown): value is MultilineString {
  return (
    typeof value === 'string' || (Array.isArray(value) && value.every((line) => typeof line === 'string'))
  );
}

function parseOutput(raw: unknown, where: string): NotebookOutput {
  if (!isPlainObject(raw)) throw invalid(`${where} must be an object, got ${describe(raw)}`);
  const type = raw.output_type;
  if (typeof type !== 'string' || !(OUTPUT_TYPES as readonly string[]).includes(type)) {
    throw invalid(`${where}.output_type must be one of ${OUTPUT_TYPES.join(', ')}, got ${describe(type)}`);
  }
  return { ...raw, output_type: type as OutputType };
}

function parseCell(raw: unknown, index: number, ids: Map<string, number>): NotebookCell {
  const where = `cells[${index}]`;
  if (!isPlainObject(raw)) throw invalid(`${where} must be an object, got ${describe(raw)}`);
  const type = raw.cell_type;
  if (typeof type !== 'string' || !(CELL_TYPES as readonly string[]).includes(type)) {
    throw invalid(`${where}.cell_type must be one of ${CELL_TYPES.join(', ')}, got ${describe(type)}`, {
      cell_index: index,
    });
  }
  if (!isMultilineString(raw.source)) {
    throw invalid(`${where}.source must be a string or an array of strings, got ${describe(raw.source)}`, {
      cell_index: index,
    });
  }
  // Missing optional-looking members are filled with nbformat's defaults (hand-written notebooks
  // often omit them); present members of the wrong type are rejected.
  const metadata = raw.metadata === undefined ? {} : raw.metadata;
  if (!isPlainObject(metadata))
    throw invalid(`${where}.metadata must be an object, got ${describe(metadata)}`);
  if (
    metadata.tags !== undefined &&
    !(Array.isArray(metadata.tags) && metadata.tags.every((t) => typeof t === 'string'))
  ) {
    throw invalid(`${where}.metadata.tags must be an array of strings, got ${describe(metadata.tags)}`);
  }
  if (raw.id !== undefined) {
    if (typeof raw.id !== 'string' || !CELL_ID_PATTERN.test(raw.id)) {
      throw invalid(
        `${where}.id must be 1-64 characters of letters, digits, '-' or '_', got ${describe(raw.id)}`,
      );
    }
    const earlier = ids.get(raw.id);
    if (earlier !== undefined) {
      throw invalid(`${where}.id is the same as cells[${earlier}].id; cell ids must be unique`, {
        cell_index: index,
      });
    }
    ids.set(raw.id, index);
  }
  const cell: NotebookCell = { ...raw, cell_type: type as CellType, source: raw.source, metadata };
  if (type === 'code') {
    const outputs = raw.outputs === undefined ? [] : raw.outputs;
    if (!Array.isArray(outputs)) throw invalid(`${where}.outputs must be an array, got ${describe(outputs)}`);
    const count = raw.execution_count ?? null;
    if (count !== null && !(typeof count === 'number' && Number.isInteger(count) && count >= 0)) {
      throw invalid(
        `${where}.execution_count must be a non-negative integer or null, got ${describe(count)}`,
      );
    }
    cell.outputs = outputs.map((output, j) => parseOutput(output, `${where}.outputs[${j}]`));
    cell.execution_count = count;
  }
  return cell;
}

/**
 * Validates a decoded JSON value as an nbformat 4 notebook and returns a normalized copy (the input is
 * not modified). Throws InvalidRequestError naming the offending field.
 */
export function parseNotebook(input: unknown): Notebook {
  if (!isPlainObject(input)) {
    throw invalid(`a notebook is a JSON object with nbformat, metadata and cells, got ${describe(input)}`);
  }
  const version = input.nbformat;
  if (version === undefined) {
    throw invalid('missing "nbformat": expected a Jupyter notebook with "nbformat": 4');
  }
  if (version !== 4) {
    if (typeof version !== 'number') {
      throw invalid(`"nbformat" must be the number 4, got ${describe(version)}`);
    }
    throw new InvalidRequestError(
      `nbformat ${String(version)} is not supported: only nbformat 4 notebooks can run (convert with jupyter nbconvert --to notebook)`,
      { nbformat: version },
    );
  }
  if (!Array.isArray(input.cells)) {
    throw invalid(
      `"cells" must be an array of cells, got ${input.cells === undefined ? 'nothing' : describe(input.cells)}`,
    );
  }
  const metadata = input.metadata === undefined ? {} : input.metadata;
  if (!isPlainObject(metadata)) throw invalid(`"metadata" must be an object, got ${describe(metadata)}`);
  let copy: Record<string, unknown> & { cells: unknown[] };
  try {
    copy = structuredClone(input) as typeof copy;
  } catch {
    // Only reachable from code that hands over non-JSON data (functions, symbols).
    throw invalid('the notebook holds values that are not JSON data');
  }
  const ids = new Map<string, number>();
  const cells = copy.cells.map((cell, index) => parseCell(cell, index, ids));
  let minor = copy.nbformat_minor;
  if (minor === undefined) {
    // Cell ids only exist from 4.5 on; pick the minor version the cells are valid for.
    minor = cells.some((cell) => cell.id !== undefined) ? 5 : 4;
  }
  if (typeof minor !== 'number' || !Number.isInteger(minor) || minor < 0) {
    throw invalid(`"nbformat_minor" must be a non-negative integer, got ${describe(minor)}`);
  }
  return { ...copy, nbformat: 4, nbformat_minor: minor, metadata: metadata as NotebookMetadata, cells };
}

/** The error for text that is not JSON: where it stops being JSON, never what is there. */
function notJson(text: string): InvalidRequestError {
  const { where, details } = jsonSyntaxProblem(text);
  return invalid(`not JSON${where}; an .ipynb notebook is a JSON document`, details);
}

/**
 * Parses notebook file content (UTF-8 JSON, an optional BOM is ignored) and validates it with
 * {@link parseNotebook}.
 */
export function parseNotebookText(text: string | Buffer): Notebook {
  let decoded: string;
  if (typeof text === 'string') {
    decoded = text;
  } else {
    try {
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(text);
    } catch {
      throw invalid('the file is not UTF-8 text; an .ipynb notebook is UTF-8 encoded JSON');
    }
  }
  if (decoded.charCodeAt(0) === 0xfeff) decoded = decoded.slice(1);
  if (decoded.trim() === '') throw invalid('the file is empty; an .ipynb notebook is JSON');
  checkJsonDepth(decoded, 'the notebook');
  let value: unknown;
  try {
    value = JSON.parse(decoded);
  } catch {
    // JSON.parse's message quotes the start of the text; a file submitted as a notebook (a .env,
    // say) must not come back in an error, so the position is found here and only it is reported.
    throw notJson(decoded);
  }
  return parseNotebook(value);
}

/** The cell's source as one string (nbformat stores it as a string or a list of lines). */
export function cellSource(cell: Pick<NotebookCell, 'source'>): string {
  return typeof cell.source === 'string' ? cell.source : cell.source.join('');
}

/** The cell's tags, or an empty list. */
export function cellTags(cell: NotebookCell): string[] {
  const tags = cell.metadata.tags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
}

/** Index of the first cell carrying `tag`, or -1 (papermill's find_first_tagged_cell_index). */
export function findTaggedCell(nb: Notebook, tag: string): number {
  return nb.cells.findIndex((cell) => cellTags(cell).includes(tag));
}

function nonEmptyString(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value : null;
}

/** `metadata.kernelspec.name`, or null when the notebook does not name a kernel. */
export function notebookKernelName(nb: Notebook): string | null {
  return nonEmptyString(nb.metadata.kernelspec?.name);
}

/** `metadata.kernelspec.language`, else `metadata.language_info.name`, else null. */
export function notebookLanguage(nb: Notebook): string | null {
  return nonEmptyString(nb.metadata.kernelspec?.language) ?? nonEmptyString(nb.metadata.language_info?.name);
}

/**
 * Indexes of the code cells that a kernel will execute (see `isExecutable`). Its length is a
 * job's `cells_total`.
 */
export function executableCodeCells(nb: Notebook): number[] {
  const indexes: number[] = [];
  nb.cells.forEach((cell, index) => {
    if (isExecutable(cell)) indexes.push(index);
  });
  return indexes;
}

/** The cell tag nbclient (and so both engines) leaves unexecuted. */
export const SKIP_EXECUTION_TAG = 'skip-execution';

/** Whether an engine runs this cell: code, not blank, not tagged skip-execution. */
export function isExecutable(cell: NotebookCell): boolean {
  return (
    cell.cell_type === 'code' &&
    cellSource(cell).trim() !== '' &&
    !cellTags(cell).includes(SKIP_EXECUTION_TAG)
  );
}

/**
 * The first non-blank line of `source`, trimmed, at most `max` characters; when cut, the last
 * character is an ellipsis. Never splits a surrogate pair.
 */
export function sourcePreview(source: MultilineString, max = 80): string {
  const text = typeof source === 'string' ? source : source.join('');
  const line = text.split(/\r\n|\r|\n/).find((l) => l.trim() !== '');
  if (line === undefined || max <= 0) return '';
  const trimmed = line.trim();
  const points = Array.from(trimmed);
  if (points.length <= max) return trimmed;
  return `${points.slice(0, max - 1).join('')}…`;
}
