"""The cold-cache participant: 100 concurrent first uses of one opaque token on a freshly started gateway,
and how many introspection calls reached the provider (single flight: 1 per process with its own cache).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from devtools.idp import IdP

CONCURRENT = 100
INTROSPECTION_PATH = "/token/introspection"


async def _burst(url: str, token: str) -> tuple[Counter[int], float]:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=CONCURRENT, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        return Counter(statuses), time.perf_counter() - started


def single_flight_probe(url: str, token: str, idp: IdP, workers: int) -> tuple[dict[str, Any], list[str]]:
    """Figures of one burst, and the problems: any non-200, or more introspection calls than processes
    with a cache of their own (``workers``; the issue's target is exactly 1 for one process)."""
    idp.reset_counters()
    statuses, elapsed = asyncio.run(_burst(url, token))
    calls = idp.counters().get(INTROSPECTION_PATH, 0)
    figures = {
        "concurrent": CONCURRENT,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "introspection_calls": calls,
        "allowed_calls": workers,
        "burst_ms": round(elapsed * 1000, 1),
    }
    problems = []
    if set(statuses) != {200}:
        problems.append(f"the burst got statuses {dict(statuses)}, want 100 x 200")
    if not 1 <= calls <= workers:
        problems.append(f"{calls} introspection calls for {CONCURRENT} first uses, want 1..{workers}")
    return figures, problems
