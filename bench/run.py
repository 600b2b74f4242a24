"""Load benchmark, side by side in one run on loopback, driven by wrk: nginx direct and pass-through, a
naive aiohttp proxy, Apache + mod_auth_openidc / mod_oauth2, and tokengate (1 and 2 workers) on public,
bearer JWT, introspection, session and cold-cache routes. ``python -m bench.run --help``; bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench.measure import Aborted, Options, ScenarioResult, combine, run_scenario
from bench.report import markdown_report, ratios
from bench.scenarios import SCENARIOS
from bench.shared import BODY_SIZE, Shared
from bench.wrk import write_script, wrk_binary

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: Per scenario, on top of warm-up and measurement: servers starting, preflight, stopping.
SETUP_ALLOWANCE = 45.0


# ---- the whole run ---------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    with contextlib.suppress(Exception):
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=False
        )
        return done.stdout.strip()
    return ""


def _versions() -> dict[str, str]:
    import aiohttp

    wrk_v = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, timeout=5, check=False)
    from bench.nginx import nginx_binary

    ngx = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=5, check=False)
    apache = ""
    with contextlib.suppress(Exception):
        from bench.apache import apache_binary

        done = subprocess.run([apache_binary(), "-v"], capture_output=True, text=True, timeout=5, check=False)
        apache = done.stdout.splitlines()[0].split(":", 1)[-1].strip()
    return {
        "apache": apache,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "wrk": (wrk_v.stdout or wrk_v.stderr).splitlines()[0] if (wrk_v.stdout or wrk_v.stderr) else "?",
        "nginx": ngx.stderr.strip(),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
    }


def parse_args(argv: list[str] | None) -> Options:
    keys = [s.key for s in SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per scenario (8)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured wrk load first (1)")
    parser.add_argument("--connections", "-c", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--threads", "-t", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="rounds over all scenarios (A B C ... A B C); each figure is the median over rounds (3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s per scenario, 1 s warm-up"
    )
    parser.add_argument(
        "--nginx-workers",
        type=int,
        default=1,
        help="worker_processes of both nginx instances (1: one process, like tokengate)",
    )
    parser.add_argument("--scenarios", default=",".join(keys), help=f"comma-separated subset of {keys}")
    parser.add_argument("--no-workers", action="store_true", help="skip the server.workers: 2 scenarios")
    parser.add_argument("--no-apache", action="store_true", help="skip the Apache peers")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    args = parser.parse_args(argv)
    wanted = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = sorted(set(wanted) - set(keys))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {keys}")
    if args.no_workers:
        wanted = [k for k in wanted if not k.endswith("-2w")]
    if args.no_apache:
        wanted = [k for k in wanted if not k.startswith("apache-")]
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else 1.0
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if duration < 1 or repeat < 1 or args.connections < args.threads:
        parser.error("need --duration >= 1, --repeat >= 1 and --connections >= --threads")
    return Options(
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        threads=args.threads,
        repeat=repeat,
        nginx_workers=args.nginx_workers,
        scenarios=[s for s in SCENARIOS if s.key in wanted],
        keep=args.keep,
    )


def _raise_aborted(signum: int, _frame: FrameType | None) -> None:
    raise Aborted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    wrk_binary()  # fail early with a clear message when wrk or nginx is missing
    from bench.nginx import nginx_binary

    nginx_binary()
    if any(s.key.startswith("apache-") for s in opts.scenarios):
        from bench.apache import apache_binary

        apache_binary()
    budget = len(opts.scenarios) * opts.repeat * (opts.warmup + opts.duration + SETUP_ALLOWANCE) + 60
    # Explicit, so Ctrl-C works even when the harness was started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_aborted)
    signal.signal(signal.SIGHUP, _raise_aborted)
    signal.signal(signal.SIGALRM, _raise_aborted)
    signal.alarm(int(budget))
    started = time.monotonic()
    rounds: dict[str, list[ScenarioResult]] = {}
    aborted: str | None = None
    work = Path(tempfile.mkdtemp(prefix="tokengate-bench-"))
    work.chmod(0o755)  # nginx workers (user nobody when started as root) read the body file from here
    print(
        f"tokengate benchmark: wrk -t{opts.threads} -c{opts.connections} -d{opts.duration:g}s --latency, "
        f"warm-up {opts.warmup:g}s, {len(opts.scenarios)} scenarios; work dir {work}",
        flush=True,
    )
    try:
        with contextlib.ExitStack() as stack:
            shared = Shared(work, opts.nginx_workers, stack)
            script = write_script(work)
            # Rounds, not back-to-back repeats: load from other jobs that comes and goes then hits every
            # scenario alike instead of one of them.
            for round_no in range(1, opts.repeat + 1):
                for scenario in opts.scenarios:
                    earlier = rounds.setdefault(scenario.key, [])
                    if earlier and earlier[0].status == "skipped":
                        continue
                    r = run_scenario(scenario, shared, opts, work, script, round_no)
                    earlier.append(r)
                    if r.status != "ok":
                        print(f"   {r.status.upper()}: " + "; ".join(r.problems), flush=True)
                        if r.log_tail:
                            print("   gateway log tail:\n" + _indent(r.log_tail[-1500:]), flush=True)
    except (Aborted, KeyboardInterrupt) as exc:
        aborted = str(exc) or type(exc).__name__
        print(f"\naborted ({aborted}): every server stopped; partial results follow", flush=True)
    finally:
        signal.alarm(0)
        if opts.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    results = [combine(runs) for runs in rounds.values() if runs]
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": round(elapsed, 1),
        "aborted": aborted,
        "wrk": {
            "threads": opts.threads,
            "connections": opts.connections,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "repeat": opts.repeat,
        },
        "nginx_workers": opts.nginx_workers,
        "body_bytes": BODY_SIZE,
        "git": {"commit": _git("rev-parse", "--short", "HEAD"), "dirty": bool(_git("status", "--porcelain"))},
        "versions": _versions(),
    }
    rows = {r.key: r for r in results}
    computed = ratios(rows)
    from bench.routes import route_lookup

    lookup = route_lookup()  # in-process, < 2 s
    meta["route_lookup_ns"] = lookup
    flat = lookup["10000"]["hit"] / lookup["10"]["hit"]
    computed["route lookup, 10,000 / 10 routes (ns per hit)"] = {
        "target": 1.5,  # "flat": within timer noise on a shared machine
        "sense": "<=",
        "value": round(flat, 3),
        "meets_target": flat <= 1.5,
    }
    report = markdown_report(meta, results, computed)
    print("\n" + report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(
        json.dumps({"meta": meta, "ratios": computed, "scenarios": [r.to_json() for r in results]}, indent=2)
        + "\n"
    )
    print(f"written: {RESULTS / 'latest.md'} and latest.json ({elapsed:.0f} s in all)")
    failed = [r.key for r in results if r.status == "failed"]
    return 130 if aborted else (1 if failed else 0)


def _indent(text: str) -> str:
    return "\n".join("     " + ln for ln in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
