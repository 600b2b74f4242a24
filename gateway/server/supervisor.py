"""The worker supervisor for ``server.workers > 1``: forks the workers that share the public port
(SO_REUSEPORT), restarts any that dies (with back-off), forwards signals to them, and owns the
Prometheus multiprocess directory they share."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from gateway.config import load_config
from gateway.config.schema import GatewayConfig
from gateway.logs import configure_logging
from gateway.server.gateway import serve, use_uvloop

log = logging.getLogger("tokengate")

POLL_INTERVAL = 0.2  # seconds between checks for dead workers
QUICK_EXIT = 10.0  # a worker that dies sooner after its start counts as a failure to start
MAX_BACKOFF = 30.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def backoff(quick_failures: int) -> float:
    """Seconds before a replacement starts: 0 after a healthy run, else 0.5 s doubling to 30 s, so a
    worker that dies right after start (a bad host, a port taken) is not restarted five times a second."""
    return min(MAX_BACKOFF, 0.5 * 2 ** (quick_failures - 1)) if quick_failures else 0.0


@dataclass
class _Worker:
    pid: int
    started: float


@dataclass
class Supervisor:
    """Runs ``workers`` copies of the gateway on one port until SIGTERM or SIGINT.

    Workers are forked, not spawned: this process has imported the gateway and its dependencies
    (aiohttp, pydantic, cryptography, the JOSE and Redis clients) before the first fork, so their code
    and module objects are pages the workers share copy-on-write; the heap they inherit is frozen
    (``gc.freeze()``, as the gc docs advise for fork without exec) so a worker's collector does not
    write to those pages. Each worker still reads the config file itself, so a replacement started
    after an edit serves the file as it is then.
    """

    config_path: Path
    workers: int
    log_level: str | None = None
    running: dict[int, _Worker] = field(default_factory=dict)
    restarts: list[float] = field(default_factory=list)  # when each pending replacement may start
    stopping: bool = False
    quick_failures: int = 0

    def run(self) -> int:
        for sig in _SIGNALS:
            signal.signal(sig, self._forward)
        use_uvloop()  # imported here, not in each worker: its pages are shared too
        gc.collect()
        gc.freeze()
        for _ in range(self.workers):
            self._start_one()
        log.info("supervising %d workers", self.workers)
        while self.running or (self.restarts and not self.stopping):
            time.sleep(POLL_INTERVAL)
            self.reap()
            self.start_due()
        return 0

    def _start_one(self) -> None:
        # Signals stay blocked across the fork: the child must not run this process's forwarding
        # handler (it would signal its siblings) before it has put the default handlers back.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        supervisor = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:
                self._child(old_mask, supervisor)  # never returns
            self.running[pid] = _Worker(pid, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _child(self, mask: set[int | signal.Signals], supervisor: int) -> None:
        code = 1
        try:
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            _drain_when_orphaned(supervisor)
            cfg = load_config(self.config_path)
            serve(cfg, self.config_path, reuse_port=True, log_level=self.log_level)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            # Never return into the supervisor's stack (its loop, its cleanup of the metrics
            # directory): flush what was written and leave with the worker's status.
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def reap(self) -> None:
        """Collect the workers that exited; schedule their replacements unless stopping."""
        now = time.monotonic()
        for pid, worker in list(self.running.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.running[pid]
            _mark_dead(pid)
            if self.stopping:
                continue
            self.quick_failures = self.quick_failures + 1 if now - worker.started < QUICK_EXIT else 0
            delay = backoff(self.quick_failures)
            log.warning(
                "worker %d exited with %s; starting a new one in %.1fs", pid, _exit_code(status), delay
            )
            self.restarts.append(now + delay)

    def start_due(self) -> None:
        now = time.monotonic()
        for due in sorted(self.restarts):
            if due <= now and not self.stopping:
                self.restarts.remove(due)
                self._start_one()


def _exit_code(status: int) -> int:
    """As multiprocessing reported it: the exit status, or minus the signal that ended the worker."""
    return os.waitstatus_to_exitcode(status)


def _mark_dead(pid: int) -> None:
    # A dead worker's live gauges (in-flight requests) must stop counting in the others' /metrics.
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def supervise(
    cfg: GatewayConfig, config_path: Path, *, log_level: str | None = None, metrics_dir: Path | None = None
) -> int:
    """Run ``server.workers`` processes on one port. The workers share their metrics through
    prometheus-client's multiprocess files (only in this mode); ``metrics_dir`` is the directory the
    command line created for them, removed at the end (one given in the environment is left)."""
    configure_logging(log_level or cfg.server.log_level)
    try:
        return Supervisor(config_path, cfg.server.workers, log_level).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _drain_when_orphaned(supervisor: int) -> None:
    """A worker whose supervisor dies (even by SIGKILL) gets SIGTERM and drains, instead of serving on
    unsupervised (prctl(2) PR_SET_PDEATHSIG; Linux only, elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died between the fork and the prctl
        os.kill(os.getpid(), signal.SIGTERM)
