"""``python -m bench.memory``: the memory figures of issue 11 item 5, measured on a real process tree.

- idle PSS of the whole tree (supervisor and workers) with ``server.workers: 2``, beside the sum of
  the processes' RSS (what the tree would cost if the workers shared no pages), from
  /proc/<pid>/smaps_rollup;
- RSS growth of the worker while a 1 GiB body is streamed up through a one-worker gateway to a
  loopback upstream that counts it (the body must never be held whole).

Loopback only; every process it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.procs import descendants

MIB = 1 << 20
CONFIG = """\
server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}", workers: {workers}}}
routes:
  - name: files
    match: {{path_prefix: /}}
    upstream: "{upstream}"
    auth: {{mode: public}}
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rollup(pid: int) -> dict[str, int]:
    """The KiB figures of /proc/<pid>/smaps_rollup (Rss, Pss, Shared_Clean ...)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


def tree_memory(root: int) -> dict[str, float]:
    """PSS of the tree, the sum of its RSS, and the process count (MiB, MiB, n)."""
    pids = descendants(root)
    rollups = [_rollup(pid) for pid in pids]
    return {
        "pss_mib": sum(r.get("Pss", 0) for r in rollups) / 1024,
        "rss_sum_mib": sum(r.get("Rss", 0) for r in rollups) / 1024,
        "processes": float(len([r for r in rollups if r])),
    }


async def _upstream() -> tuple[web.AppRunner, str]:
    async def count(request: web.Request) -> web.Response:
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
        return web.json_response({"received": received})

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


class _Gateway:
    def __init__(self, directory: Path, upstream: str, workers: int) -> None:
        self.port, self.admin = _free_port(), _free_port()
        config = directory / f"gateway-{workers}.yaml"
        config.write_text(CONFIG.format(port=self.port, admin=self.admin, workers=workers, upstream=upstream))
        self.log = directory / f"gateway-{workers}.log"
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory / f"metrics-{workers}")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.workers = workers

    async def ready(self) -> None:
        deadline = time.monotonic() + 60.0
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited:\n{self.log.read_text(errors='replace')}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"http://127.0.0.1:{self.port}/") as resp:
                        # A supervisor has `workers` children; one worker is the process itself.
                        wanted = 1 if self.workers == 1 else self.workers + 1
                        if resp.status == 200 and len(descendants(self.proc.pid)) >= wanted:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway not ready:\n{self.log.read_text(errors='replace')}")

    def worker_pid(self) -> int:
        return self.proc.pid if self.workers == 1 else descendants(self.proc.pid)[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_tree(directory: Path, upstream: str, settle: float) -> dict[str, float]:
    gw = _Gateway(directory, upstream, workers=2)
    try:
        await gw.ready()
        await asyncio.sleep(settle)  # start-up garbage collected, lazily loaded modules in
        return tree_memory(gw.proc.pid)
    finally:
        gw.stop()


async def upload_growth(directory: Path, upstream: str, size: int) -> dict[str, float]:
    gw = _Gateway(directory, upstream, workers=1)
    try:
        await gw.ready()
        pid = gw.worker_pid()
        baseline = peak = _rss_kib(pid)

        async def body() -> AsyncIterator[bytes]:
            nonlocal peak
            block = b"u" * MIB
            for i in range(size // MIB):
                if i % 16 == 0:
                    peak = max(peak, _rss_kib(pid))
                yield block

        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{gw.port}/count", data=body()) as resp,
        ):
            answer = await resp.json()
        if answer != {"received": size}:
            raise RuntimeError(f"the upstream received {answer}, not {size} bytes")
        peak = max(peak, _rss_kib(pid))
        return {"baseline_mib": baseline / 1024, "growth_mib": (peak - baseline) / 1024}
    finally:
        gw.stop()


async def main_async(args: argparse.Namespace) -> None:
    runner, upstream = await _upstream()
    try:
        with tempfile.TemporaryDirectory(prefix="tokengate-memory-") as tmp:
            idle = await idle_tree(Path(tmp), upstream, args.settle)
            print(
                f"idle, 2 workers: PSS of the tree {idle['pss_mib']:.1f} MiB "
                f"({idle['processes']:.0f} processes; sum of RSS {idle['rss_sum_mib']:.1f} MiB)"
            )
            up = await upload_growth(Path(tmp), upstream, args.upload_mib * MIB)
            print(
                f"{args.upload_mib} MiB streamed upload, 1 worker: RSS {up['baseline_mib']:.1f} MiB "
                f"at rest, grew by {up['growth_mib']:.1f} MiB"
            )
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--upload-mib", type=int, default=1024, help="size of the streamed upload")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before PSS is read")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
