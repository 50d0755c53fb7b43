#!/usr/bin/env python3
"""Runs one notebook through papermill's Python API and reports JSON-lines events (protocol:
README.md here). Written against papermill 2.6.

The notebook arrives with parameters already injected, so papermill gets none. Events come from
papermill's own hooks: a registered engine (papermill's NBClientEngine) hands the client a proxy
of the NotebookExecutionManager, whose cell_start/cell_complete calls become cell_start/cell_done,
stdout_file/stderr_file carry the live streams, and autosave_cell (called after every kernel
message) reports the other outputs as they arrive. How the run ends is decided by the rule both
engines share (outcome.py), which is papermill's own with the departures listed there.
"""
from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import threading
import time

from jupyter_client.manager import AsyncKernelManager
from nbclient.util import ensure_async

import outcome
from engine_protocol import (
    EXIT_CODES,
    INTERRUPT_GRACE_SECONDS,
    KERNEL_START_ATTEMPTS,
    kernel_start_failed,
    SHUTDOWN_WAIT_SECONDS,
    USAGE_ERROR,
    Events,
    describe_output,
    emit_output,
    finish,
    job_error,
    kernel_name_for,
    read_notebook,
    reap,
    run_main,
    runs,
    start,
)
from execution_metadata import complete_notebook_metadata

try:
    import papermill
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillExecutionError
except ImportError as e:  # reported as a protocol failure in main(), not as a crash
    PAPERMILL_MISSING: ImportError | None = e
else:
    PAPERMILL_MISSING = None

ENGINE_NAME = 'notebook-jobs'


class Cancelled(Exception):
    """Raised from a papermill hook to stop before the next cell."""


