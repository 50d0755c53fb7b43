#!/usr/bin/env python3
"""Runs one notebook with nbclient and reports JSON-lines events (protocol: README.md here).

It runs the cells as papermill's PapermillNotebookClient does, writes the `metadata.papermill` that
papermill writes (execution_metadata.py) and ends by the rule both engines share (outcome.py).
"""
from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
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
    read_job,
    read_notebook,
    reap,
    run_main,
    runs,
    start,
)
from execution_metadata import ExecutionMetadata


OUTPUT_MSG_TYPES = {'stream', 'execute_result', 'display_data', 'error'}


class ReportingClient(NotebookClient):
    """A NotebookClient that hands each output message to `on_output` as it arrives."""

    def __init__(self, nb, on_output, **kw):
        super().__init__(nb, **kw)
        self._on_output = on_output

    def process_message(self, msg, cell, cell_index):
        if msg['msg_type'] in OUTPUT_MSG_TYPES:
            self._on_output(cell_index, nbformat.v4.output_from_msg(msg))
        return super().process_message(msg, cell, cell_index)


class Driver:
    def __init__(self, args, nb, events: Events):
        self.args, self.nb, self.events = args, nb, events
        self.cwd = args.cwd or os.path.dirname(os.path.abspath(args.input))
        self.client = ReportingClient(
            nb,
            self.report_output,
            kernel_name=kernel_name_for(args, nb),
            # nbclient's timeout is an Integer trait
            timeout=math.ceil(args.cell_timeout) if args.cell_timeout else None,
            record_timing=True,
            # nbclient's startup_timeout is an Integer trait
            startup_timeout=math.ceil(args.startup_timeout),
            on_cell_execute=self.cell_started,
            on_cell_executed=self.cell_executed,
        )
        self.meta = ExecutionMetadata(nb, args.input, args.output) if args.input else None
        self.language_info: dict | None = None  # from the kernel's kernel_info reply
        self.failures: dict = {}  # cell index -> outcome.failure_of(its CellExecutionError)
        self.running: tuple[int, float] | None = None  # (index, start) of the cell in flight
        self.last_index: int | None = None
        self.cancelled = False
        self.task: asyncio.Task | None = None
        self.proc: subprocess.Popen | None = None

    # nbclient hooks
    def cell_started(self, cell, cell_index, **_):
        self.running = (cell_index, time.monotonic())
        self.events.emit('cell_start', index=cell_index)

    def cell_executed(self, cell, cell_index, execute_reply, **_):
        self.last_index = cell_index
        ok = (execute_reply or {}).get('content', {}).get('status') == 'ok'
        self.cell_done('ok' if ok else 'error')

    def report_output(self, cell_index, out):
        described = describe_output(out)
        # After a timeout nbclient keeps draining the cell's messages; they come after its cell_done.
        if described and self.running is not None and self.running[0] == cell_index:
            emit_output(self.events, cell_index, described[0], described[1])

    def cell_done(self, status: str) -> None:
        if self.running is None:
            return
        index, start = self.running
        self.running = None
        duration = round(time.monotonic() - start, 3)
        self.events.emit('cell_done', index=index, status=status, duration_seconds=duration)

    # cancellation
    def on_signal(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        if self.running is not None:
            asyncio.ensure_future(self.interrupt_then_stop())
        elif self.task is not None:
            self.task.cancel()

    async def interrupt_then_stop(self) -> None:
        # The interrupt ends the cell cleanly (its outputs so far are kept); if the kernel
        # ignores it, stop waiting for the cell.
        try:
            await ensure_async(self.client.km.interrupt_kernel())
        except Exception as e:
            print(f'interrupt failed: {e}', file=sys.stderr)
        await asyncio.sleep(INTERRUPT_GRACE_SECONDS)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def start_kernel(self) -> None:
        """Starts the kernel and its client. jupyter_client picks free ports and the kernel binds
        them a moment later; another process can take one in between, and the kernel then dies at
        start ("ZMQError: Address already in use", "Kernel died before replying to kernel_info"), or
        a kernel may not answer in time. No cell has run then, so it is started again with new
        ports, up to KERNEL_START_ATTEMPTS."""
        c = self.client
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            # Started by hand rather than through async_setup_kernel, which installs its own
            # SIGINT/SIGTERM handlers.
            c.km = c.create_kernel_manager()
            c.km.shutdown_wait_time = SHUTDOWN_WAIT_SECONDS
            await c.async_start_new_kernel(cwd=self.cwd)
            self.proc = getattr(c.km.provisioner, 'process', None)
            try:
                await c.async_start_new_kernel_client()  # on failure it has cleaned the kernel up
                return
            except RuntimeError as e:
                if attempt == KERNEL_START_ATTEMPTS or not kernel_start_failed(e) or self.cancelled:
                    raise
                print(f'kernel failed while starting ({e}); starting a new one', file=sys.stderr)
                reap(self.proc)

    async def kernel_info(self) -> None:
        c = self.client
        info = await c.async_wait_for_reply(await ensure_async(c.kc.kernel_info()))
        if info and 'language_info' in info['content']:
            self.language_info = info['content']['language_info']

    def take(self, nb, job) -> None:
        """Warm start: the job for the kernel already running (job: input, output, cell_timeout)."""
        self.nb = self.client.nb = nb
        self.args.input, self.args.output, self.args.cell_timeout = job.input, job.output, job.cell_timeout
        self.client.timeout = math.ceil(job.cell_timeout) if job.cell_timeout else None
        self.meta = ExecutionMetadata(nb, job.input, job.output)

    # execution
    async def execute(self) -> None:
        c = self.client
        if c.kc is None:  # cold start (a warm driver started its kernel before the job came)
            await self.start_kernel()
            await self.kernel_info()
        self.events.emit('kernel_started', pid=getattr(c.km.provisioner, 'pid', None))
        if self.language_info is not None:
            self.nb.metadata['language_info'] = self.language_info
        # papermill/clientwrap.py papermill_execute_cells: every cell goes through cell_start and
        # cell_complete; a cell error marks the cell failed and ends the loop without raising.
        for index, cell in enumerate(self.nb.cells):
            if self.cancelled:  # e.g. the interrupted cell swallowed KeyboardInterrupt
                break
            try:
                self.meta.cell_start(cell)
                await c.async_execute_cell(cell, index, execution_count=c.code_cells_executed + 1)
            except CellExecutionError as e:
                self.failures[index] = outcome.failure_of(e)
                self.meta.cell_exception(cell)
                break
            finally:
                if outcome.cut_short(cell) and cell.metadata.papermill.get('status') != 'failed':
                    self.meta.cell_exception(cell)
                self.meta.cell_complete(cell)
        c.set_widgets_metadata()

    async def outcome(self) -> tuple[str, dict | None, dict | None]:
        try:
            await self.task
            result = outcome.after_run(self.nb, self.failures)
        except asyncio.CancelledError:
            result = ('cancelled', None, None)
        except Exception as e:
            index = self.running[0] if self.running else self.last_index
            result = (*outcome.after_exception(e, index, self.args.cell_timeout), None)
        # Any ending after SIGTERM/SIGINT (interrupted cell, killed wait) is a cancellation.
        return ('cancelled', None, None) if self.cancelled else result

    async def shutdown_kernel(self) -> None:
        c, km = self.client, self.client.km
        # (A cancellation during start-up can leave a launched kernel that execute() never saw.)
        proc = self.proc or getattr(getattr(km, 'provisioner', None), 'process', None)
        try:
            if km is not None and await ensure_async(km.is_alive()):
                # Graceful: interrupt, shutdown request, then SIGTERM/SIGKILL after SHUTDOWN_WAIT_SECONDS.
                await asyncio.wait_for(ensure_async(km.shutdown_kernel()), SHUTDOWN_WAIT_SECONDS + 3)
        except Exception as e:
            print(f'kernel shutdown failed: {type(e).__name__}: {e}', file=sys.stderr)
        finally:
            if c.kc is not None:
                c.kc.stop_channels()
            reap(proc)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal)
        self.events.emit('started', cells_total=sum(1 for cell in self.nb.cells if runs(cell)))
        # Outputs are from this run only, as with papermill: cells never reached stay empty.
        self.meta.notebook_start()
        self.task = asyncio.ensure_future(self.execute())
        status, error, stopped = await self.outcome()
        self.cell_done('error')  # a cell cut short by timeout, kernel death or cancellation
        self.meta.notebook_complete()
        # Report first, then shut the kernel down: the runner records the result while the kernel
        # exits, and still waits for this process (and so the kernel) to be gone before it exits.
        code = finish(self.events, self.nb, self.args.output, status, error, stopped)
        await self.shutdown_kernel()
        return code


