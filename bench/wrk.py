"""Driving Debian's ``wrk`` and reading its results.

The Lua script only sets headers (``BENCH_HEADERS``: "Name: value" lines) and defines ``done``: it has
no ``request``/``response`` function, so wrk keeps its fast path (one pre-built request, no Lua per
request). ``done`` prints one JSON line with the exact counters and latency percentiles (µs); the
human-readable report is kept for the log and cross-checked (its "Non-2xx or 3xx responses" line).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA_SCRIPT = r"""
local lines = os.getenv("BENCH_HEADERS") or ""
for line in string.gmatch(lines, "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name ~= nil then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,' ..
    '"p50_us":%.1f,"p75_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"mean_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""

_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk, or `make bench`)")
    return found


@dataclass
class WrkResult:
    url: str
    threads: int
    connections: int
    duration_s: float
    requests: int
    elapsed_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    bytes: int
    non_2xx: int  # wrk counts statuses >= 400 here (its "Non-2xx or 3xx responses" line)
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # wrk's own user+system CPU time
    report: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_script(directory: Path) -> Path:
    path = directory / "bench.lua"
    path.write_text(LUA_SCRIPT)
    return path


def run_wrk(
    url: str,
    *,
    script: Path,
    duration: float,
    threads: int,
    connections: int,
    headers: dict[str, str],
    log: Path,
) -> WrkResult:
    """One bounded wrk run (``-d``, plus a hard subprocess timeout); raises RuntimeError on failure."""
    seconds = max(1, round(duration))
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    env = {**os.environ, "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    started = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish within {seconds + 30}s") from exc
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    report = "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith("BENCH_JSON "))
    found = _NON2XX.search(report)
    non_2xx = max(int(data["status"]), int(found.group(1)) if found else 0)
    duration_s = data["duration_us"] / 1e6 or elapsed
    return WrkResult(
        url=url,
        threads=threads,
        connections=connections,
        duration_s=round(duration_s, 3),
        requests=int(data["requests"]),
        elapsed_s=round(elapsed, 3),
        rps=round(data["requests"] / duration_s, 1),
        p50_ms=data["p50_us"] / 1000,
        p75_ms=data["p75_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        bytes=int(data["bytes"]),
        non_2xx=non_2xx,
        socket_errors={k: int(data[k]) for k in ("connect", "read", "write", "timeout")},
        cpu_s=round(cpu_s, 2),
        report=report,
    )
