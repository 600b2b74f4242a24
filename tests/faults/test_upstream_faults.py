"""Upstreams failing under traffic: too slow to answer (504 at ``upstream_timeout``), hanging or reset
after the answer started (the client sees an aborted answer, never a complete-looking one), huge
response headers and early closes (502), refusing connections (502), while the normal requests beside
them keep their 200 and the gateway serves on afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.faults.helpers import in_flight, serve
from tests.faults.helpers import until as _until
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.traffic import Traffic
from tests.support.upstream import start_upstream, stop_upstream

TIMEOUT = "500ms"  # upstream_timeout
PAYLOAD_ERRORS = {"ClientPayloadError", "ContentLengthError", "TransferEncodingError"}


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    up = FaultyUpstream()
    await up.start()
    try:
        yield up
    finally:
        await up.close()


def config(upstream_url: str) -> dict[str, Any]:
    return {
        # upstream_idle_timeout: a streamed body that stalls is cut too (by default it may stay silent).
        "server": {"listen": "127.0.0.1:8080", "upstream_timeout": TIMEOUT, "upstream_idle_timeout": TIMEOUT},
        "routes": [
            {
                "name": "all",
                "match": {"path_prefix": "/"},
                "upstream": upstream_url,
                "auth": {"mode": "public"},
            }
        ],
    }


async def _mixed(client: Any, fault_path: str, *, faults: int = 6) -> Traffic:
    """A loop where every third request hits ``fault_path`` and the others ``/ok``, until ``faults``
    faulty answers are in; then the loop checks the gateway still serves."""
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        if n % 3 == 0 and traffic.phase == "before":
            return "fault", "GET", base + fault_path, {}
        return "ok", "GET", f"{base}/ok?{n}", {}

    async with Traffic(request, workers=3) as traffic:
        await traffic.until(
            lambda: sum(o.key == "fault" for o in traffic.outcomes) >= faults, "faults answered"
        )
        traffic.phase = "after"
        await traffic.until(lambda: traffic.statuses("after")[200] >= 6, "normal requests after the faults")
    assert {o.status for o in traffic.outcomes if o.key == "ok"} == {200}, traffic.summary()
    return traffic


def _faults(traffic: Traffic) -> set[str | int | None]:
    return {o.status if o.status is not None else o.error for o in traffic.outcomes if o.key == "fault"}


async def test_slow_upstream_is_504(aiohttp_client: Any, faulty: FaultyUpstream) -> None:
    """Fault: the upstream sends nothing for longer than upstream_timeout."""
    client = await serve(aiohttp_client, config(faulty.url))
    traffic = await _mixed(client, "/slow-head?s=5")
    assert _faults(traffic) == {504}
    assert all('"gateway_timeout"' in o.body for o in traffic.outcomes if o.key == "fault")
    assert await _until(lambda: faulty.open == 0)  # the gateway hung up on the slow upstream
    assert faulty.hits["/slow-head"] >= 6


@pytest.mark.parametrize("size", [200_000, 1_000], ids=["streamed", "small"])
async def test_upstream_hanging_after_headers(size: int, aiohttp_client: Any, faulty: FaultyUpstream) -> None:
    """Fault: the upstream sends its headers and a tenth of the body, then nothing."""
    client = await serve(aiohttp_client, config(faulty.url))
    traffic = await _mixed(client, f"/hang-after-head?n={size}")
    # Streamed: the status line went out already, so the connection is cut (a truncated body, never a
    # complete-looking one). Small bodies are read whole before answering: nothing went out yet.
    seen = _faults(traffic)
    if size > 65536:
        assert seen, traffic.summary()
        assert seen <= PAYLOAD_ERRORS, seen
    else:
        assert seen == {504}
    assert await _until(lambda: faulty.open == 0)  # every upstream connection it gave up on is closed
    assert in_flight() == 0


@pytest.mark.parametrize(
    "path",
    ["/reset-mid-body?n=200000", "/reset-mid-chunked", "/reset-mid-body?n=1000"],
    ids=["length", "chunked", "small"],
)
async def test_upstream_reset_mid_body(path: str, aiohttp_client: Any, faulty: FaultyUpstream) -> None:
    """Fault: the upstream resets the connection in the middle of its answer's body."""
    client = await serve(aiohttp_client, config(faulty.url))
    traffic = await _mixed(client, path)
    seen = _faults(traffic)
    if path.endswith("n=1000"):
        assert seen == {502}
    else:
        assert seen, traffic.summary()
        assert seen <= PAYLOAD_ERRORS, seen


async def test_huge_response_headers_are_502(aiohttp_client: Any, faulty: FaultyUpstream) -> None:
    """Fault: the upstream answers with a 100 kB header line."""
    client = await serve(aiohttp_client, config(faulty.url))
    traffic = await _mixed(client, "/huge-headers?n=100000")
    assert _faults(traffic) == {502}
    assert not [o for o in traffic.outcomes if "h" * 100 in o.body]


async def test_upstream_closing_before_answering_is_502(aiohttp_client: Any, faulty: FaultyUpstream) -> None:
    """Fault: the upstream reads the request and closes without a byte."""
    client = await serve(aiohttp_client, config(faulty.url))
    assert _faults(await _mixed(client, "/close-before-head")) == {502}


async def test_upstream_refusing_then_back(aiohttp_client: Any) -> None:
    """Fault: the upstream process gone (connections refused) under traffic, then started again."""
    upstream = await start_upstream()
    client = await serve(aiohttp_client, config(upstream.url))
    base = f"http://127.0.0.1:{client.port}"
    try:
        async with Traffic(lambda n: ("up", "GET", f"{base}/p{n}", {}), workers=4) as traffic:
            await traffic.until(lambda: traffic.statuses("before")[200] >= 8, "served")
            traffic.phase = "outage"
            await stop_upstream(upstream)
            await traffic.until(lambda: traffic.statuses("outage")[502] >= 8, "502 while refused")
            traffic.phase = "after"
            upstream = await start_upstream(upstream.port)
            await traffic.until(lambda: traffic.statuses("after")[200] >= 8, "served again")
    finally:
        await stop_upstream(upstream)
    traffic.assert_only({200, 502})
    assert {o.status for o in traffic.of("outage") if o.within} == {502}
    assert all('"bad_gateway"' in o.body for o in traffic.outcomes if o.status == 502)