async def warm(args, events: Events) -> int:
    """Warm start: starts the kernel, says `warm`, waits for the job on stdin, then runs it as a cold
    driver would. Stdin closed (or SIGTERM) before a job comes: the kernel is shut down, exit 0."""
    driver = Driver(args, nbformat.v4.new_notebook(), events)
    loop = asyncio.get_running_loop()
    # Read without a thread: a thread blocked on stdin would keep asyncio.run from returning.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = asyncio.ensure_future(reader.readline())
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await driver.start_kernel()
        await driver.kernel_info()
        events.emit('warm', pid=getattr(driver.client.km.provisioner, 'pid', None))
        stop = asyncio.ensure_future(stopped.wait())
        await asyncio.wait([line, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        text = line.result().decode() if line.done() else ''
        line.cancel()
        if not text.strip():
            raise asyncio.CancelledError  # no job: the pool is shrinking or the runner is gone
        job = read_job(text)
    except asyncio.CancelledError:
        await driver.shutdown_kernel()
        return 0
    except Exception as e:  # a kernel that does not start, a job line that is not one
        print(f'warm start failed: {type(e).__name__}: {e}', file=sys.stderr)
        await driver.shutdown_kernel()
        events.emit('finished', status='failed', error=job_error('infrastructure', f'warm start failed: {e}'))
        return EXIT_CODES['failed']
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    nb = read_notebook(job.input, events)
    if nb is None:
        await driver.shutdown_kernel()
        return EXIT_CODES['failed']
    driver.take(outcome.remove_error_markers(nb), job)
    return await driver.run()


def main(argv: list[str] | None = None) -> int:
    started = start(argv, 'Run a notebook with nbclient, reporting engine protocol events.')
    if started is None:
        return USAGE_ERROR
    args, events = started
    if args.warm:
        return asyncio.run(warm(args, events))
    nb = read_notebook(args.input, events)
    if nb is None:
        return EXIT_CODES['failed']
    return asyncio.run(Driver(args, outcome.remove_error_markers(nb), events).run())


if __name__ == '__main__':
    run_main(main)
