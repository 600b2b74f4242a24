"""Load benchmark: nginx ceiling, nginx pass-through, tokengate public / bearer JWT / bearer introspection,
all in one run on loopback, driven by wrk. ``python -m bench.run --help``; see bench/README.md.
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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.http import get
from bench.procs import cpu_delta, cpu_sample, host_cpu
from bench.report import markdown_report, ratios
from bench.scenarios import BODY_SIZE, LOGIN, REQUIRED_SCOPE, SCENARIOS, Scenario, Shared, Target
from bench.wrk import WrkResult, run_wrk, write_script, wrk_binary

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: Per scenario, on top of warm-up and measurement: servers starting, preflight, stopping.
SETUP_ALLOWANCE = 45.0


class Aborted(Exception):
    """SIGTERM, SIGHUP or the overall time limit: stop everything and report what we have."""


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    threads: int
    repeat: int
    nginx_workers: int
    scenarios: list[Scenario]
    keep: bool


@dataclass
class ScenarioResult:
    key: str
    title: str
    status: str = "ok"  # ok | failed | skipped
    problems: list[str] = field(default_factory=list)
    wrk: WrkResult | None = None
    runs_rps: list[float] = field(default_factory=list)
    runs_cpu_us_per_req: list[float] = field(default_factory=list)
    cpu_us_per_req: dict[str, float] = field(default_factory=dict)
    cpu_seconds_per_pid: dict[str, dict[str, float]] = field(default_factory=dict)
    host_busy_pct: float | None = None
    other_cpu_pct: float | None = None
    irq_cpu_pct: float | None = None
    steal_cpu_pct: float | None = None
    loadavg_before: float | None = None
    idp_calls: dict[str, int] | None = None
    access_log_statuses: dict[str, int] | None = None
    gateway_log_notes: list[str] = field(default_factory=list)
    log_tail: str | None = None
    seconds: float = 0.0

    def fail(self, problem: str, status: str = "failed") -> None:
        self.status = status
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "wrk"}
        out["wrk"] = self.wrk.to_json() if self.wrk else None
        return out


# ---- checks before any load ------------------------------------------------------------------------------


def preflight(target: Target) -> list[str]:
    """One request of each kind by hand: the load must get 200s with the whole body, a bearer route must
    refuse requests without a valid token, and the upstream must see the identity headers."""
    problems: list[str] = []
    auth = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    status, headers, body = get(target.url, auth)
    if status != 200 or len(body) != BODY_SIZE:
        problems.append(
            f"GET {target.url} answered {status} with {len(body)} bytes (want 200 and {BODY_SIZE}): "
            f"{headers.get('www-authenticate', '')} {body[:300]!r}"
        )
    if target.bearer:
        for what, hdrs in (("no token", {}), ("a garbage token", {"Authorization": "Bearer not-a-token"})):
            status, headers, body = get(target.url, hdrs)
            if status != 401:
                problems.append(f"with {what} the bearer route answered {status}, want 401: {body[:200]!r}")
        whoami = target.url.rsplit("/", 1)[0] + "/whoami"
        status, _headers, body = get(whoami, auth)
        text = body.decode(errors="replace").strip()
        if status != 200 or f"user={LOGIN} " not in text or REQUIRED_SCOPE not in text:
            problems.append(f"upstream did not see the identity headers: {status} {text!r}")
    return problems


def warm_up(target: Target, opts: Options, script: Path, log: Path) -> list[str]:
    """A few sequential requests (caches: JWKS, verified tokens, introspection answers), then a short wrk
    run that opens every client and upstream connection before the measured run."""
    auth = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    for _ in range(20):
        status, _h, _b = get(target.url, auth)
        if status != 200:
            return [f"warm-up request answered {status}"]
    if opts.warmup >= 1:
        result = run_wrk(
            target.url,
            script=script,
            duration=opts.warmup,
            threads=opts.threads,
            connections=opts.connections,
            token=target.token,
            log=log,
        )
        if result.non_2xx:
            return [f"warm-up wrk run got {result.non_2xx} non-2xx answers"]
    return []


# ---- one measured run ------------------------------------------------------------------------------------


def measure_once(target: Target, opts: Options, script: Path, log: Path, result: ScenarioResult) -> WrkResult:
    gw = target.gateway
    offset = gw.log_offset() if gw else 0
    result.loadavg_before = os.getloadavg()[0]
    if target.idp is not None:
        target.idp.reset_counters()
    before = {role: cpu_sample(pid) for role, pid in target.measured.items()}
    host_before = host_cpu()
    wrk = run_wrk(
        target.url,
        script=script,
        duration=opts.duration,
        threads=opts.threads,
        connections=opts.connections,
        token=target.token,
        log=log,
    )
    host_after = host_cpu()
    after = {role: cpu_sample(pid) for role, pid in target.measured.items()}
    requests = max(wrk.requests, 1)
    result.cpu_us_per_req = {}
    result.cpu_seconds_per_pid = {}
    for role in target.measured:
        total, per_pid = cpu_delta(before[role], after[role])
        result.cpu_us_per_req[role] = round(total / requests * 1e6, 1)
        result.cpu_seconds_per_pid[role] = {str(pid): round(v, 2) for pid, v in per_pid.items()}
    delta = {k: host_after[k] - host_before[k] for k in host_after}
    if delta["total"] > 0:
        total = delta["total"]
        result.host_busy_pct = round(100 * (total - _idle(host_before, host_after)) / total, 1)
        result.irq_cpu_pct = round(100 * delta["irq"] / total, 1)
        result.steal_cpu_pct = round(100 * delta["steal"] / total, 1)
        # Whatever else ran on the machine meanwhile (other jobs skew every number of a scenario).
        ours = sum(sum(v.values()) for v in result.cpu_seconds_per_pid.values()) + wrk.cpu_s
        result.other_cpu_pct = round(max(0.0, 100 * (delta["task"] - ours) / total), 1)
    if target.idp is not None:
        calls = target.idp.counters()
        result.idp_calls = {path: n for path, n in calls.items() if n}
    if gw is not None:
        time.sleep(0.3)  # the last access-log lines of the run
        statuses, other = gw.access_statuses(offset)
        result.access_log_statuses = {str(k): v for k, v in sorted(statuses.items())}
        noisy = [ln for ln in other if '"level":"info"' not in ln]
        result.gateway_log_notes = noisy[:20]
    return wrk


def _idle(before: dict[str, float], after: dict[str, float]) -> float:
    busy = sum(after[k] - before[k] for k in ("task", "irq", "steal"))
    return (after["total"] - before["total"]) - busy


def judge(target: Target, wrk: WrkResult, result: ScenarioResult) -> None:
    if wrk.requests == 0:
        result.fail("wrk completed no request")
    if wrk.non_2xx:
        result.fail(f"{wrk.non_2xx} non-2xx answers during the load (wrk)")
    errors = {k: v for k, v in wrk.socket_errors.items() if v}
    if errors:
        result.fail(f"socket errors during the load: {errors}")
    expected_bytes = wrk.requests * BODY_SIZE
    if wrk.bytes < expected_bytes:
        result.fail(
            f"wrk read {wrk.bytes} bytes for {wrk.requests} requests: bodies shorter than {BODY_SIZE}"
        )
    if result.access_log_statuses is not None:
        # 499: requests wrk had in flight when it closed its connections at the end (at most -c of them).
        bad = {s: n for s, n in result.access_log_statuses.items() if not s.startswith("2") and s != "499"}
        if bad:
            result.fail(f"the gateway's access log shows non-2xx answers: {bad}")
        ok = sum(n for s, n in result.access_log_statuses.items() if s.startswith("2"))
        if ok < wrk.requests:
            result.fail(f"the access log has {ok} 2xx lines for {wrk.requests} requests counted by wrk")
    if result.gateway_log_notes:
        result.problems.append(f"{len(result.gateway_log_notes)} warning/error lines in the gateway log")
    if target.workers > 1:
        busy = [v for v in result.cpu_seconds_per_pid.get("server", {}).values() if v >= 0.5]
        if len(busy) < target.workers:
            result.problems.append(
                f"only {len(busy)} of the gateway's processes did real work: "
                f"{result.cpu_seconds_per_pid['server']}"
            )


def run_scenario(
    scenario: Scenario, shared: Shared, opts: Options, work: Path, script: Path, round_no: int
) -> ScenarioResult:
    """Start the scenario's servers, check, warm up, measure once, stop them."""
    result = ScenarioResult(scenario.key, scenario.title)
    started = time.monotonic()
    directory = work / f"{scenario.key}-{round_no}"
    directory.mkdir()
    wrk_log = directory / "wrk.log"
    suffix = f" (round {round_no}/{opts.repeat})" if opts.repeat > 1 else ""
    print(f"\n== {scenario.key}: {scenario.title}{suffix}", flush=True)
    target: Target | None = None
    with contextlib.ExitStack() as stack:
        try:
            try:
                target = scenario.setup(shared, stack, directory)
            except Exception as exc:
                result.fail(f"could not start: {exc}", "skipped" if scenario.optional else "failed")
                return result
            problems = preflight(target) or warm_up(target, opts, script, wrk_log)
            for problem in problems:
                result.fail(problem)
            if problems:
                return result
            wrk = measure_once(target, opts, script, wrk_log, result)
            judge(target, wrk, result)
            result.wrk = wrk
            print(
                f"   {wrk.rps:,.0f} req/s, p50 {wrk.p50_ms:.2f} ms, p99 {wrk.p99_ms:.2f} ms, "
                f"non-2xx {wrk.non_2xx}, CPU {result.cpu_us_per_req.get('server', 0):.0f} us/req, "
                f"other load {result.other_cpu_pct or 0:.0f} %",
                flush=True,
            )
        except Aborted:
            raise
        except Exception as exc:
            result.fail(f"{type(exc).__name__}: {exc}")
        finally:
            if target is not None and target.gateway is not None:
                gw = target.gateway
                if gw.proc.alive():
                    code = gw.stop()
                    if code not in (0, None):
                        result.problems.append(f"the gateway exited with {code} on SIGTERM")
                else:
                    result.fail(f"the gateway died during the scenario (exit {gw.proc.popen.returncode})")
                if result.status != "ok" or result.gateway_log_notes:
                    result.log_tail = gw.log_tail(3000)
            result.seconds = round(time.monotonic() - started, 1)
    return result


