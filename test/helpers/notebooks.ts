/**
 * Building small nbformat 4 notebooks for tests, and reading them back.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface NotebookOutput {
  output_type: 'stream' | 'execute_result' | 'display_data' | 'error';
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  [key: string]: unknown;
}

export interface CodeCell {
  cell_type: 'code';
  id?: string;
  source: string | string[];
  metadata: { tags?: string[]; [key: string]: unknown };
  outputs: NotebookOutput[];
  execution_count: number | null;
}

export interface MarkdownCell {
  cell_type: 'markdown';
  id?: string;
  source: string | string[];
  metadata: Record<string, unknown>;
}

export type NotebookCell = CodeCell | MarkdownCell;

export interface Notebook {
  nbformat: 4;
  nbformat_minor: number;
  metadata: {
    kernelspec?: { name: string; display_name: string; language?: string };
    language_info?: { name: string; [key: string]: unknown };
    [key: string]: unknown;
  };
  cells: NotebookCell[];
}

export function codeCell(source: string, tags?: string[]): CodeCell {
  return {
    cell_type: 'code',
    source,
    metadata: tags ? { tags } : {},
    outputs: [],
    execution_count: null,
  };
}

export function markdownCell(source: string): MarkdownCell {
  return { cell_type: 'markdown', source, metadata: {} };
}

/** A notebook for `kernel` (a kernelspec name); cells get ids `cell-<index>` unless they have one. */
export function makeNotebook(cells: NotebookCell[], kernel = 'python3'): Notebook {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: kernel, display_name: kernel } },
    cells: cells.map((cell, index) => ({ ...cell, id: cell.id ?? `cell-${index}` })),
  };
}

/** Writes `nb` as `dir/name` and returns that path. */
export async function writeNotebook(dir: string, name: string, nb: Notebook): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, JSON.stringify(nb, null, 1) + '\n', 'utf8');
  return file;
}

export async function readNotebook(file: string): Promise<Notebook> {
  return JSON.parse(await readFile(file, 'utf8')) as Notebook;
}

/** A cell's source or an output's text, joined when stored as a list of lines. */
export function joined(text: string | string[] | undefined): string {
  return Array.isArray(text) ? text.join('') : (text ?? '');
}
