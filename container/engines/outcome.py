"""How a run ends: one rule for both engines, with papermill as the reference.

Reference: nteract/papermill at tag 2.6.0 (the image's papermill):
- papermill/clientwrap.py, PapermillNotebookClient.papermill_execute_cells: a CellExecutionError
  (the cell's execute reply has status "error") marks the cell failed through the execution
  manager's cell_exception and ends the loop without raising; any other exception (nbclient's
  CellTimeoutError, DeadKernelError) propagates, after cell_complete.
- papermill/execute.py, raise_for_execution_errors: once the engine has returned, the executed
  notebook decides. An error output is the error, except a SystemExit whose evalue is "" or "0"
  (sys.exit(), sys.exit(0), raise SystemExit): a clean stop, no error. A cell that papermill marked
  failed (metadata.papermill.exception is True) without any error output and without a clean
  SystemExit raises a "CellExecutionError" with an empty evalue.
- papermill/execute.py, remove_error_markers and ERROR_MARKER_TAG: marker cells of an earlier run
  are dropped from the input before it runs.

The outcome (`finished` status; README.md here):
- the engine ran to the end, or stopped at a cell whose reply was an error: `execution_error`
  decides: `cell_error` with that cell, or `ok`; `ok` with a clean SystemExit also says where the
  notebook stopped (`clean_stop`) and the cells after it stay unrun (papermill status "pending");
- nbclient's CellTimeoutError: `timeout`; DeadKernelError: `kernel_died`; any other exception:
  `failed` (infrastructure); any ending after SIGTERM/SIGINT: `cancelled`;
- a stdin request (input()) is a cell error, StdinNotImplementedError: neither engine allows stdin;
  an interrupt that is not our cancellation is a cell error, KeyboardInterrupt.

Departures from papermill, made in both engines alike:
- A failed cell without an error output (e.g. an unknown line magic: IPython prints the UsageError
  to stderr and replies "error") keeps the ename and evalue of its execute reply where papermill
  says "CellExecutionError" and "".
- A cell cut short without an execute reply (cell timeout, dead kernel, cancellation) is marked
  failed through cell_exception; papermill leaves it "completed", and its notebook_complete then
  marks every later cell "completed" too, though none ran.
- Error-marker cells are not kept in the executed notebook (papermill inserts two on a cell
  error): cell indices stay those of the input, the events, the job's error and the result summary.
"""
from __future__ import annotations

import math

from nbclient.exceptions import CellTimeoutError, DeadKernelError

from engine_protocol import job_error, runs

ERROR_MARKER_TAG = 'papermill-error-cell-tag'  # papermill/execute.py


def is_error_marker(cell) -> bool:
    return ERROR_MARKER_TAG in cell.get('metadata', {}).get('tags', [])


def remove_error_markers(nb):
    """papermill/execute.py remove_error_markers."""
    nb.cells = [cell for cell in nb.cells if not is_error_marker(cell)]
    return nb


def is_clean_exit(output) -> bool:
    """A SystemExit that papermill does not count as an error (raise_for_execution_errors)."""
    return (
        output.get('output_type') == 'error'
        and output.get('ename') == 'SystemExit'
        and output.get('evalue') in ('', '0')
    )


def failure_of(exception) -> tuple[str, str, list[str]]:
    """(ename, evalue, traceback lines) of nbclient's CellExecutionError, from the execute reply."""
    text = str(getattr(exception, 'traceback', '') or '')
    return getattr(exception, 'ename', 'CellExecutionError'), getattr(exception, 'evalue', ''), text.splitlines()


def execution_error(nb, failures: dict | None = None) -> dict | None:
    """The cell error papermill's raise_for_execution_errors would raise for this executed notebook,
    as a job error; None when it raises none. Mirrors its loop as written, so with several error
    outputs (cells tagged raises-exception) the last one wins. `failures` maps a cell index to
    failure_of(the CellExecutionError) the engine saw there."""
    error = None
    for index, cell in enumerate(nb.cells):
        has_sys_exit = False
        for output in cell.get('outputs') or []:
            if output.get('output_type') == 'error':
                if is_clean_exit(output):
                    has_sys_exit = True
                    continue
                ename, evalue = output.get('ename'), output.get('evalue')
                error = job_error('cell_error', f'{ename}: {evalue}', index, ename, evalue, output.get('traceback'))
                break
        if error is None and not has_sys_exit and cell.get('metadata', {}).get('papermill', {}).get('exception') is True:
            # papermill: ename "CellExecutionError", evalue "" (departure: the reply's, when known)
            ename, evalue, traceback = (failures or {}).get(index, ('CellExecutionError', '', []))
            error = job_error('cell_error', f'{ename}: {evalue}', index, ename, evalue, traceback)
            break
    return error


def clean_stop(nb) -> dict | None:
    """Where the notebook stopped itself with a clean SystemExit, or None."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get('outputs') or []:
            if is_clean_exit(output):
                value = output.get('evalue')
                return {
                    'cell_index': index,
                    'ename': 'SystemExit',
                    'evalue': value,
                    'message': f'the notebook stopped itself at cell {index} (SystemExit({value})); '
                    'the cells after it did not run',
                }
    return None


def after_run(nb, failures: dict | None = None) -> tuple[str, dict | None, dict | None]:
    """(status, error, stopped) of a run the engine ended itself (no exception, or a cell error)."""
    error = execution_error(nb, failures)
    if error is not None:
        return 'cell_error', error, None
    return 'ok', None, clean_stop(nb)


def after_exception(exception: BaseException, cell_index: int | None, cell_timeout: float | None):
    """(status, error) of a run that an exception other than a cell error ended."""
    if isinstance(exception, CellTimeoutError):
        if not cell_timeout:  # not cell_timeout_seconds: nbclient gave up waiting for the kernel
            message = f'the kernel stopped answering during cell {cell_index}'
        else:
            message = f'cell {cell_index} ran longer than {math.ceil(cell_timeout)} s'
        return 'timeout', job_error('timeout', message, cell_index)
    if isinstance(exception, DeadKernelError):
        return 'kernel_died', job_error('kernel_died', f'the kernel died while running cell {cell_index}', cell_index)
    return 'failed', job_error('infrastructure', f'{type(exception).__name__}: {exception}')


def cut_short(cell) -> bool:
    """Whether a cell that started ended without its execute reply (timeout, dead kernel, cancel):
    both engines then mark it failed (a departure from papermill, see above)."""
    if not runs(cell):
        return False
    return 'shell.execute_reply' not in cell.get('metadata', {}).get('execution', {})
