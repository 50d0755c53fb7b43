/**
 * Injection as papermill's parameterize does it: the values rendered as literals by the language's
 * Dialect, in a cell tagged `injected-parameters` after the cell tagged `parameters`.
 *
 * Values are only ever rendered as literals (never pasted as code), so a parameter value cannot run
 * anything in the kernel.
 */
import { InvalidRequestError } from '../../core/errors.ts';
import { cellTags, findTaggedCell, type Notebook, type NotebookCell } from '../notebook.ts';
import type { Dialect, KernelLanguage } from './dialect.ts';
import { PARAMETERS_TAG } from './inspect.ts';
import { renderLiteral } from './literals.ts';
import { dialectFor } from './registry.ts';

export const INJECTED_PARAMETERS_TAG = 'injected-parameters';

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkName(name: string, dialect: Dialect): void {
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(
      `parameter name ${JSON.stringify(name)} is not allowed: names are ASCII letters, digits and '_', not starting with a digit`,
      { parameter: name },
    );
  }
  if (dialect.isReserved(name)) {
    throw new InvalidRequestError(
      `parameter name ${JSON.stringify(name)} is a reserved word in ${dialect.language}`,
      { parameter: name },
    );
  }
}

/**
 * Renders a JSON value as a literal of `language`, as papermill's translators do (Python output is
 * always accepted by `ast.literal_eval`). `bigint` is accepted as an exact integer. NaN, Infinity,
 * undefined, functions, symbols, class instances and cycles are rejected with InvalidRequestError.
 */
export function renderValue(value: unknown, language: KernelLanguage): string {
  return renderLiteral(value, dialectFor(language).literals);
}

/** papermill's Translator.codify: the comment header, then one assignment per parameter. */
export function codifyParameters(params: Record<string, unknown>, language: KernelLanguage): string {
  const dialect = dialectFor(language);
  let content = `${dialect.comment('Parameters')}\n`;
  for (const [name, value] of Object.entries(params)) {
    checkName(name, dialect);
    let literal: string;
    try {
      literal = renderLiteral(value, dialect.literals, name);
    } catch (error) {
      if (error instanceof InvalidRequestError) {
        throw new InvalidRequestError(`parameter ${JSON.stringify(name)}: ${error.message}`, {
          ...error.details,
          parameter: name,
        });
      }
      throw error;
    }
    content += `${dialect.assign(name, literal)}\n`;
  }
  return content;
}

function uniqueCellId(cells: readonly NotebookCell[]): string {
  const taken = new Set(cells.map((cell) => cell.id));
  let id = INJECTED_PARAMETERS_TAG;
  for (let n = 2; taken.has(id); n++) id = `${INJECTED_PARAMETERS_TAG}-${n}`;
  return id;
}

/**
 * Returns a new notebook with `params` injected as papermill does: every cell tagged
 * `injected-parameters` is removed and a new code cell with that tag (a comment header, then one
 * assignment per parameter) goes right after the first cell tagged `parameters`, or first when there
 * is none. The parameters are recorded in `metadata.papermill.parameters`. With no parameters the
 * notebook is returned unchanged (as papermill does not parameterize then). `nb` is not modified.
 * Throws InvalidRequestError for names that are not identifiers and values that are not JSON.
 */
export function injectParameters(
  nb: Notebook,
  params: Record<string, unknown>,
  language: KernelLanguage,
  kernelName?: string,
): Notebook {
  const copy = structuredClone(nb);
  if (Object.keys(params).length === 0) return copy;
  const source = codifyParameters(params, language);
  // Departure: papermill replaces only the first injected cell, in place; removing all of them and
  // inserting after the parameters cell gives the same result in the usual layout and never leaves
  // stale injected values behind.
  const cells = copy.cells.filter((cell) => !cellTags(cell).includes(INJECTED_PARAMETERS_TAG));
  const metadata: NotebookCell['metadata'] = { tags: [INJECTED_PARAMETERS_TAG] };
  // .NET Interactive (polyglot) notebooks choose the sub-kernel of a cell from its metadata.
  const dotnet = dialectFor(language).dotnetKernel;
  if (kernelName?.startsWith('.net-') && dotnet) {
    metadata.dotnet_interactive = { language: dotnet };
    metadata.polyglot_notebook = { kernelName: dotnet };
  }
  const cell: NotebookCell = { cell_type: 'code', execution_count: null, metadata, outputs: [], source };
  // Cell ids exist from nbformat 4.5 on; older notebooks must not get one.
  if (copy.nbformat_minor >= 5) cell.id = uniqueCellId(cells);
  const withoutInjected: Notebook = { ...copy, cells };
  const paramIndex = findTaggedCell(withoutInjected, PARAMETERS_TAG);
  cells.splice(paramIndex + 1, 0, cell);
  const previous = copy.metadata.papermill;
  const base = typeof previous === 'object' && previous !== null && !Array.isArray(previous) ? previous : {};
  const papermill = { ...base, parameters: structuredClone(params) };
  return { ...withoutInjected, metadata: { ...copy.metadata, papermill } };
}
