"""The gateway as a process (issue 5): SIGTERM drains in-flight requests, config reloads swap routes
atomically (SIGHUP and the ConfigMap symlink swap), invalid files are refused, dead workers replaced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import aiohttp

from gateway import __version__
from tests.fixtures.gateway import metric
from tests.support.process import GatewayProcess, start_gateway, wait_until
from tests.support.upstream import Upstream, start_upstream, stop_upstream

CONFIG = """
server:
  listen: "127.0.0.1:{port}"
  admin_listen: "127.0.0.1:{admin_port}"
  shutdown_grace: GRACE
  workers: WORKERS
routes:
  - name: ROUTE
    match: {path_prefix: /}
    upstream: "UPSTREAM"
    auth: {mode: public}
"""


def config(upstream: Upstream, *, route: str = "main", grace: str = "5s", workers: int = 1) -> str:
    return (
        CONFIG.replace("UPSTREAM", upstream.url)
        .replace("ROUTE", route)
        .replace("GRACE", grace)
        .replace("WORKERS", str(workers))
    )


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def test_sigterm_lets_in_flight_requests_finish(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(config(upstream, grace="5s"), tmp_path, wait_ready=True)
    try:
        async with aiohttp.ClientSession() as session:
            slow = asyncio.ensure_future(fetch(session, f"{gw.url}/slow?seconds=1.5"))
            await upstream.slow_in_flight()
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with session.get(f"{gw.admin_url}/readyz") as resp:
                assert resp.status == 503  # out of the load balancer while draining
            assert await slow == (200, "finally")
            code = await asyncio.to_thread(gw.proc.wait, 10)
            assert code == 0
    finally:
        gw.stop(signal.SIGKILL)
    assert "shutting down" in gw.logs()


async def test_sigterm_gives_up_after_the_grace(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(config(upstream, grace="1s"), tmp_path, wait_ready=True)
    try:
        async with aiohttp.ClientSession() as session:
            slow = asyncio.ensure_future(fetch(session, f"{gw.url}/slow?seconds=20"))
            await upstream.slow_in_flight()
            gw.proc.send_signal(signal.SIGTERM)
            # Exits after the 1 s grace: the 10 s wait is shorter than the 20 s request it gave up on.
            code = await asyncio.to_thread(gw.proc.wait, 10)
            assert code == 0
            slow.cancel()
    finally:
        gw.stop(signal.SIGKILL)


async def scrape(gw: GatewayProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{gw.admin_url}/metrics") as resp:
        return await resp.text()


async def test_reload_swaps_routes_without_dropping_requests(upstream: Upstream, tmp_path: Path) -> None:
    other = await start_upstream()
    # Kubernetes mounts a ConfigMap as a symlink chain (gateway.yaml -> ..data/gateway.yaml) and swaps
    # ..data atomically: reproduce that, and point the gateway at the symlink.
    versions = tmp_path / "cm"
    versions.mkdir()
    gw = start_gateway(config(upstream, route="first"), tmp_path, wait_ready=True)
    first_dir = versions / "v1"
    first_dir.mkdir()
    (first_dir / "gateway.yaml").write_text(gw.config.read_text())
    try:
        async with aiohttp.ClientSession() as session:
            slow = asyncio.ensure_future(fetch(session, f"{gw.url}/slow?seconds=2"))
            await upstream.slow_in_flight()
            second_dir = versions / "v2"
            second_dir.mkdir()
            text = (
                gw.config.read_text().replace(upstream.url, other.url).replace("name: first", "name: second")
            )
            (second_dir / "gateway.yaml").write_text(text)
            link = tmp_path / "next.yaml"
            link.symlink_to(second_dir / "gateway.yaml")
            os.replace(link, gw.config)  # the atomic swap a ConfigMap update does

            async def routed_to_other() -> bool:
                await fetch(session, f"{gw.url}/probe")
                return bool(other.seen) and other.last.path == "/probe"

            for _ in range(60):
                if await routed_to_other():
                    break
                await asyncio.sleep(0.1)
            assert other.seen, "the new config never took effect"
            assert await slow == (200, "finally")  # finished on the old runtime
            text_metrics = await scrape(gw)
            assert metric(text_metrics, "tokengate_config_reloads_total", outcome="success") == 1

            # An invalid file is refused: the running routes stay, the failure is counted.
            broken = versions / "v3"
            broken.mkdir()
            (broken / "gateway.yaml").write_text(text.replace("auth: {mode: public}", "auth: {mode: wrong}"))
            link.symlink_to(broken / "gateway.yaml")
            os.replace(link, gw.config)
            assert await asyncio.to_thread(
                wait_until, lambda: "reload (file change) refused" in gw.logs(), 10
            )
            before = len(other.seen)
            assert (await fetch(session, f"{gw.url}/still"))[0] == 200
            assert len(other.seen) == before + 1
            assert metric(await scrape(gw), "tokengate_config_reloads_total", outcome="invalid") == 1
            assert "routes[0].auth.mode" in gw.logs()

            # SIGHUP reloads too (here back to the first upstream).
            gw.config.unlink()
            gw.config.write_text((first_dir / "gateway.yaml").read_text())
            gw.proc.send_signal(signal.SIGHUP)
            assert await asyncio.to_thread(
                wait_until, lambda: gw.logs().count("configuration reloaded") >= 2, 10
            )
            seen = len(upstream.seen)
            assert (await fetch(session, f"{gw.url}/back"))[0] == 200
            assert len(upstream.seen) == seen + 1
    finally:
        assert gw.stop() == 0
        await stop_upstream(other)


def children(pid: int) -> set[int]:
    """The supervisor's worker processes: forked, so every child it has is one."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}").exists():
                found.add(int(child))
    return found


