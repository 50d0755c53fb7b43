#!/usr/bin/env python3
"""The engine sandbox: runs one engine driver for the runner, so that a job's end is the end of
every process the job started, and so that the kernel runs as its own user when one is configured.

    python3 -I sandbox.py [--user NAME] [--workdir DIR] [--grace SECONDS] -- PROGRAM [ARG...]

stdin: one line, a JSON object {"env": {NAME: VALUE, ...}}: the whole environment of PROGRAM (the runner
builds it from an allow-list: lambda/kernels/kernel-env.ts). It comes on stdin, not in this
process's own environment or argv, so that the sandbox (root, with --user) never runs with
variables a job may set, and so that /proc/<pid>/cmdline, which every user can read, never shows
them. The rest of stdin is PROGRAM's (a warm driver reads its job from it: engines/README.md).

On Linux:
- The sandbox makes itself a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the driver, the
  kernel or the notebook starts stays its descendant even after a double fork or setsid(), and
  orphans are reparented to it rather than to init. Descendants are found through the parent links
  in /proc/<pid>/stat.
- It asks for SIGHUP when its parent (the runner) dies (PR_SET_PDEATHSIG); then nobody is left to
  save the notebook, so it kills everything at once. The runner starts it in a session of its own,
  so the launcher's SIGKILL of the runner's process group reaches it only this way.
- --user NAME (the sandbox must be root): DIR and what it holds become NAME's, and PROGRAM starts as
  NAME (its groups, gid, uid) with no_new_privs, so set-user-id programs cannot give back what was
  dropped. The sandbox itself stays root, so it can stop every descendant whatever it became.
- SIGTERM and SIGINT are forwarded to PROGRAM (the driver interrupts the kernel, saves the partial
  notebook and shuts the kernel down). When PROGRAM exits, or GRACE seconds after the first signal,
  every remaining descendant is SIGKILLed and reaped; then the sandbox exits as PROGRAM did.
Elsewhere (macOS) there is no subreaper and no /proc: only PROGRAM itself is stopped (the drivers
stop their kernel), and the sandbox says so.

fd 3, the engine's events, passes through to PROGRAM. Exit 64: bad usage, unknown user, not root.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import signal
import subprocess
import sys
import time

USAGE_ERROR = 64
EVENTS_FD = 3
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
# Killing keeps at it this long: a process in uninterruptible sleep dies only when its I/O ends.
KILL_PATIENCE_SECONDS = 10
ON_LINUX = sys.platform.startswith('linux')


class Stop(Exception):
    """Raised by a signal handler to leave the wait for the program: kill everything now."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def say(message: str) -> None:
    print(f'sandbox: {message}', file=sys.stderr, flush=True)


_libc = None


def prctl(option: int, value: int) -> bool:
    """Linux prctl(2); False where there is none or it fails."""
    global _libc
    if not ON_LINUX:
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    zero = ctypes.c_ulong(0)
    return _libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero) == 0


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description='Run an engine driver; nothing it starts outlives it.')
    parser.add_argument('--user', help='run PROGRAM as this user (the sandbox must be root)')
    parser.add_argument('--workdir', help="PROGRAM's working folder; with --user, made that user's")
    parser.add_argument('--grace', type=float, default=20.0, help='seconds from SIGTERM to SIGKILL')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='-- PROGRAM [ARG...]')
    args = parser.parse_args(argv)
    if args.command[:1] == ['--']:
        args.command = args.command[1:]
    if not args.command:
        parser.print_usage(sys.stderr)
        sys.exit(USAGE_ERROR)
    return args


ENV_LINE_LIMIT = 1 << 20


def read_line(fd: int = 0) -> bytes:
    """The first line of stdin (or all of it, without a newline), read a byte at a time: what
    follows it is PROGRAM's (a warm driver's job line), so none of it may be buffered here."""
    data = bytearray()
    while len(data) < ENV_LINE_LIMIT and (byte := os.read(fd, 1)) not in (b'', b'\n'):
        data += byte
    return bytes(data)


def read_environment() -> dict[str, str] | None:
    try:
        env = json.loads(read_line())['env']
    except (ValueError, KeyError, TypeError) as e:
        say(f'stdin must be {{"env": {{...}}}}: {type(e).__name__}: {e}')
        return None
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        say('"env" must map names to strings')
        return None
    return env


def give_folder(path: str, user: pwd.struct_passwd) -> None:
    """The runner (root) just made this folder and wrote the input notebook and the job's input
    files in it: hand them all over. lchown, never following a link (the runner writes no links)."""
    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    os.chmod(path, 0o700)
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def entering(user: pwd.struct_passwd | None, sandbox_pid: int):
    """Runs in the child between fork and exec (the sandbox has no threads, so this is safe)."""

    def enter() -> None:
        if user is not None:
            os.initgroups(user.pw_name, user.pw_gid)
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            if not prctl(PR_SET_NO_NEW_PRIVS, 1) and ON_LINUX:
                raise OSError('cannot set no_new_privs')
        # After setuid, which clears it: the program dies with the sandbox, whoever kills it.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != sandbox_pid:
            os._exit(1)

    return enter


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process (thread groups only), from /proc."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ")" ends it.
        fields = stat[stat.rindex(b')') + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(root: int) -> dict[int, str]:
    """pid -> state of every descendant of `root`."""
    children: dict[int, list[int]] = {}
    table = process_table()
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][1]
            todo.append(child)
    return found


