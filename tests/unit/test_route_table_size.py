"""The route table answers correctly at 10,000 routes (the size bench/micro times): every route is
found by its own prefix and host, nested prefixes win, methods of the longest prefix decide, and a
hostless request never reaches a host's routes."""

from __future__ import annotations

import pytest

from bench.micro.routes import table
from gateway.errors import MethodNotAllowed, NotFound

SIZE = 10_000


def test_every_route_of_ten_thousand_is_found() -> None:
    routes = table(SIZE)
    for i in range(SIZE):
        host = f"tenant{i}.example.com" if i % 10 == 9 else None
        assert routes.resolve(host, f"/svc{i}/api/x/y", "POST").value == f"svc{i}"
        if i % 5 == 4:
            assert routes.resolve(host, f"/svc{i}/api/admin/u", "GET").value == f"svc{i}-admin"


def test_misses_at_ten_thousand_routes() -> None:
    routes = table(SIZE)
    with pytest.raises(NotFound):
        routes.resolve(None, "/svc9999/api", "GET")  # that route belongs to its host only
    with pytest.raises(NotFound):
        routes.resolve(None, "/svc10000/api", "GET")
    with pytest.raises(NotFound):
        routes.resolve(None, "/svc1/apix", "GET")  # prefixes match whole segments
    with pytest.raises(MethodNotAllowed):
        routes.resolve(None, "/svc4/api/admin", "POST")  # no fall-through to /svc4/api
