"""RouteTable.resolve against the size of the table (issue 11: flat from 10 to 10,000 routes), with
pytest-benchmark: ``make bench-micro``. It reports, it does not assert a time: compare the rows of
one group (the same lookup at each size). Not part of ``make test`` (outside ``testpaths``)."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.micro.routes import SIZES, table


@pytest.mark.parametrize("size", SIZES, ids=[f"{n:05d}-routes" for n in SIZES])
def test_hit_on_the_last_hostless_route(benchmark: BenchmarkFixture, size: int) -> None:
    routes = table(size)
    i = size - 2  # the last route without a host of its own
    path = f"/svc{i}/api/v1/items/42"
    benchmark.group = "hit, hostless route, 4 segments below its prefix"
    benchmark.extra_info["routes"] = size
    found = benchmark(routes.resolve, None, path, "GET")
    assert found.value == f"svc{i}"


@pytest.mark.parametrize("size", SIZES, ids=[f"{n:05d}-routes" for n in SIZES])
def test_hit_on_a_nested_host_route(benchmark: BenchmarkFixture, size: int) -> None:
    routes = table(size)
    i = size - 1  # its own host, and a nested admin prefix
    benchmark.group = "hit, host route, nested prefix"
    benchmark.extra_info["routes"] = size
    found = benchmark(routes.resolve, f"tenant{i}.example.com", f"/svc{i}/api/admin/users", "GET")
    assert found.value == f"svc{i}-admin"
