/**
 * Inspection: the parameters a notebook declares, read from its cell tagged `parameters` by the
 * language's Dialect, as papermill's `inspect_notebook` reports them.
 */
import type { ParameterInfo } from '../../core/contract.ts';
import { cellSource, findTaggedCell, type Notebook } from '../notebook.ts';
import type { KernelLanguage } from './dialect.ts';
import { dialectFor } from './registry.ts';

export const PARAMETERS_TAG = 'parameters';

/**
 * Reads the parameters declared in `source` (the text of a parameters cell): each top-level
 * assignment's name, its declared type or else the type of its literal, its default's text and its
 * trailing comment. What counts as a declaration is the Dialect's (`scan`).
 */
export function inspectParametersSource(source: string, language: KernelLanguage): ParameterInfo[] {
  const dialect = dialectFor(language);
  return dialect.scan(source).map((a) => ({
    name: a.name,
    inferred_type: a.declared ?? dialect.infer(a.value, a.valueKind),
    default: a.value,
    help: a.help,
  }));
}

/**
 * The parameters declared in the notebook's first cell tagged `parameters` (see
 * {@link inspectParametersSource}); an empty list when there is no such cell.
 */
export function inspectParameters(nb: Notebook, language: KernelLanguage): ParameterInfo[] {
  const index = findTaggedCell(nb, PARAMETERS_TAG);
  const cell = nb.cells[index];
  if (!cell) return [];
  return inspectParametersSource(cellSource(cell), language);
}

/** Names in `params` that the parameters cell does not declare, in the order given. */
export function unknownParameters(
  known: readonly ParameterInfo[],
  params: Record<string, unknown>,
): string[] {
  const names = new Set(known.map((p) => p.name));
  return Object.keys(params).filter((name) => !names.has(name));
}
