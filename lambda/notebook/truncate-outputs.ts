/**
 * Bringing an executed notebook under a size limit by removing its largest outputs, each replaced
 * by a short stream output that says how many bytes went. Sources, metadata and the other outputs
 * stay as they were. Pure: no I/O; the input is not modified.
 */
import type { Notebook, NotebookOutput } from './notebook.ts';

/** The notebook as nbformat writes it (one-space indent, a final newline). */
export function serializeNotebook(nb: Notebook): string {
  return `${JSON.stringify(nb, null, 1)}\n`;
}

export interface TruncatedNotebook {
  notebook: Notebook;
  /** `notebook` serialized with serializeNotebook, and its size in bytes. */
  text: string;
  bytes: number;
  /** How many outputs were replaced, and how many bytes of JSON they held. */
  removedOutputs: number;
  removedBytes: number;
  /** False when even without any output the notebook is over the limit. */
  fits: boolean;
}

/** The stream output that stands in for a removed one. */
export function removedOutputNote(bytes: number, maxBytes: number): NotebookOutput {
  return {
    output_type: 'stream',
    name: 'stderr',
    text: `[output removed: ${bytes} bytes; the executed notebook was over the output limit of ${maxBytes} bytes]\n`,
  };
}

interface Candidate {
  cell: number;
  output: number;
  bytes: number;
}

const byteLength = (value: unknown) => Buffer.byteLength(JSON.stringify(value, null, 1));

/**
 * Replaces the largest outputs of `nb`, largest first, until it serializes to at most `maxBytes`
 * (or none is left). Each round removes what the estimate says is enough, then measures again.
 */
export function truncateOutputs(nb: Notebook, maxBytes: number): TruncatedNotebook {
  // Copy only what changes: the cells and their output lists; outputs themselves are shared.
  const notebook: Notebook = {
    ...nb,
    cells: nb.cells.map((cell) => (cell.outputs ? { ...cell, outputs: [...cell.outputs] } : cell)),
  };
  let text = serializeNotebook(notebook);
  let bytes = Buffer.byteLength(text);
  const result = (removedOutputs: number, removedBytes: number) => ({
    notebook,
    text,
    bytes,
    removedOutputs,
    removedBytes,
    fits: bytes <= maxBytes,
  });
  if (bytes <= maxBytes) return result(0, 0);

  const candidates: Candidate[] = [];
  notebook.cells.forEach((cell, c) =>
    cell.outputs?.forEach((out, o) => {
      const size = byteLength(out);
      // Only outputs larger than the note that would replace them.
      if (size > byteLength(removedOutputNote(size, maxBytes)))
        candidates.push({ cell: c, output: o, bytes: size });
    }),
  );
  candidates.sort((a, b) => b.bytes - a.bytes);
  let next = 0;
  let removedBytes = 0;
  while (bytes > maxBytes && next < candidates.length) {
    let excess = bytes - maxBytes;
    while (excess > 0 && next < candidates.length) {
      const candidate = candidates[next++] as Candidate;
      const note = removedOutputNote(candidate.bytes, maxBytes);
      (notebook.cells[candidate.cell]?.outputs as NotebookOutput[])[candidate.output] = note;
      excess -= candidate.bytes - byteLength(note);
      removedBytes += candidate.bytes;
    }
    text = serializeNotebook(notebook);
    bytes = Buffer.byteLength(text);
  }
  return result(next, removedBytes);
}
