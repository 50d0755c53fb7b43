#!/usr/bin/env python3
"""Runs one notebook with nbclient and reports JSON-lines events (protocol: README.md here).

Also holds the protocol helpers that papermill_driver.py reuses.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import traceback

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async

EXIT_CODES = {'ok': 0, 'cell_error': 1, 'timeout': 2, 'cancelled': 3, 'kernel_died': 4, 'failed': 4}
USAGE_ERROR = 64
# After SIGTERM a running cell gets this long to honour the kernel interrupt before we stop waiting.
INTERRUPT_GRACE_SECONDS = 1.5
# jupyter_client waits half of this for a clean kernel exit, then SIGTERMs, then SIGKILLs.
SHUTDOWN_WAIT_SECONDS = 2.0
SKIP_TAG = 'skip-execution'  # nbclient's default skip_cells_with_tag: such cells never run
OUTPUT_MSG_TYPES = {'stream', 'execute_result', 'display_data', 'error'}
# An `output` event carries at most this many characters (so at most 64 KiB of UTF-8): a huge
# print becomes many bounded event lines, which the runner joins back into log lines.
OUTPUT_PIECE_CHARS = 16 * 1024
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


# ---- protocol helpers (shared with papermill_driver.py) ----


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2, which the protocol reserves for cell timeouts
        self.print_usage(sys.stderr)
        sys.stderr.write(f'{self.prog}: error: {message}\n')
        sys.exit(USAGE_ERROR)


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'not a positive number of seconds: {text}')
    return value


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = _Parser(description=description)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    parser.add_argument('--kernel')
    parser.add_argument('--cell-timeout', type=_seconds)
    parser.add_argument('--cwd')
    parser.add_argument('--events-fd', type=int, default=3)
    args = parser.parse_args(argv)
    if args.cwd is not None and not os.path.isdir(args.cwd):
        parser.error(f'--cwd is not a directory: {args.cwd}')
    return args


def start(argv: list[str] | None, description: str):
    """Parses arguments and opens the events descriptor: (args, events), or None after saying why."""
    args = parse_args(argv, description)
    os.environ.setdefault('PYDEVD_DISABLE_FILE_VALIDATION', '1')  # inherited by the kernel
    try:
        return args, Events(args.events_fd)
    except OSError as e:
        print(f'cannot use --events-fd {args.events_fd}: {e}', file=sys.stderr)
        return None


class Events:
    """One JSON object per line on the events descriptor, flushed per line."""

    def __init__(self, fd: int):
        self._out = os.fdopen(fd, 'w', encoding='utf-8', closefd=False)

    def emit(self, event: str, **fields) -> None:
        try:
            self._out.write(json.dumps({'event': event, **fields}) + '\n')
            self._out.flush()
        except (OSError, ValueError):
            pass  # the reader is gone; carry on so the kernel still gets shut down


def emit_output(events: Events, index: int, stream: str, text: str) -> None:
    """Reports output text as `output` events of at most OUTPUT_PIECE_CHARS characters each."""
    for start in range(0, max(len(text), 1), OUTPUT_PIECE_CHARS):
        events.emit('output', index=index, stream=stream, text=text[start : start + OUTPUT_PIECE_CHARS])


def strip_ansi(lines) -> list[str]:
    return [ANSI_ESCAPE.sub('', line) for line in lines or []]


def describe_output(out) -> tuple[str, str] | None:
    """(stream, text) of an nbformat output, as the `output` event reports it."""
    kind = out.get('output_type')
    if kind == 'stream':
        return out.get('name', 'stdout'), out.get('text', '')
    if kind in ('execute_result', 'display_data'):
        text = out.get('data', {}).get('text/plain')
        return None if text is None else ('output', text if isinstance(text, str) else ''.join(text))
    if kind == 'error':
        lines = [f"{out.get('ename')}: {out.get('evalue')}", *strip_ansi(out.get('traceback'))]
        return 'stderr', '\n'.join(lines)
    return None


def job_error(kind, message, cell_index=None, ename=None, evalue=None, traceback=None) -> dict:
    return {
        'type': kind,
        'message': message,
        'cell_index': cell_index,
        'ename': ename,
        'evalue': evalue,
        'traceback': strip_ansi(traceback),
    }


def runs(cell) -> bool:
    """Whether nbclient executes this cell (it skips blank and skip-execution-tagged ones)."""
    return (
        cell.get('cell_type') == 'code'
        and bool(cell.get('source', '').strip())
        and SKIP_TAG not in cell.get('metadata', {}).get('tags', [])
    )


def kernel_name_for(args, nb) -> str:
    return args.kernel or nb.metadata.get('kernelspec', {}).get('name') or 'python3'


def read_notebook(path: str, events: Events):
    """The input notebook, or None after reporting why it cannot be used."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # unreadable file, not JSON, not a notebook
        message = f'cannot read notebook {path}: {type(e).__name__}: {e}'
        events.emit('finished', status='failed', error=job_error('invalid_notebook', message))
        return None


