"""py-spy profiles under wrk load: the naive aiohttp proxy, tokengate's public route and its bearer-JWT
route (1 worker each), with each sample attributed to a component (access log, metrics, auth, upstream
ClientSession, ...). ``python -m bench.profile`` (``make bench-profile``); raw stacks and the summary go
to bench/results/ (gitignored), the summary is printed as Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import cast

from bench.measure import Options, preflight, warm_up
from bench.procs import cpu_delta, cpu_sample
from bench.scenarios import SCENARIOS, Target
from bench.shared import Shared
from bench.wrk import run_wrk, write_script

RESULTS = Path(__file__).resolve().parent / "results"
PROFILED = ("naive-proxy", "tokengate-public", "tokengate-jwt")
#: (component, pattern on "function (file)"): a sample goes to the first frame, from the leaf up, that
#: matches a pattern; so time in json or a C call lands on the component that called it.
RULES: tuple[tuple[str, str], ...] = (
    ("Prometheus metrics", r"prometheus_client/|\(gateway/metrics\.py"),
    ("access log (format + write)", r"^write_access_log |logging/__init__\.py|\(gateway/logs\.py"),
    ("request id", r"^new_request_id |secrets\.py"),
    ("timers (timeouts, perf_counter)", r"[Tt]imer|[Tt]imeout|asyncio/timeouts\.py"),
    ("header filtering", r"\(gateway/upstream/headers\.py"),
    (
        "auth: token check + cache + policy",
        r"\(gateway/(oidc/|policy\.py|web/credentials\.py)|joserfc/|authlib/",
    ),
    ("routing", r"\(gateway/routing\.py"),
    (
        SESSIONS := "sessions: Redis client + session load/decrypt",
        r"redis/|\(gateway/(sessions/|web/session_auth)",
    ),
    ("upstream ClientSession", r"aiohttp/(client|connector|client_reqrep|client_proto|cookiejar|tracing)"),
    ("tokengate middleware (own code)", r"\(gateway/web/middleware\.py"),
    ("tokengate handler + proxy (own code)", r"\(gateway/web/"),
    ("naive proxy handler (own code)", r"\(bench/naive_proxy\.py"),
    (
        "aiohttp server (parse, dispatch, response)",
        r"aiohttp/(web_|http_|base_protocol|streams|helpers|payload)",
    ),
    ("event loop + socket I/O", r"asyncio/|uvloop|selectors\.py"),
)
OTHER = "other (gc, interpreter, start-up)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^)]*)\)$")


_REDIS = re.compile(r"redis/")
_SESSION_CONTEXT = frozenset({"event loop + socket I/O", "timers (timeouts, perf_counter)"})
_CLIENT_SIDE = re.compile(r"aiohttp/(client|connector)")
_SEND = re.compile(r"^StreamWriter\._write(lines)? \(aiohttp/http_writer\.py")


def classify(stack: list[str]) -> str:
    """The component of one sample (frames root first, as py-spy's raw format writes them). Socket sends
    go through aiohttp's StreamWriter on both sides: split by whether a client frame is on the stack."""
    texts = []
    for frame in stack:
        m = _FRAME.match(frame.strip())
        texts.append(f"{m['func']} ({_short(m['file'])})" if m else frame)
    for text in reversed(texts):
        if _SEND.search(text):
            client = any(_CLIENT_SIDE.search(t) for t in texts)
            return "socket send → upstream" if client else "socket send → client"
        for component, pattern in RULES:
            if re.search(pattern, text):
                # asyncio streams, timeouts and loop work done for the Redis client belong to sessions
                if component in _SESSION_CONTEXT and any(_REDIS.search(t) for t in texts):
                    return SESSIONS
                return component
    return OTHER


def _short(path: str) -> str:
    """site-packages/aiohttp/client.py -> aiohttp/client.py; /repo/gateway/x.py -> gateway/x.py."""
    for marker in ("site-packages/", "/lib/python3", "/gateway/", "/bench/"):
        if marker in path:
            if marker in ("/gateway/", "/bench/"):
                return marker.strip("/") + "/" + path.split(marker, 1)[1]
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return path


def summarise(raw: Path) -> Counter[str]:
    """Samples per component from a py-spy ``--format raw`` file (lines: ``frame;frame;... count``)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        counts[classify(frames)] += int(n)
    return counts


def profile_one(
    key: str, shared: Shared, opts: Options, work: Path, script: Path, rate: int
) -> dict[str, object]:
    scenario = next(s for s in SCENARIOS if s.key == key)
    directory = work / key
    directory.mkdir()
    with contextlib.ExitStack() as stack:
        target: Target = scenario.setup(shared, stack, directory)
        problems = preflight(target) or warm_up(target, opts, script, directory / "wrk.log")
        if problems:
            raise RuntimeError(f"{key}: {problems}")
        pid = target.measured["server"]
        raw = RESULTS / f"profile-{key}.txt"
        spy = subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--duration",
                str(int(opts.duration)),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        before = cpu_sample(pid)
        wrk = run_wrk(
            target.url,
            script=script,
            duration=opts.duration,
            threads=opts.threads,
            connections=opts.connections,
            headers=target.headers,
            log=directory / "wrk.log",
        )
        total, _ = cpu_delta(before, cpu_sample(pid))
        _out, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed on {key}: {err.decode(errors='replace')[-500:]}")
    figures = {"key": key, "rps": wrk.rps, "cpu_us": round(total / max(wrk.requests, 1) * 1e6, 1)}
    raw.with_suffix(".json").write_text(json.dumps(figures) + "\n")
    return {**figures, "counts": summarise(raw)}


def from_results(key: str) -> dict[str, object]:
    """A profile recorded earlier (bench/results/profile-KEY.txt and .json), summarised again."""
    raw = RESULTS / f"profile-{key}.txt"
    return {**json.loads(raw.with_suffix(".json").read_text()), "counts": summarise(raw)}


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy (make bench-profile does)")
    return found


def markdown(profiles: list[dict[str, object]]) -> str:
    components = [c for c, _ in RULES] + ["socket send → upstream", "socket send → client", OTHER]
    head = "| component | " + " | ".join(str(p["key"]) for p in profiles) + " |"
    lines = [
        head,
        "| --- |" + " ---: |" * len(profiles),
        "| CPU µs/req (profiled run) | " + " | ".join(f"{p['cpu_us']:.0f}" for p in profiles) + " |",
    ]
    for comp in components:
        cells = []
        for p in profiles:
            counts: Counter[str] = p["counts"]  # type: ignore[assignment]
            total = sum(counts.values()) or 1
            share = counts.get(comp, 0) / total
            cells.append(
                f"{100 * share:.1f} % ≈ {share * float(cast(float, p['cpu_us'])):.0f} µs"
                if counts.get(comp)
                else "—"
            )
        if any(c != "—" for c in cells):
            lines.append(f"| {comp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds profiled per target (15)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (200)")
    parser.add_argument("--targets", default=",".join(PROFILED), help=f"subset of {PROFILED}")
    parser.add_argument(
        "--summarise-only", action="store_true", help="summarise the raw files already in bench/results/"
    )
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    if args.summarise_only:
        print(markdown([from_results(k) for k in keys]))
        return 0
    opts = Options(
        duration=args.duration,
        warmup=2.0,
        connections=50,
        threads=2,
        repeat=1,
        nginx_workers=1,
        scenarios=[],
        keep=False,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tokengate-profile-"))
    work.chmod(0o755)
    profiles = []
    try:
        with contextlib.ExitStack() as stack:
            shared = Shared(work, 1, stack)
            script = write_script(work)
            for key in keys:
                print(f"profiling {key} ...", flush=True)
                profiles.append(profile_one(key, shared, opts, work, script, args.rate))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = markdown(profiles)
    (RESULTS / "profile.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
