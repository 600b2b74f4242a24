"""Route lookup time against the size of the route table (issue 11: flat from 10 to 10,000 routes):
gateway.routing.RouteTable.match timed in-process with timeit, a hit on the last route and a miss.
"""

from __future__ import annotations

import timeit
from functools import partial

from gateway.routing import RouteSpec, RouteTable

SIZES = (10, 100, 1_000, 10_000)


def lookup_ns(size: int, number: int = 20_000) -> dict[str, float]:
    """Best-of-5 ns per ``match`` for a table of ``size`` routes /svcN/api (plus a catch-all-free miss)."""
    table = RouteTable(RouteSpec(i, f"/svc{i}/api") for i in range(size))
    hit = f"/svc{size - 1}/api/v1/items/42"
    miss = "/nowhere/at/all"
    assert table.match(None, hit, "GET") is not None
    out = {}
    for name, path in (("hit", hit), ("miss", miss)):
        best = min(timeit.repeat(partial(table.match, None, path, "GET"), number=number, repeat=5))
        out[name] = round(best / number * 1e9, 1)
    return out


def route_lookup() -> dict[str, dict[str, float]]:
    return {str(size): lookup_ns(size) for size in SIZES}


if __name__ == "__main__":
    for size, ns in route_lookup().items():
        print(f"{size:>6} routes: hit {ns['hit']:.0f} ns, miss {ns['miss']:.0f} ns")