def write_notebook(nb, path: str) -> None:
    # Write then rename, so a reader never sees half a notebook.
    partial = f'{path}.partial'
    text = nbformat.writes(nb)
    if not _utf8_encodable(text):
        # JSON strings may hold lone surrogates (e.g. a parameter value) that UTF-8 cannot encode;
        # escaped as \\uXXXX they stay valid JSON and read back as the same string.
        text = nbformat.writes(nb, ensure_ascii=True)
    with open(partial, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(partial, path)


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode('utf-8')
        return True
    except UnicodeEncodeError:
        return False


def reap(proc: subprocess.Popen | None) -> None:
    """Last resort: no kernel process may outlive the driver (nor linger as our zombie)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel leads its own session
    except OSError:
        proc.kill()
    proc.wait(timeout=10)


def finish(events: Events, nb, path: str, status: str, error: dict | None) -> int:
    """Writes the output notebook, then emits `finished`; returns the exit code."""
    try:
        write_notebook(nb, path)
    except Exception as e:
        if status != 'cancelled':  # keep exit 3: the runner relies on it to label a job timeout
            status = 'failed'
            error = job_error('infrastructure', f'cannot write {path}: {type(e).__name__}: {e}')
    events.emit('finished', status=status, error=error)
    return EXIT_CODES[status]


def run_main(main) -> None:
    try:
        code = main()
    except Exception:  # a driver bug must not pass for a cell error (exit 1)
        traceback.print_exc()
        code = EXIT_CODES['failed']
    sys.exit(code)


# ---- the nbclient engine ----


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
            on_cell_execute=self.cell_started,
            on_cell_executed=self.cell_executed,
        )
        self.running: tuple[int, float] | None = None  # (index, start) of the cell in flight
        self.last_reply: dict | None = None
        self.last_index: int | None = None
        self.cancelled = False
        self.task: asyncio.Task | None = None
        self.proc: subprocess.Popen | None = None

    # nbclient hooks
    def cell_started(self, cell, cell_index, **_):
        self.running = (cell_index, time.monotonic())
        self.events.emit('cell_start', index=cell_index)

    def cell_executed(self, cell, cell_index, execute_reply, **_):
        self.last_reply, self.last_index = execute_reply, cell_index
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

    # execution
    async def execute(self) -> None:
        c = self.client
        # We start the kernel ourselves rather than through async_setup_kernel, which installs
        # its own SIGINT/SIGTERM handlers.
        c.km = c.create_kernel_manager()
        c.km.shutdown_wait_time = SHUTDOWN_WAIT_SECONDS
        await c.async_start_new_kernel(cwd=self.cwd)
        self.proc = getattr(c.km.provisioner, 'process', None)
        await c.async_start_new_kernel_client()
        self.events.emit('kernel_started', pid=getattr(c.km.provisioner, 'pid', None))

        info = await c.async_wait_for_reply(await ensure_async(c.kc.kernel_info()))
        if info and 'language_info' in info['content']:
            self.nb.metadata['language_info'] = info['content']['language_info']
        for index, cell in enumerate(self.nb.cells):
            if self.cancelled:  # e.g. the interrupted cell swallowed KeyboardInterrupt
                break
            await c.async_execute_cell(cell, index, execution_count=c.code_cells_executed + 1)
        c.set_widgets_metadata()

    async def outcome(self) -> tuple[str, dict | None]:
        try:
            await self.task
            result = ('ok', None)
        except CellExecutionError as e:
            content = (self.last_reply or {}).get('content', {})
            result = (
                'cell_error',
                job_error(
                    'cell_error',
                    f'{e.ename}: {e.evalue}',
                    self.last_index,
                    e.ename,
                    e.evalue,
                    content.get('traceback', []),
                ),
            )
        except CellTimeoutError:
            index = self.running[0] if self.running else None
            limit = math.ceil(self.args.cell_timeout)
            result = ('timeout', job_error('timeout', f'cell {index} ran longer than {limit} s', index))
        except DeadKernelError:
            index = self.running[0] if self.running else None
            result = ('kernel_died', job_error('kernel_died', f'the kernel died while running cell {index}', index))
        except asyncio.CancelledError:
            result = ('cancelled', None)
        except Exception as e:
            result = ('failed', job_error('infrastructure', f'{type(e).__name__}: {e}'))
        # Any ending after SIGTERM/SIGINT (interrupted cell, killed wait) is a cancellation.
        return ('cancelled', None) if self.cancelled else result

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
        # Outputs are from this run only, as with papermill: cells never reached stay empty.
        for cell in self.nb.cells:
            if cell.cell_type == 'code':
                cell.outputs, cell.execution_count = [], None

        self.events.emit('started', cells_total=sum(1 for cell in self.nb.cells if runs(cell)))
        self.task = asyncio.ensure_future(self.execute())
        status, error = await self.outcome()
        self.cell_done('error')  # a cell cut short by timeout, kernel death or cancellation
        # Report first, then shut the kernel down: the runner records the result while the kernel
        # exits, and still waits for this process (and so the kernel) to be gone before it exits.
        code = finish(self.events, self.nb, self.args.output, status, error)
        await self.shutdown_kernel()
        return code


def main(argv: list[str] | None = None) -> int:
    started = start(argv, 'Run a notebook with nbclient, reporting engine protocol events.')
    if started is None:
        return USAGE_ERROR
    args, events = started
    nb = read_notebook(args.input, events)
    if nb is None:
        return EXIT_CODES['failed']
    return asyncio.run(Driver(args, nb, events).run())


if __name__ == '__main__':
    run_main(main)