async def test_workers_share_the_port_and_are_replaced(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(
        config(upstream, workers=2),
        tmp_path,
        wait_ready=True,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    try:
        assert await asyncio.to_thread(wait_until, lambda: len(children(gw.proc.pid)) == 2, 15)
        workers = children(gw.proc.pid)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for i in range(20):
                assert (await fetch(session, f"{gw.url}/w{i}"))[0] == 200
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            assert await asyncio.to_thread(
                wait_until,
                lambda: len(children(gw.proc.pid)) == 2 and victim not in children(gw.proc.pid),
                15,
            )
            for _ in range(100):  # the new worker binds its port; requests go on meanwhile
                status, _ = await fetch(session, f"{gw.url}/after")
                assert status == 200
                if len(upstream.seen) >= 40:
                    break
            text = await scrape(gw)
            # served by several processes, counted together (prometheus-client multiprocess mode)
            assert metric(text, "tokengate_requests_total", route="main", code="200") >= 20
            assert metric(text, "tokengate_build_info", version=__version__) == 1
            assert "process_cpu_seconds_total" not in text  # multiprocess mode: no process collector
    finally:
        assert gw.stop() == 0
    assert "starting a new one" in gw.logs()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (in a container nobody may reap an orphan)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def test_workers_drain_when_the_supervisor_is_killed(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(config(upstream, workers=2), tmp_path, wait_ready=True)
    workers: set[int] = set()
    try:
        assert await asyncio.to_thread(wait_until, lambda: len(children(gw.proc.pid)) == 2, 15)
        workers = children(gw.proc.pid)
        os.kill(gw.proc.pid, signal.SIGKILL)  # the supervisor alone (stop() signals the whole group)
        assert await asyncio.to_thread(wait_until, lambda: not any(_alive(w) for w in workers), 30), (
            "workers serve on after their supervisor died"
        )
    finally:
        gw.stop(signal.SIGKILL)
        for worker in workers:  # never leave a server running, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


async def test_the_supervisor_forwards_sighup_and_sigterm_to_every_worker(
    upstream: Upstream, tmp_path: Path
) -> None:
    gw = start_gateway(
        config(upstream, workers=2),
        tmp_path,
        wait_ready=True,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    try:
        assert await asyncio.to_thread(wait_until, lambda: len(children(gw.proc.pid)) == 2, 15)
        workers = children(gw.proc.pid)
        gw.proc.send_signal(signal.SIGHUP)
        # each worker reloads once; the supervisor neither reloads nor exits
        assert await asyncio.to_thread(
            wait_until, lambda: gw.logs().count("configuration reloaded (SIGHUP)") == 2, 15
        )
        assert gw.proc.poll() is None
        assert children(gw.proc.pid) == workers
    finally:
        assert gw.stop() == 0  # SIGTERM: forwarded, both workers drain and exit, then the supervisor
    assert gw.logs().count('"stopped"') == 2
    assert "starting a new one" not in gw.logs()


async def test_crashing_workers_are_restarted_with_backoff(upstream: Upstream, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from devtools.net import free_port

    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))  # no SO_REUSEPORT: every worker's bind fails at start
    blocker.listen()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        config_text := CONFIG.replace("UPSTREAM", upstream.url)
        .replace("ROUTE", "main")
        .replace("GRACE", "1s")
        .replace("WORKERS", "2")
        .replace("{port}", str(port))
        .replace("{admin_port}", str(free_port()))
    )
    assert "workers: 2" in config_text
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting the process under test, once
            [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert await asyncio.to_thread(
            wait_until, lambda: log.read_text().count("starting a new one") >= 6, 100
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
        blocker.close()
    delays = [
        float(line.rsplit(" in ", 1)[1].split("s")[0])
        for line in log.read_text().splitlines()
        if "starting a new one in" in line
    ]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]  # backing off, not a tight loop
