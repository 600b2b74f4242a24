"""Process lifecycle: listeners, signals (SIGTERM/SIGINT drain, SIGHUP reload), config file watching
and the worker supervisor for ``server.workers > 1`` (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import metrics
from gateway.app import create_admin_app, create_app, swap_runtime
from gateway.config import load_config
from gateway.config.schema import GatewayConfig, split_listen
from gateway.errors import ConfigError
from gateway.logs import configure_logging
from gateway.web.protocol import GatewayRunner
from gateway.web.runtime import Runtime
from gateway.web.state import RUNTIME

log = logging.getLogger("tokengate")

WATCH_INTERVAL = 1.0
_RESTART_ONLY = ("listen", "admin_listen", "workers", "header_timeout", "shutdown_grace")


def tune_gc() -> None:
    """Start-up objects (modules, config, route tables) move to a permanent generation the collector
    never scans again, and young collections run less often: a proxied request allocates many
    short-lived objects, so with the default threshold (700) the collector ran on most requests."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _fingerprint(path: Path) -> tuple[float, int, int] | None:
    """mtime, inode and size of what the path resolves to: a ConfigMap's symlink swap changes them."""
    try:
        st = path.resolve().stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_ino, st.st_size)


class Gateway:
    """One serving process: the public and admin listeners around one swappable runtime."""

    def __init__(self, cfg: GatewayConfig, config_path: Path | None, *, reuse_port: bool = False) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.reuse_port = reuse_port
        self.app = create_app(cfg)
        self.admin = create_admin_app(self.app)
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        server = self.cfg.server
        grace = server.shutdown_grace.total_seconds()
        runner = GatewayRunner(  # answers unparsable request heads as JSON (gateway/web/protocol.py)
            self.app,
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=server.header_timeout.total_seconds(),
            shutdown_timeout=grace,
        )
        admin_runner = web.AppRunner(self.admin, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await admin_runner.setup()
        host, port = split_listen(server.listen)
        ahost, aport = split_listen(server.admin_listen)
        await web.TCPSite(runner, host, port, reuse_port=self.reuse_port, backlog=1024).start()
        await web.TCPSite(admin_runner, ahost, aport, reuse_port=self.reuse_port).start()
        log.info(
            "tokengate listening on %s (admin %s), pid %d", server.listen, server.admin_listen, os.getpid()
        )
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
        if self.config_path is not None:
            self._spawn(self._watch(self.config_path))
        await self._stop.wait()
        log.info("shutting down: draining in-flight requests for up to %.0fs", grace)
        self.app[RUNTIME].ready = False
        for task in self._background:
            task.cancel()
        await runner.cleanup()  # stops accepting, waits for in-flight handlers up to the grace
        await admin_runner.cleanup()
        log.info("stopped")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch(self, path: Path) -> None:
        seen = _fingerprint(path)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = _fingerprint(path)
            if now is not None and now != seen:
                seen = now
                await self.reload("file change")

    async def reload(self, why: str) -> bool:
        """Load, validate and swap; an invalid file keeps the runtime in force."""
        if self.config_path is None:
            return False
        async with self._reloading:
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                metrics.CONFIG_RELOADS.labels("invalid").inc()
                log.error("reload (%s) refused, keeping the running config:\n%s", why, exc)
                return False
            for key in _RESTART_ONLY:
                if getattr(new.server, key) != getattr(self.cfg.server, key):
                    log.warning("server.%s changed: takes effect only after a restart", key)
            try:
                old = await swap_runtime(self.app, new)
            except Exception:
                metrics.CONFIG_RELOADS.labels("failed").inc()
                log.exception("reload (%s) failed, keeping the running config", why)
                return False
            self.cfg = new
            metrics.CONFIG_RELOADS.labels("success").inc()
            log.info("configuration reloaded (%s): %d routes", why, len(new.routes))
            self._spawn(
                _close_later(old, self.app[RUNTIME].current, new.server.shutdown_grace.total_seconds())
            )
            return True


async def _close_later(runtime: Runtime, successor: Runtime, delay: float) -> None:
    # Requests that started on the old runtime keep using it; give them the grace to finish. What the
    # successor took over (unchanged providers, the session store) stays open.
    await asyncio.sleep(delay)
    with contextlib.suppress(Exception):
        await runtime.close(successor)


def serve(cfg: GatewayConfig, config_path: Path | None, *, reuse_port: bool = False) -> None:
    configure_logging()
    use_uvloop()
    asyncio.run(Gateway(cfg, config_path, reuse_port=reuse_port).run())


def _worker(config_path: str) -> None:
    cfg = load_config(config_path)
    serve(cfg, Path(config_path), reuse_port=True)


def supervise(cfg: GatewayConfig, config_path: Path) -> int:
    """Run ``server.workers`` processes on one port; restart any that dies; forward signals."""
    configure_logging()
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    multiproc_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", f"/tmp/tokengate-metrics-{os.getpid()}")  # noqa: S108
    Path(multiproc_dir).mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    workers: dict[int, multiprocessing.process.BaseProcess] = {}
    started_at: dict[int, float] = {}
    restarts: list[float] = []  # when each pending replacement may start
    quick_failures = 0

    def start_one() -> None:
        proc = ctx.Process(target=_worker, args=(str(config_path),), daemon=False)
        proc.start()
        assert proc.pid is not None
        workers[proc.pid] = proc
        started_at[proc.pid] = time.monotonic()

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for proc in workers.values():
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for _ in range(cfg.server.workers):
        start_one()
    log.info("supervising %d workers", cfg.server.workers)
    while workers or (restarts and not stopping):
        time.sleep(0.2)
        now = time.monotonic()
        for pid, proc in list(workers.items()):
            if proc.is_alive():
                continue
            del workers[pid]
            lived = now - started_at.pop(pid, now)
            with contextlib.suppress(Exception):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
            if not stopping:
                # A worker that dies right after start (a bad host, a port taken) would otherwise be
                # restarted five times a second: back off, 0.5 s doubling to 30 s, reset by a healthy run.
                quick_failures = quick_failures + 1 if lived < 10 else 0
                delay = min(30.0, 0.5 * 2 ** (quick_failures - 1)) if quick_failures else 0.0
                log.warning(
                    "worker %d exited with %s; starting a new one in %.1fs", pid, proc.exitcode, delay
                )
                restarts.append(now + delay)
        for due in sorted(restarts):
            if due <= now and not stopping:
                restarts.remove(due)
                start_one()
    if own_dir:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    return 0
