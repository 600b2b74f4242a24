"""The cheap per-request paths of issue 11 keep the documented output: the access line's fast JSON is
byte for byte what python-json-logger wrote, the batching handler keeps every line and their order,
request ids stay 24 random hex digits, and the request metrics keep their names and bounded labels."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway import metrics
from gateway.logs import ACCESS_LOGGER, BatchingHandler, GatewayJsonFormatter, access_record, utc_millis
from gateway.web.context import new_request_id

FIELDS: dict[str, Any] = {
    "request_id": "63c9ca4826276e9a9abcdf3e",
    "method": "GET",
    "path": "/docs/ü",
    "host": "app.example.com",
    "route": "docs",
    "status": 200,
    "duration_ms": 9.792,
    "upstream_ms": None,
    "bytes_in": 0,
    "bytes_out": 342,
    "client": "127.0.0.1",
    "peer": "127.0.0.1",
    "user": None,
    "user_agent": 'curl/8.5.0 "quoted"',
    "auth": "-",
    "decision": "deny",
    "reasons": ["MissingCredentials"],
}


def test_access_line_is_what_python_json_logger_wrote() -> None:
    formatter = GatewayJsonFormatter()
    fast = access_record("GET /docs/ü 200", dict(FIELDS))
    generic = logging.getLogger(ACCESS_LOGGER).makeRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, "%s %s %d", ("GET", "/docs/ü", 200), None, extra=FIELDS
    )
    generic.created = fast.created
    assert formatter.format(fast) == formatter.format(generic)
    line = json.loads(formatter.format(fast))
    assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert line["message"] == "GET /docs/ü 200"


def test_utc_millis_across_seconds() -> None:
    assert utc_millis(1_764_582_656.25) == "2025-12-01T09:50:56.250Z"
    assert utc_millis(1_764_582_656.999) == "2025-12-01T09:50:56.999Z"
    assert utc_millis(1_764_582_657.0) == "2025-12-01T09:50:57.000Z"
    assert utc_millis(1_764_582_656.5) == "2025-12-01T09:50:56.500Z"  # back again: not the cached second


def _access(n: int) -> logging.LogRecord:
    return access_record(f"GET /x/{n} 200", {**FIELDS, "path": f"/x/{n}"})


def _other(text: str) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "tokengate", "levelno": logging.INFO, "levelname": "INFO", "msg": text}
    )


def _handler(stream: io.StringIO, **options: Any) -> BatchingHandler:
    handler = BatchingHandler(stream, batched=lambda r: hasattr(r, "access_fields"), **options)
    handler.setFormatter(GatewayJsonFormatter())
    return handler


def test_access_lines_wait_for_the_writer_and_keep_their_order() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval=3600)  # the writer would wait an hour: nothing else writes them
    try:
        for n in range(3):
            handler.handle(_access(n))
        assert stream.getvalue() == ""  # not formatted nor written by the caller
        handler.handle(_other("reloaded"))  # written at once, after the lines that came before it
        lines = [json.loads(x) for x in stream.getvalue().splitlines()]
        assert [x["message"] for x in lines] == ["GET /x/0 200", "GET /x/1 200", "GET /x/2 200", "reloaded"]
        handler.handle(_access(3))
        handler.flush()  # logging.shutdown at exit
        assert json.loads(stream.getvalue().splitlines()[-1])["path"] == "/x/3"
    finally:
        handler.close()


def test_the_writer_thread_writes_a_batch() -> None:
    written = threading.Event()

    class Stream(io.StringIO):
        def flush(self) -> None:
            written.set()

    stream = Stream()
    handler = _handler(stream, interval=0.001)
    try:
        handler.handle(_access(1))
        handler.handle(_access(2))
        assert written.wait(30)
        assert [json.loads(x)["path"] for x in stream.getvalue().splitlines()] == ["/x/1", "/x/2"]
    finally:
        handler.close()


def test_a_backlog_is_written_by_the_caller_and_close_writes_the_rest() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval=3600, max_backlog=3)
    for n in range(4):
        handler.handle(_access(n))
    assert len(stream.getvalue().splitlines()) == 3  # the third line made the caller write
    handler.close()
    assert len(stream.getvalue().splitlines()) == 4
    handler.handle(_access(9))  # after close: written at once, never lost
    assert len(stream.getvalue().splitlines()) == 5


def test_request_ids_are_24_distinct_hex_digits() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_draws_other_request_ids() -> None:
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads; the child only writes
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 24
    assert child != new_request_id()


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_request_metrics_keep_their_names_and_bounded_labels() -> None:
    before = _count("tokengate_requests_total", route="cost-test", method="GET", code="200")
    metrics.observe_request("cost-test", "GET", 200, 0.01, 0.005)
    metrics.observe_request("cost-test", "GET", 200, 0.02, None)
    assert _count("tokengate_requests_total", route="cost-test", method="GET", code="200") == before + 2
    labels = {"route": "cost-test", "method": "GET", "code": "200"}
    assert _count("tokengate_request_duration_seconds_count", **labels) == 2
    assert _count("tokengate_upstream_duration_seconds_count", route="cost-test") == 1
    cached = len(metrics._request_children)
    for n in range(50):  # methods a client invents are one "other" label, one cache entry
        metrics.observe_request("cost-test", f"INVENTED{n}", 400, 0.001, None)
    assert len(metrics._request_children) == cached + 1
    assert _count("tokengate_requests_total", route="cost-test", method="other", code="400") == 50


def test_several_workers_update_values_without_a_getpid_each(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import os
        from gateway import metrics
        calls = []
        real = os.getpid
        os.getpid = lambda: calls.append(1) or real()
        for _ in range(100):
            metrics.observe_request("r", "GET", 200, 0.01, 0.01)
            metrics.IN_FLIGHT.inc()
            metrics.IN_FLIGHT.dec()
        from prometheus_client import values
        assert values.ValueClass._multiprocess
        print(len(calls))
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
    assert list(tmp_path.glob("*.db"))  # the values did go to the multiprocess files
