"""One serving process (the ``Gateway``): the public and admin listeners around one swappable runtime,
signals (SIGTERM/SIGINT drain, SIGHUP reload) and config file watching."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import metrics
from gateway.app import create_admin_app, create_app, swap_runtime
from gateway.config import load_config
from gateway.config.schema import GatewayConfig, ServerConfig, split_listen
from gateway.config.tls import load_server_cert, server_context
from gateway.errors import ConfigError
from gateway.logs import configure_logging, set_level
from gateway.runtime import Runtime
from gateway.server.listener import GatewayRunner, ListenerLimits
from gateway.web.state import RUNTIME

log = logging.getLogger("tokengate")

WATCH_INTERVAL = 1.0
START_WAIT = 30.0  # seconds a worker of several waits for its providers before it takes connections
_RESTART_ONLY = ("listen", "admin_listen", "workers", "shutdown_grace", "tracing")
# The listen queue of the public port: a burst of new connections (a load balancer's pool warming up,
# clients reconnecting after a deploy) waits in the kernel instead of being refused.
BACKLOG = 1024


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

    def __init__(
        self,
        cfg: GatewayConfig,
        config_path: Path | None,
        *,
        reuse_port: bool = False,
        log_level: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.log_level = log_level  # --log-level: wins over server.log_level, also after reloads
        self.config_path = config_path
        self.reuse_port = reuse_port
        self.app = create_app(cfg)
        self.admin = create_admin_app(self.app)
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.limits = ListenerLimits.of(cfg.server)
        self.tls = server_context(cfg.server.tls) if cfg.server.tls is not None else None

    async def run(self) -> None:
        grace = self.cfg.server.shutdown_grace.total_seconds()
        runner, admin_runner = await self._start(grace)
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
        if self.config_path is not None:
            self._spawn(self._watch(self.config_path))
        await self._stop.wait()
        log.info("shutting down: draining in-flight requests for up to %.0fs", grace)
        self.app[RUNTIME].begin_shutdown()
        for task in self._background:
            task.cancel()
        await runner.cleanup()  # stops accepting, waits for in-flight handlers up to the grace
        await admin_runner.cleanup()
        log.info("stopped")

    async def _start(self, grace: float) -> tuple[web.AppRunner, web.AppRunner]:
        """Both listeners up; with several workers the public one only once the providers are loaded."""
        server = self.cfg.server
        # Server settings for a proxy: our access log replaces aiohttp's (access_log=None, which also
        # skips its per-request formatting); a client that goes away cancels its handler, so the
        # upstream request is abandoned too (handler_cancellation); keep-alive, head and body limits
        # come from ListenerLimits (DESIGN §8).
        runner = GatewayRunner(
            self.app, self.limits, handler_cancellation=True, access_log=None, shutdown_timeout=grace
        )
        admin_runner = web.AppRunner(self.admin, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await admin_runner.setup()
        host, port = split_listen(server.listen)
        ahost, aport = split_listen(server.admin_listen)
        await web.TCPSite(admin_runner, ahost, aport, reuse_port=self.reuse_port).start()
        if self.reuse_port:
            await self._providers_loaded()
        await web.TCPSite(
            runner, host, port, reuse_port=self.reuse_port, backlog=BACKLOG, ssl_context=self.tls
        ).start()
        log.info(
            "tokengate listening on %s (admin %s), pid %d", server.listen, server.admin_listen, os.getpid()
        )
        return runner, admin_runner

    async def _providers_loaded(self) -> None:
        """With several workers on one port the kernel hands each connection to any of them, and a
        sibling's /readyz cannot vouch for this one: a worker joins the public port only once the
        metadata of the providers its routes use is loaded, or after START_WAIT (then requests that
        need a provider still get 503 until it loads, as with one worker)."""
        providers = list(self.app[RUNTIME].current.providers.values())
        loaded = await asyncio.gather(*(p.wait_ready(START_WAIT) for p in providers))
        if not all(loaded):
            late = [p.name for p, ok in zip(providers, loaded, strict=True) if not ok]
            log.warning("joining the public port with provider metadata still loading: %s", ", ".join(late))

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
            self._reload_listener(new.server)
            self.cfg = new
            set_level(self.log_level or new.server.log_level)
            metrics.CONFIG_RELOADS.labels("success").inc()
            log.info("configuration reloaded (%s): %d routes", why, len(new.routes))
            self._spawn(
                _close_later(old, self.app[RUNTIME].current, new.server.shutdown_grace.total_seconds())
            )
            return True

    def _reload_listener(self, new: ServerConfig) -> None:
        """Timeouts apply at once; a renewed certificate is presented from the next handshake on."""
        fresh = ListenerLimits.of(new)
        limits = self.limits
        limits.keepalive, limits.header, limits.body = fresh.keepalive, fresh.header, fresh.body
        if (new.tls is None) != (self.tls is None):
            log.warning("server.tls added or removed: takes effect only after a restart")
        elif new.tls is not None and self.tls is not None:
            try:
                load_server_cert(self.tls, new.tls)  # check-config parsed them; they may change again
            except (OSError, ValueError) as exc:
                log.error("server.tls: keeping the certificate in use, the new one does not load: %s", exc)


async def _close_later(runtime: Runtime, successor: Runtime, delay: float) -> None:
    # Requests that started on the old runtime keep using it; give them the grace to finish. What the
    # successor took over (unchanged providers, the session store) stays open.
    await asyncio.sleep(delay)
    try:
        await runtime.close(successor)
    except Exception:
        # The old runtime is out of service either way; what did not close cleanly (a provider
        # client, a Redis pool) is logged, not raised into a task nobody awaits.
        log.warning("closing the replaced runtime failed", exc_info=True)


def serve(
    cfg: GatewayConfig, config_path: Path | None, *, reuse_port: bool = False, log_level: str | None = None
) -> None:
    """Run one serving process until SIGTERM or SIGINT."""
    configure_logging(log_level or cfg.server.log_level)
    use_uvloop()
    asyncio.run(Gateway(cfg, config_path, reuse_port=reuse_port, log_level=log_level).run())
