"""CPU per request of what the middleware does once a request is answered (request metrics and the
access line, formatted and written to a file by the real logging set-up) and of a request id:
``python -m bench.micro.request_cost``. process_time, so the log writer thread's CPU counts too."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.logs import configure_logging
from gateway.web.context import RequestState, new_request_id
from gateway.web.middleware import record_request


class _Transport:
    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


def _cpu_us(fn: Callable[[], None], number: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, (time.process_time() - started) / number * 1e6)
    return round(best, 2)


def main(number: int = 20_000) -> None:
    out = sys.stderr
    with tempfile.NamedTemporaryFile("w", prefix="tokengate-access-", suffix=".log") as sink:
        sys.stderr = sink  # configure_logging's handler writes here, as the gateway's to its stderr file
        try:
            configure_logging("info")
            request = make_mocked_request(
                "GET",
                "/bench/x?q=1",
                headers={"Host": "127.0.0.1:8080", "User-Agent": "wrk/4.2"},
                app=web.Application(),
                transport=_Transport(),
            )

            def records() -> None:
                for _ in range(number):
                    state = RequestState(request_id="63c9ca4826276e9a9abcdf3e", started=time.perf_counter())
                    state.route, state.status, state.path = "bench", 200, "/bench/x"
                    state.mode = state.auth = "bearer"
                    state.user, state.decision = "alice", "allow"
                    state.stats.upstream_seconds, state.stats.bytes_out = 0.001, 2048
                    record_request(request, state)
                logging.getLogger().handlers[0].flush()  # the batch the writer has not written yet

            def ids() -> None:
                for _ in range(number):
                    new_request_id()

            results = {"record_request": _cpu_us(records, number), "new_request_id": _cpu_us(ids, number)}
        finally:
            logging.getLogger().handlers[0].close()
            sys.stderr = out
    for name, us in results.items():
        print(f"{name}: {us} µs CPU per request")


if __name__ == "__main__":
    main()
