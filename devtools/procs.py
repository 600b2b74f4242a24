"""The one launcher of child processes (provider, Redis, nginx, the gateway, demo parts): a ``Proc`` with
its output in a file, stopped idempotently (the signal, a bounded wait, then SIGKILL to its group)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child when the harness dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return text[-chars:] if text else "<empty log>"


class Proc:
    """One child process with stdout and stderr in files (never a pipe that can fill up).

    ``new_session``: the child gets its own process group, so a Ctrl-C in the terminal reaches only the
    parent (which then stops its children in order), and ``stop`` can kill what the child forked.
    ``die_with_parent`` (PR_SET_PDEATHSIG) is for long-lived harnesses only (bench): the kernel ties it to
    the *thread* that forked, so a child started from a short-lived thread would die with that thread.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        term_signal: int = signal.SIGTERM,
        stderr_log: Path | None = None,
        new_session: bool = True,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.stderr_log = stderr_log or log
        self.term_signal = term_signal
        with contextlib.ExitStack() as files:
            out = files.enter_context(log.open("ab"))
            err = files.enter_context(stderr_log.open("ab")) if stderr_log is not None else None
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err if err is not None else subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=new_session,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        self._own_group = new_session

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return tail(self.log, chars)

    def stderr_tail(self, chars: int = 4000) -> str:
        return tail(self.stderr_log, chars)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child (SIGSTOP/SIGCONT for a hung peer, SIGHUP for a reload)."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0, sig: int | None = None) -> int | None:
        """Send ``sig`` (default ``term_signal``), wait up to ``timeout``, then SIGKILL the child's group."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(self.term_signal if sig is None else sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.popen.kill()
                self.popen.wait(5)
        # Leftovers in the child's own group (e.g. worker processes of a supervisor that died first).
        self._kill_group()
        return self.popen.returncode

    def _kill_group(self) -> None:
        if self._own_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
