"""Logging: one JSON object per line on stderr (python-json-logger), a millisecond UTC timestamp, and the
``request_id`` of the request being handled on every line logged while it is (a context variable).
Access lines take a cheap path: a record made without a caller lookup, one ``json.dumps`` of their
fields, and a writer thread that formats and writes them in batches (BatchingHandler).

The log schema is documented in docs/operations.md ("Log lines"); keep the two in step.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol, TextIO

from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "tokengate.access"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RequestInScope(Protocol):
    """What the log filter reads from the request being handled (the web layer's RequestState).
    Read at log time, so an id adopted from a trusted X-Request-Id mid-request is what lines carry."""

    request_id: str


# Set by the error middleware for the duration of one request. asyncio copies the context into every
# task a request starts, so lines from its provider and Redis calls carry its id too.
CURRENT_REQUEST: ContextVar[RequestInScope | None] = ContextVar("tokengate_request", default=None)


# The last second formatted and its text, replaced in one assignment (the writer thread reads it too):
# the lines of one second share the strftime.
_second: tuple[int, str] = (-1, "")


def utc_millis(created: float) -> str:
    """``2026-12-01T09:30:56.123Z``: RFC 3339, UTC, milliseconds (what Loki and Elasticsearch parse)."""
    global _second
    whole = int(created)
    cached, text = _second
    if cached != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int((created - whole) * 1000):03d}Z"


def access_record(message: str, fields: dict[str, Any]) -> logging.LogRecord:
    """An ``info`` record of the access logger carrying ``fields`` (request_id first) as one attribute,
    for ``Logger.handle``: no caller lookup, no per-field attribute copies."""
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, message, None, None)
    record.request_id = fields["request_id"]
    record.access_fields = fields
    return record


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = CURRENT_REQUEST.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current.request_id
        return True


class GatewayJsonFormatter(JsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` first, then ``request_id`` and the record's extra
    fields (the access log's are passed as ``extra=``); an exception's text goes to ``traceback``."""

    def __init__(self) -> None:
        super().__init__(rename_fields={"exc_info": "traceback"}, json_ensure_ascii=False)

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "access_fields", None)
        if fields is None:
            return super().format(record)
        # An access line: the same object python-json-logger would write, from one dict, in one call.
        line = {
            "time": utc_millis(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields,
        }
        return json.dumps(line, ensure_ascii=False)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = utc_millis(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)


class BatchingHandler(logging.Handler):
    """A stream handler that leaves ``batched`` records (the access lines: one per request) to a writer
    thread, which formats them and writes what gathered in ``interval`` seconds in one write: the event
    loop neither formats them nor blocks on the stream, and the syscall is per batch, not per line.

    Every other record is written at once, after the batch waiting before it, so lines keep their
    order and a start-up, reload or error line is on the stream when the call returns. A backlog of
    ``max_backlog`` lines (a stream that does not drain) makes the caller write it itself: the old
    behaviour, bounded memory, no line lost. ``flush()`` (logging.shutdown at exit) writes what waits.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        batched: Callable[[logging.LogRecord], bool],
        interval: float = 0.02,
        max_backlog: int = 10_000,
    ) -> None:
        super().__init__()
        self.stream = stream
        self._batched = batched
        self._interval = interval
        self._max_backlog = max_backlog
        self._waiting: collections.deque[logging.LogRecord] = collections.deque()  # thread-safe ends
        self._write_lock = threading.Lock()  # one writer at a time: lines leave in the order they came
        self._wake = threading.Event()
        self._stopping = threading.Event()  # close(): the writer stops gathering and ends
        self._closed = False
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._batched(record) or self._closed:
            self._write_waiting(record)
            return
        self._waiting.append(record)
        if len(self._waiting) >= self._max_backlog:
            self._write_waiting(None)
        elif not self._wake.is_set():  # the first line of a batch; set once per batch, not per line
            self._ensure_writer()
            self._wake.set()

    def _ensure_writer(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():  # not started yet, or this is a forked child
            self._thread = threading.Thread(target=self._run, name="tokengate-log-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._stopping.wait(self._interval)  # let the batch gather
            self._wake.clear()  # before taking the batch: a line added after this sets it again
            self._write_waiting(None)

    def _write_waiting(self, then: logging.LogRecord | None) -> None:
        """Format and write every waiting record, then ``then``, in one write."""
        with self._write_lock:
            waiting = self._waiting
            lines = []
            for _ in range(len(waiting)):
                record = waiting.popleft()
                try:
                    lines.append(self.format(record) + "\n")
                except Exception:
                    self.handleError(record)
            if then is not None:
                try:
                    lines.append(self.format(then) + "\n")
                except Exception:
                    self.handleError(then)
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(then or logging.makeLogRecord({"msg": "log write failed"}))

    def flush(self) -> None:
        self._write_waiting(None)

    def close(self) -> None:
        self._closed = True
        self._stopping.set()
        self._wake.set()  # the writer wakes, writes what is left and ends
        self.flush()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        super().close()


def configure_logging(level: str = "info") -> None:
    """Route every logger (the gateway's, aiohttp's, redis-py's, OpenTelemetry's) through one JSON
    handler on stderr at ``level`` (``server.log_level``)."""
    handler = BatchingHandler(sys.stderr, batched=_is_access)
    handler.setFormatter(GatewayJsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BatchingHandler):
            old.close()  # its batch written, its thread stopped
    root.handlers[:] = [handler]
    # No line shows the thread or process fields: not reading them saves a getpid() per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    set_level(level)
    # aiohttp's own access log would duplicate ours (and logs the query string).
    logging.getLogger("aiohttp.access").disabled = True


def _is_access(record: logging.LogRecord) -> bool:
    return hasattr(record, "access_fields")


def set_level(level: str) -> None:
    """Apply ``server.log_level`` (also on a reload)."""
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))