class ReportingManager:
    """Stands in for papermill's NotebookExecutionManager: forwards everything, reports the hooks."""

    def __init__(self, nb_man, driver: Driver):
        self._nb_man, self._driver = nb_man, driver

    def __getattr__(self, name):
        return getattr(self._nb_man, name)

    def cell_start(self, cell, cell_index=None, **kwargs):
        if self._driver.cancelled:
            raise Cancelled()
        self._nb_man.cell_start(cell, cell_index, **kwargs)
        self._driver.cell_start(cell, cell_index)

    def cell_exception(self, cell, cell_index=None, **kwargs):
        exception = kwargs.get('exception')
        if exception is not None:
            self._driver.failures[cell_index] = outcome.failure_of(exception)
        self._nb_man.cell_exception(cell, cell_index=cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        # papermill calls this from a finally: block; a cell cut short is marked failed (outcome.py)
        status = cell.get('metadata', {}).get('papermill', {}).get('status')
        if status == 'running' and outcome.cut_short(cell):
            self._nb_man.cell_exception(cell, cell_index=cell_index)
        self._nb_man.cell_complete(cell, cell_index=cell_index, **kwargs)
        self._driver.cell_complete(cell, cell_index)

    def autosave_cell(self, *args, **kwargs):
        self._nb_man.autosave_cell(*args, **kwargs)
        self._driver.report_rich_outputs()


class StreamSink:
    """A file for papermill's stdout_file/stderr_file: each write becomes an `output` event."""

    def __init__(self, driver: Driver, name: str):
        self._driver, self._name = driver, name

    def write(self, text: str) -> int:
        if self._driver.running is not None:
            emit_output(self._driver.events, self._driver.running[0], self._name, text)
        return len(text)

    def flush(self) -> None:
        pass


class KernelStartFailed(Exception):
    """The kernel died or stayed silent before it answered kernel_info, before any cell ran."""


class Driver:
    def __init__(self, args, nb, events: Events):
        self.args, self.nb, self.events = args, nb, events
        self.nb_man = None
        self.km: AsyncKernelManager | None = None
        self.proc: subprocess.Popen | None = None
        self.running: tuple[int, float, object] | None = None  # (index, start, cell) in flight
        self.reported: list = []  # non-stream outputs of the running cell already reported
        self.last_started: int | None = None
        self.failures: dict = {}  # cell index -> outcome.failure_of(its CellExecutionError)
        self.cancelled = False
        self.done = threading.Event()

    def engine(self):
        driver = self

        class ReportingEngine(NBClientEngine):
            """papermill's nbclient engine, with the execution manager's hooks reported."""

            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
                driver.nb_man = nb_man
                return super().execute_managed_notebook(ReportingManager(nb_man, driver), kernel_name, **kwargs)

        return ReportingEngine

    def kernel_manager_class(self):
        driver = self

        class TrackedKernelManager(AsyncKernelManager):
            """The kernel manager nbclient creates, made visible for its pid and for cancellation."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.shutdown_wait_time = SHUTDOWN_WAIT_SECONDS
                driver.km = self

        return TrackedKernelManager

    # hooks
    def kernel_started(self, **_):  # nbclient's on_notebook_start: the kernel is up
        provisioner = self.km.provisioner if self.km is not None else None
        self.proc = getattr(provisioner, 'process', None)
        self.events.emit('kernel_started', pid=getattr(provisioner, 'pid', None))

    def cell_start(self, cell, index):
        if runs(cell):  # papermill calls this for every cell, markdown and blank ones too
            self.running, self.reported, self.last_started = (index, time.monotonic(), cell), [], index
            self.events.emit('cell_start', index=index)

    def report_rich_outputs(self):
        if self.running is None:
            return
        index, _, cell = self.running
        for out in cell.get('outputs', []):
            if out.get('output_type') == 'stream' or any(out is seen for seen in self.reported):
                continue  # streams already went through the StreamSinks
            self.reported.append(out)
            described = describe_output(out)
            if described:
                emit_output(self.events, index, described[0], described[1])

    def cell_complete(self, cell, index):
        if self.running is None or self.running[0] != index:
            return
        self.report_rich_outputs()
        # papermill calls cell_complete from a finally: block, so also on timeout and kernel death;
        # only a cell that got its execute reply (nbclient's record_timing) can have succeeded.
        replied = 'shell.execute_reply' in cell.metadata.get('execution', {})
        failed = any(out.get('output_type') == 'error' for out in cell.get('outputs', []))
        self.cell_done('ok' if replied and not failed else 'error')

    def cell_done(self, status: str) -> None:
        if self.running is None:
            return
        index, start, _ = self.running
        self.running = None
        duration = round(time.monotonic() - start, 3)
        self.events.emit('cell_done', index=index, status=status, duration_seconds=duration)

    # cancellation
    def on_signal(self, signum, frame) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # papermill runs synchronously on this thread, so the stopping is done from another one.
        threading.Thread(target=self.stop_kernel, daemon=True).start()

    def stop_kernel(self) -> None:
        """Interrupts the running cell; kills the kernel if papermill has not returned in time."""
        km = self.km
        if km is not None and km.has_kernel:
            try:
                asyncio.run(ensure_async(km.interrupt_kernel()))
            except Exception as e:
                print(f'interrupt failed: {e}', file=sys.stderr)
        if not self.done.wait(INTERRUPT_GRACE_SECONDS):
            # nbclient notices the dead kernel within a second and papermill unwinds.
            reap(self.proc)

    # execution
    def execute(self) -> tuple[str, dict | None, dict | None]:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                return self.execute_once()
            except KernelStartFailed as e:
                if attempt == KERNEL_START_ATTEMPTS or self.cancelled:
                    return (*outcome.after_exception(e.__cause__, None, self.args.cell_timeout), None)
                print(f'kernel failed while starting ({e.__cause__}); starting a new one', file=sys.stderr)
                reap(self.proc)
        raise AssertionError('unreachable')

    def execute_once(self) -> tuple[str, dict | None, dict | None]:
        timeout = self.args.cell_timeout
        try:
            papermill.execute_notebook(
                self.args.input,
                self.args.output,
                engine_name=ENGINE_NAME,
                kernel_name=kernel_name_for(self.args, self.nb),
                cwd=self.args.cwd or os.path.dirname(os.path.abspath(self.args.input)),
                progress_bar=False,
                start_timeout=math.ceil(self.args.startup_timeout),  # nbclient's Integer trait
                stdout_file=StreamSink(self, 'stdout'),
                stderr_file=StreamSink(self, 'stderr'),
                # papermill's execution_timeout becomes nbclient's Integer timeout trait
                execution_timeout=math.ceil(timeout) if timeout else None,
                # engine kwargs, which NBClientEngine passes to nbclient's NotebookClient
                kernel_manager_class=self.kernel_manager_class(),
                # papermill's client raises when a cell's output is still arriving 4 s (nbclient's
                # iopub_timeout) after its reply, e.g. a multi-megabyte print on a busy task; the
                # local engine (nbclient's default) waits it out with a warning. Same rule for both.
                raise_on_iopub_timeout=False,
                on_notebook_start=self.kernel_started,
            )
            return outcome.after_run(self.executed(), self.failures)
        except PapermillExecutionError as e:
            # The shared rule reads the same notebook papermill just judged (markers removed).
            status, error, stopped = outcome.after_run(self.executed(), self.failures)
            if error is None:  # cannot happen while outcome.py mirrors papermill; keep papermill's
                error = job_error('cell_error', f'{e.ename}: {e.evalue}', e.cell_index, e.ename, e.evalue, e.traceback)
            return 'cell_error', error, None
        except Cancelled:
            return 'cancelled', None, None
        except Exception as e:  # papermill has already closed the cell (cell_complete)
            if self.km is not None and self.last_started is None and kernel_start_failed(e):
                raise KernelStartFailed() from e  # the port race, before any cell: start again
            return (*outcome.after_exception(e, self.last_started, timeout), None)
        finally:
            self.done.set()

    def executed(self):
        """The executed notebook: papermill's, without its error-marker cells (outcome.py)."""
        nb = self.nb_man.nb if self.nb_man is not None else self.nb
        return outcome.remove_error_markers(nb)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        papermill_engines.register(ENGINE_NAME, self.engine())
        self.events.emit('started', cells_total=sum(1 for cell in self.nb.cells if runs(cell)))

        status, error, stopped = self.execute()
        if self.cancelled:  # any ending after SIGTERM/SIGINT is a cancellation
            status, error, stopped = 'cancelled', None, None
        self.cell_done('error')  # defensive: papermill's finally normally closed it
        reap(self.proc)  # papermill shut the kernel down; make sure of it

        nb = self.executed()
        # papermill adds these only to a notebook without metadata.papermill (iorw.load_notebook_node)
        complete_notebook_metadata(nb, papermill.__version__)
        return finish(self.events, nb, self.args.output, status, error, stopped)


def main(argv: list[str] | None = None) -> int:
    started = start(argv, "Run a notebook with papermill's Python API, reporting engine protocol events.")
    if started is None:
        return USAGE_ERROR
    args, events = started
    if PAPERMILL_MISSING is not None:
        message = f'papermill cannot be imported: {PAPERMILL_MISSING}'
        events.emit('finished', status='failed', error=job_error('infrastructure', message))
        return EXIT_CODES['failed']
    nb = read_notebook(args.input, events)
    if nb is None:
        return EXIT_CODES['failed']
    return Driver(args, outcome.remove_error_markers(nb), events).run()


if __name__ == '__main__':
    run_main(main)
