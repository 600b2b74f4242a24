"""1 GiB up and 1 GiB down through a real gateway process: memory stays flat (bodies are streamed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.support.process import start_gateway
from tests.support.upstream import Upstream

GIB = 1 << 30
CONFIG = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}"}
routes:
  - name: files
    match: {path_prefix: /}
    upstream: "UPSTREAM"
    auth: {mode: public}
"""


async def test_one_gib_each_way_with_flat_memory(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(CONFIG.replace("UPSTREAM", upstream.url), tmp_path)
    peak = baseline = gw.rss_kib()
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, gw.rss_kib())
            await asyncio.sleep(0.05)

    async def body() -> AsyncIterator[bytes]:
        block = b"u" * (1 << 20)
        for _ in range(GIB // len(block)):
            yield block

    sampler = asyncio.ensure_future(sample())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{gw.url}/count", data=body()) as resp:
                assert (await resp.json()) == {"received": GIB}
            upload_peak = peak
            received = 0
            async with session.get(f"{gw.url}/download?bytes={GIB}&chunked=1") as resp:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    received += len(chunk)
            assert received == GIB
    finally:
        sampling = False
        await sampler
        gw.stop()
    growth_mib = (peak - baseline) / 1024
    print(
        f"\ngateway RSS: baseline {baseline / 1024:.1f} MiB, peak during 1 GiB upload "
        f"{upload_peak / 1024:.1f} MiB, peak overall {peak / 1024:.1f} MiB"
    )
    # Issue 11: a 1 GiB stream grows RSS by less than 10 MiB (measured: ~1 MiB; bench/memory.py).
    assert growth_mib < 10, f"RSS grew by {growth_mib:.0f} MiB while streaming"
