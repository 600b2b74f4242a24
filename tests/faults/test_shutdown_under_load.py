"""SIGTERM to a real ``tokengate run`` process under load: every request the gateway accepted before the
signal gets its real answer, new connections are refused, and the process exits 0 within the grace."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.faults.helpers import until
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.process import start_gateway
from tests.support.traffic import Traffic

GRACE = 10
SLOW = 20  # requests held by the upstream for 1.5 s when the signal comes
CONFIG = f"""
server:
  listen: "127.0.0.1:{{port}}"
  admin_listen: "127.0.0.1:{{admin_port}}"
  shutdown_grace: {GRACE}s
routes:
  - {{name: all, match: {{path_prefix: /}}, upstream: "UPSTREAM", auth: {{mode: public}}}}
"""


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_under_load_drops_no_accepted_request(tmp_path: Path) -> None:
    """Fault: SIGTERM while 20 slow requests are at the upstream and 4 loops send fast ones."""
    upstream = FaultyUpstream()
    await upstream.start()
    gw = start_gateway(CONFIG.replace("UPSTREAM", upstream.url), tmp_path, wait_ready=True)
    try:
        async with aiohttp.ClientSession() as session:

            async def slow(n: int) -> tuple[int, str]:
                async with session.get(f"{gw.url}/slow-head?s=1.5&n={n}") as resp:
                    return resp.status, await resp.text()

            held = [asyncio.ensure_future(slow(n)) for n in range(SLOW)]
            async with Traffic(
                lambda n: ("ok", "GET", f"{gw.url}/ok?{n}", {}), workers=4, pause=0.005
            ) as fast:
                await fast.until(lambda: fast.statuses()[200] >= 20, "fast requests served")
                assert await until(lambda: upstream.hits["/slow-head"] == SLOW)  # all accepted and relayed
                fast.phase = "draining"
                gw.proc.send_signal(signal.SIGTERM)
                refused = False
                for _ in range(200):  # the listener closes at once; the slow requests are still running
                    if await _refused(gw.port):
                        refused = True
                        break
                    await asyncio.sleep(0.02)
                assert refused, "the listener still accepts connections after SIGTERM"
                assert not all(task.done() for task in held)  # refused while requests were in flight
                results = await asyncio.gather(*held)
            code = await asyncio.to_thread(gw.proc.wait, GRACE + 10)
    finally:
        gw.stop(signal.SIGKILL)
        await upstream.close()
    assert results == [(200, "late")] * SLOW  # each accepted slow request got its real answer
    assert code == 0
    # Every fast request that reached the upstream was answered to its client (none dropped in the
    # drain); the others failed to connect or found their idle connection closed: never a 5xx.
    assert upstream.hits["/ok"] == fast.statuses()[200]
    assert set(fast.statuses()) <= {200, None}, fast.summary()
    errors = {o.error for o in fast.outcomes if o.status is None}
    assert errors <= {"ClientConnectorError", "ServerDisconnectedError", "ClientOSError"}, errors
    assert not [o for o in fast.of("before") if o.status is None]
    assert "shutting down" in gw.logs()