def combine(runs: list[ScenarioResult]) -> ScenarioResult:
    """One row from the rounds of a scenario: the run with the median req/s (among clean runs when there
    are any), all rounds' req/s and CPU per request kept, every problem reported."""
    clean = [r for r in runs if r.status == "ok" and r.wrk is not None]
    pool = sorted(
        clean or [r for r in runs if r.wrk is not None] or runs, key=lambda r: r.wrk.rps if r.wrk else 0.0
    )
    chosen = pool[(len(pool) - 1) // 2]
    chosen.runs_rps = [r.wrk.rps for r in runs if r.wrk is not None]
    chosen.runs_cpu_us_per_req = [r.cpu_us_per_req.get("server", 0.0) for r in runs if r.wrk is not None]
    chosen.problems = list(dict.fromkeys(p for r in runs for p in r.problems))
    if any(r.status == "failed" for r in runs):
        chosen.status = "failed"
    chosen.log_tail = chosen.log_tail or next((r.log_tail for r in runs if r.log_tail), None)
    chosen.seconds = round(sum(r.seconds for r in runs), 1)
    return chosen


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
    return {
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
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario (10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured wrk load first (2)")
    parser.add_argument("--connections", "-c", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--threads", "-t", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over all scenarios; each scenario's median run is reported (1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per scenario, 1 s warm-up")
    parser.add_argument(
        "--nginx-workers",
        type=int,
        default=1,
        help="worker_processes of both nginx instances (1: one process, like tokengate)",
    )
    parser.add_argument("--scenarios", default=",".join(keys), help=f"comma-separated subset of {keys}")
    parser.add_argument("--no-workers", action="store_true", help="skip the server.workers: 2 scenario")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    args = parser.parse_args(argv)
    wanted = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = sorted(set(wanted) - set(keys))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {keys}")
    if args.no_workers:
        wanted = [k for k in wanted if k != "tokengate-public-2w"]
    duration = 3.0 if args.quick else args.duration
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    if duration < 1 or args.repeat < 1 or args.connections < args.threads:
        parser.error("need --duration >= 1, --repeat >= 1 and --connections >= --threads")
    return Options(
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        threads=args.threads,
        repeat=args.repeat,
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
