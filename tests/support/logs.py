"""Log lines as the gateway writes them: records formatted by its JSON formatter, or every line of a
real handler (the one ``configure_logging`` installs) captured in memory."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway.logs import ACCESS_LOGGER, GatewayJsonFormatter, RequestIdFilter

_FORMATTER = GatewayJsonFormatter()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access-log lines among the captured records, as the JSON objects the gateway writes."""
    return [json.loads(_FORMATTER.format(r)) for r in caplog.records if r.name == ACCESS_LOGGER]


class LogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@contextmanager
def json_logs(level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Every line logged meanwhile, through the gateway's own handler set-up (formatter and filter)."""
    capture = LogCapture()
    handler = logging.StreamHandler(capture.stream)
    handler.setFormatter(GatewayJsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
