#!/usr/bin/env python3
"""The engine protocol (README.md here) as both drivers speak it: command line, events, output
pieces, reading and writing notebooks, the `finished` line and exit codes."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import traceback

import nbformat

EXIT_CODES = {'ok': 0, 'cell_error': 1, 'timeout': 2, 'cancelled': 3, 'kernel_died': 4, 'failed': 4}
USAGE_ERROR = 64
# After SIGTERM a running cell gets this long to honour the kernel interrupt before we stop waiting.
INTERRUPT_GRACE_SECONDS = 1.5
# jupyter_client waits half of this for a clean kernel exit, then SIGTERMs, then SIGKILLs.
SHUTDOWN_WAIT_SECONDS = 2.0
SKIP_TAG = 'skip-execution'  # nbclient's default skip_cells_with_tag: such cells never run
# A kernel that dies before it answers kernel_info (another process took one of the ports
# jupyter_client chose, "Address already in use"), or that does not answer it within the startup
# timeout, is started again, this many starts in all. No cell has run then, so starting again
# changes nothing but the ports. (The 1,000-job soak lost one job in a thousand to "Kernel didn't
# respond in 60 seconds" at a concurrency of 5 before this.)
KERNEL_START_ATTEMPTS = 3
# nbclient's and papermill's default wait for a starting kernel's kernel_info reply.
KERNEL_STARTUP_SECONDS = 60.0


def kernel_start_failed(error: BaseException) -> bool:
    """Whether jupyter_client gave up on a kernel before it answered kernel_info: it died
    ("Kernel died before replying to kernel_info") or stayed silent ("Kernel didn't respond in N
    seconds"). Either way no cell has run, so it may be started again."""
    text = str(error)
    return 'died before replying to kernel_info' in text or "Kernel didn't respond in" in text

# An `output` event carries at most this many characters (so at most 64 KiB of UTF-8): a huge
# print becomes many bounded event lines, which the runner joins back into log lines.
OUTPUT_PIECE_CHARS = 16 * 1024
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


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
    parser.add_argument('--input')
    parser.add_argument('--output')
    parser.add_argument('--kernel')
    parser.add_argument('--cell-timeout', type=_seconds)
    parser.add_argument('--cwd')
    parser.add_argument('--events-fd', type=int, default=3)
    parser.add_argument(
        '--startup-timeout',
        type=_seconds,
        default=KERNEL_STARTUP_SECONDS,
        help='seconds a starting kernel has to answer kernel_info before it is started again',
    )
    parser.add_argument(
        '--warm',
        action='store_true',
        help='start the kernel now, then read the job from stdin (see README.md: Warm start)',
    )
    args = parser.parse_args(argv)
    if args.warm:
        if args.input or args.output or args.cell_timeout:
            parser.error('--warm takes --input, --output and --cell-timeout from stdin, not arguments')
        if not args.kernel or not args.cwd:
            parser.error('--warm needs --kernel and --cwd: the kernel starts before the job is known')
    elif not args.input or not args.output:
        parser.error('--input and --output are required')
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


def read_job(line: str, parse=json.loads) -> argparse.Namespace:
    """A warm driver's job: one JSON line {"input", "output", "cell_timeout"} (ValueError if not)."""
    job = parse(line)
    if not isinstance(job, dict) or not all(isinstance(job.get(k), str) and job[k] for k in ('input', 'output')):
        raise ValueError('the job line must be {"input": PATH, "output": PATH, "cell_timeout": SECONDS|null}')
    timeout = job.get('cell_timeout')
    if timeout is not None:
        timeout = _seconds(str(timeout))
    return argparse.Namespace(input=job['input'], output=job['output'], cell_timeout=timeout)


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


def finish(events: Events, nb, path: str, status: str, error: dict | None, stopped: dict | None = None) -> int:
    """Writes the output notebook, then emits `finished`; returns the exit code. `stopped` says where
    a notebook that ended itself cleanly (outcome.clean_stop) stopped."""
    try:
        write_notebook(nb, path)
    except Exception as e:
        if status != 'cancelled':  # keep exit 3: the runner relies on it to label a job timeout
            status, stopped = 'failed', None
            error = job_error('infrastructure', f'cannot write {path}: {type(e).__name__}: {e}')
    extra = {'stopped': stopped} if stopped else {}
    events.emit('finished', status=status, error=error, **extra)
    return EXIT_CODES[status]


def run_main(main) -> None:
    try:
        code = main()
    except Exception:  # a driver bug must not pass for a cell error (exit 1)
        traceback.print_exc()
        code = EXIT_CODES['failed']
    sys.exit(code)
