"""Workers are forked after the gateway is imported, so they share its pages (issue 11, memory): the
anonymous memory of each worker is largely shared with the supervisor and its siblings (proportional
set size below the resident size), which a worker started as a fresh interpreter would not be."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.process import start_gateway, wait_until
from tests.support.upstream import Upstream

CONFIG = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}", workers: 2}
routes:
  - name: main
    match: {path_prefix: /}
    upstream: "UPSTREAM"
    auth: {mode: public}
"""


def rollup(pid: int) -> dict[str, int]:
    """The KiB figures of /proc/<pid>/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def workers(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_forked_workers_share_the_supervisors_pages(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(CONFIG.replace("UPSTREAM", upstream.url), tmp_path, wait_ready=True)
    try:
        assert await asyncio.to_thread(wait_until, lambda: len(workers(gw.proc.pid)) == 2, 30)
        tree = [gw.proc.pid, *workers(gw.proc.pid)]
        figures = {pid: rollup(pid) for pid in tree}
    finally:
        assert gw.stop() == 0
    for pid in tree[1:]:
        anon, pss_anon = figures[pid]["Anonymous"], figures[pid]["Pss_Anon"]
        # A private page counts whole in Pss_Anon, a page shared by n processes 1/n: a spawned
        # worker's ratio is ~1.0, a forked one's ~0.5 here (3 processes share the imported heap).
        assert pss_anon < 0.8 * anon, f"worker {pid}: {pss_anon} KiB of {anon} KiB anonymous is its own"
    pss = sum(f["Pss"] for f in figures.values())
    rss = sum(f["Rss"] for f in figures.values())
    print(f"\n2 workers: PSS of the tree {pss / 1024:.1f} MiB, sum of RSS {rss / 1024:.1f} MiB")
    assert pss < 0.7 * rss
