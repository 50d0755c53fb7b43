/** Request bodies of an exact size, for tests at the request size limits. */
/**
 * A notebook whose compact JSON is exactly `bytes` long (one code cell of a long comment), wrapped
 * by `wrap` into a request, and that request's JSON padded with trailing spaces (still valid JSON,
 * not part of the notebook) to exactly `bodyBytes`.
 */
export function sizedBody(
  bytes: number,
  bodyBytes: number,
  wrap: (notebook: Record<string, unknown>) => unknown,
): string {
  const notebook = (comment: string) => ({
    cells: [{ cell_type: 'code', source: `# ${comment}`, metadata: {}, outputs: [], execution_count: null }],
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    nbformat: 4,
    nbformat_minor: 5,
  });
  const filler = bytes - JSON.stringify(notebook('')).length;
  const padded = notebook('x'.repeat(filler));
  if (JSON.stringify(padded).length !== bytes) throw new Error('sizedBody: notebook size is off');
  const body = JSON.stringify(wrap(padded));
  if (body.length > bodyBytes) throw new Error(`sizedBody: ${body.length} bytes before padding`);
  return body + ' '.repeat(bodyBytes - body.length);
}