def command_name(pid: int) -> str:
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip()
    except OSError:
        return '?'


class Sandbox:
    def __init__(self, args, env: dict[str, str], user: pwd.struct_passwd | None, subreaper: bool):
        self.args, self.env, self.user, self.subreaper = args, env, user, subreaper
        self.proc: subprocess.Popen | None = None
        self.status: int | None = None  # the program's wait status, once reaped
        self.pending: list[int] = []  # signals that came before the program started
        self.armed = False

    # signal handlers
    def on_stop(self, sig, _frame) -> None:
        if self.proc is None:
            self.pending.append(sig)
        else:
            self.forward(sig)
        if not self.armed and self.args.grace > 0:
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, self.args.grace)

    def on_grace_over(self, _sig, _frame) -> None:
        raise Stop(f'the engine did not stop within {self.args.grace:g} s')

    def on_parent_gone(self, _sig, _frame) -> None:
        raise Stop('the runner is gone')

    def forward(self, sig: int) -> None:
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def reap(self, block: bool) -> bool:
        """Reaps one child (the program or an orphan handed to us); False when there was none."""
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid and self.proc is not None and pid == self.proc.pid:
            self.status = status
            self.proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        return pid != 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGALRM, self.on_grace_over)
        signal.signal(signal.SIGHUP, self.on_parent_gone)
        why = None
        try:
            self.proc = subprocess.Popen(
                self.args.command,
                env=self.env,
                cwd=self.args.workdir,
                stdin=0,  # the rest of ours: a warm driver's job line (else nothing)
                pass_fds=(EVENTS_FD,) if _is_open(EVENTS_FD) else (),
                preexec_fn=entering(self.user, os.getpid()),
            )
            for sig in self.pending:
                self.forward(sig)
            while self.status is None and self.reap(block=True):
                pass
        except Stop as stop:
            why = stop.why
        except (OSError, subprocess.SubprocessError) as e:
            say(f'cannot start {self.args.command[0]}: {type(e).__name__}: {e}')
        finally:
            while True:  # a last signal may still raise Stop before the handlers are off
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
                        signal.signal(sig, signal.SIG_IGN)
                    break
                except Stop as stop:
                    why = why or stop.why
            self.kill_everything(why)
        return self.exit_code()

    def kill_everything(self, why: str | None) -> None:
        """SIGKILLs every descendant until none is left (or only ones we may not signal), reaping."""
        if not self.subreaper:
            if self.proc is not None and self.status is None:
                self.proc.kill()
                while self.status is None and self.reap(block=True):
                    pass
            return
        killed: dict[int, str] = {}
        refused: set[int] = set()
        deadline = time.monotonic() + KILL_PATIENCE_SECONDS
        while True:
            while self.reap(block=False):
                pass
            left = descendants(os.getpid())
            live = [pid for pid, state in left.items() if state != 'Z' and pid not in refused]
            if not live and all(state != 'Z' for state in left.values()):
                break  # (zombies wait for their parent to die, then come to us to be reaped)
            if time.monotonic() > deadline:
                say(f'processes still there after {KILL_PATIENCE_SECONDS} s: {sorted(left)}')
                break
            for pid in live:
                killed.setdefault(pid, command_name(pid))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    refused.add(pid)
                    say(f'may not stop process {pid} ({killed[pid]}): it changed its user')
            time.sleep(0.02)
        stray = {pid: name for pid, name in killed.items() if self.proc is None or pid != self.proc.pid}
        if stray:
            names = ', '.join(f'{name} ({pid})' for pid, name in list(stray.items())[:5])
            more = f' and {len(stray) - 5} more' if len(stray) > 5 else ''
            reason = why or 'the engine had exited'
            say(f'stopped {len(stray)} process(es) the job left running ({reason}): {names}{more}')
        elif why:
            say(f'stopped the engine: {why}')

    def exit_code(self) -> int:
        if self.status is None:
            return 1
        code = os.waitstatus_to_exitcode(self.status)
        if code < 0:
            # End the way the program ended, so the runner sees its signal.
            if -code != signal.SIGKILL:
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            return 128 - code
        return code


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = read_environment()
    if env is None:
        return USAGE_ERROR
    user = None
    if args.user is not None:
        try:
            user = pwd.getpwnam(args.user)
        except KeyError:
            say(f'no such user: {args.user}')
            return USAGE_ERROR
        if os.geteuid() != 0:
            say(f'--user {args.user} needs root to switch users (running as uid {os.geteuid()})')
            return USAGE_ERROR
        if args.workdir:
            give_folder(args.workdir, user)
    parent = os.getppid()
    subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
    if subreaper:
        prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
        if os.getppid() != parent:
            say('the runner is gone')
            return 1
    else:
        say('no child subreaper here (Linux only): processes a notebook detaches may outlive the job')
    return Sandbox(args, env, user, subreaper).run()


if __name__ == '__main__':
    sys.exit(main())
