"""Route tables of a given size for the route-lookup micro-benchmark and its correctness test: per
route ``i`` a prefix ``/svc{i}/api``, every tenth one under a host of its own, every fifth one with a
nested ``/svc{i}/api/admin`` that takes only GET."""

from __future__ import annotations

from gateway.routing import RouteSpec, RouteTable

SIZES = (10, 100, 1_000, 10_000)


def specs(size: int) -> list[RouteSpec[str]]:
    out: list[RouteSpec[str]] = []
    for i in range(size):
        host = f"tenant{i}.example.com" if i % 10 == 9 else None
        out.append(RouteSpec(f"svc{i}", f"/svc{i}/api", host=host))
        if i % 5 == 4:
            out.append(RouteSpec(f"svc{i}-admin", f"/svc{i}/api/admin", host=host, methods=("GET",)))
    return out


def table(size: int) -> RouteTable[str]:
    return RouteTable(specs(size))
