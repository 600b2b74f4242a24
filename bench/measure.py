"""One scenario of one round: start, preflight, warm up, measure (wrk + CPU and PSS from /proc), judge,
stop; and ``combine``, the medians over a scenario's rounds.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.http import get
from bench.procs import cpu_delta, cpu_sample, host_cpu, pss_mib, tail
from bench.scenarios import Scenario, Target
from bench.shared import BODY_SIZE, LOGIN, REQUIRED_SCOPE, Shared
from bench.wrk import WrkResult, run_wrk


class Aborted(BaseException):
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
    #: medians over the rounds (rps, p50_ms, p99_ms, cpu_us, pss_mib), filled by ``combine``
    median: dict[str, float] = field(default_factory=dict)
    runs: list[dict[str, float]] = field(default_factory=list)
    cpu_us_per_req: dict[str, float] = field(default_factory=dict)
    cpu_seconds_per_pid: dict[str, dict[str, float]] = field(default_factory=dict)
    pss_mib: float | None = None
    probe: dict[str, Any] | None = None
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


def preflight(target: Target) -> list[str]:
    """One request of each kind by hand: the load must get 200s with the whole body, every request
    without valid credentials (or with the wrong scope) must be refused, and where the participant adds
    identity headers the upstream must see them."""
    problems: list[str] = []
    status, headers, body = get(target.url, target.headers)
    if status != 200 or len(body) != BODY_SIZE:
        problems.append(
            f"GET {target.url} answered {status} with {len(body)} bytes (want 200 and {BODY_SIZE}): "
            f"{headers.get('www-authenticate', '')} {body[:300]!r}"
        )
    for what, hdrs, allowed in target.refusals:
        status, headers, body = get(target.url, hdrs)
        if status not in allowed:
            problems.append(f"with {what} the route answered {status}, want one of {allowed}: {body[:200]!r}")
    if target.whoami:
        whoami = target.url.rsplit("/", 1)[0] + "/whoami"
        status, _headers, body = get(whoami, target.headers)
        text = body.decode(errors="replace").strip()
        if status != 200 or f"user={LOGIN} " not in text or REQUIRED_SCOPE not in text:
            problems.append(f"upstream did not see the identity headers: {status} {text!r}")
    return problems


def settle(target: Target, headers: dict[str, str] | None = None, timeout: float = 15.0) -> list[str]:
    """With several workers, /readyz can answer 200 before every worker has loaded its provider metadata
    (one worker's 503 "metadata not loaded yet" was seen right after readiness): wait until 20 requests
    in a row, on new connections spread by SO_REUSEPORT, are not 503. Returns a note when some were."""
    deadline = time.monotonic() + timeout
    in_a_row, unavailable = 0, 0
    while in_a_row < 20 and time.monotonic() < deadline:
        status, _h, _b = get(target.url, target.headers if headers is None else headers)
        if status == 503:
            unavailable, in_a_row = unavailable + 1, 0
            time.sleep(0.05)
        else:
            in_a_row += 1
    if unavailable:
        return [f"{unavailable} answers were 503 after /readyz said ready (a worker not ready yet)"]
    return []


def warm_up(target: Target, opts: Options, script: Path, log: Path) -> list[str]:
    """A few sequential requests (caches: JWKS, verified tokens, introspection answers), then a short wrk
    run that opens every client and upstream connection before the measured run."""
    for _ in range(20):
        status, _h, _b = get(target.url, target.headers)
        if status != 200:
            return [f"warm-up request answered {status}"]
    if opts.warmup >= 1:
        result = run_wrk(
            target.url,
            script=script,
            duration=opts.warmup,
            threads=opts.threads,
            connections=opts.connections,
            headers=target.headers,
            log=log,
        )
        if result.non_2xx:
            return [f"warm-up wrk run got {result.non_2xx} non-2xx answers"]
    return []


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
        headers=target.headers,
        log=log,
    )
    host_after = host_cpu()
    after = {role: cpu_sample(pid) for role, pid in target.measured.items()}
    result.pss_mib = pss_mib(target.measured["server"])  # the whole tree, right after the load
    requests = max(wrk.requests, 1)
    for role in target.measured:
        total, per_pid = cpu_delta(before[role], after[role])
        result.cpu_us_per_req[role] = round(total / requests * 1e6, 1)
        result.cpu_seconds_per_pid[role] = {str(pid): round(v, 2) for pid, v in per_pid.items()}
    delta = {k: host_after[k] - host_before[k] for k in host_after}
    if delta["total"] > 0:
        total = delta["total"]
        busy = sum(delta[k] for k in ("task", "irq", "steal"))
        result.host_busy_pct = round(100 * busy / total, 1)
        result.irq_cpu_pct = round(100 * delta["irq"] / total, 1)
        result.steal_cpu_pct = round(100 * delta["steal"] / total, 1)
        # Whatever else ran on the machine meanwhile (other jobs skew every number of a scenario).
        ours = sum(sum(v.values()) for v in result.cpu_seconds_per_pid.values()) + wrk.cpu_s
        result.other_cpu_pct = round(max(0.0, 100 * (delta["task"] - ours) / total), 1)
    if target.idp is not None:
        result.idp_calls = {path: n for path, n in target.idp.counters().items() if n}
    if gw is not None:
        time.sleep(0.3)  # the last access-log lines of the run
        statuses, other = gw.access_statuses(offset)
        result.access_log_statuses = {str(k): v for k, v in sorted(statuses.items())}
        result.gateway_log_notes = [ln for ln in other if '"level":"info"' not in ln][:20]
    return wrk


def judge(target: Target, wrk: WrkResult, result: ScenarioResult) -> None:
    if wrk.requests == 0:
        result.fail("wrk completed no request")
    if wrk.non_2xx:
        result.fail(f"{wrk.non_2xx} non-2xx answers during the load (wrk)")
    errors = {k: v for k, v in wrk.socket_errors.items() if v}
    if errors:
        result.fail(f"socket errors during the load: {errors}")
    if wrk.bytes < wrk.requests * BODY_SIZE:
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
        per_pid = result.cpu_seconds_per_pid.get("server", {})
        busy = [v for v in per_pid.values() if v >= 0.15 * sum(per_pid.values()) > 0]
        if len(busy) < target.workers:
            result.problems.append(f"only {len(busy)} of the gateway's processes did real work: {per_pid}")


def _stop(target: Target, result: ScenarioResult) -> None:
    gw = target.gateway
    if gw is not None:
        if gw.proc.alive():
            code = gw.stop()
            if code not in (0, None):
                result.problems.append(f"the gateway exited with {code} on SIGTERM")
        else:
            result.fail(f"the gateway died during the scenario (exit {gw.proc.popen.returncode})")
        if result.status != "ok" or result.gateway_log_notes:
            result.log_tail = gw.log_tail(3000)
    elif result.status != "ok" and target.logs:
        result.log_tail = "\n".join(tail(p, 1500) for p in target.logs)


def run_scenario(
    scenario: Scenario, shared: Shared, opts: Options, work: Path, script: Path, round_no: int
) -> ScenarioResult:
    """Start the scenario's servers, check, warm up, measure once (or probe), stop them."""
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
            if target.probe is not None:  # a cold cache: no preflight or warm-up may touch it first
                if target.workers > 1:  # a garbage token: the probe's token must stay uncached
                    result.problems += settle(target, {"Authorization": "Bearer not-a-token"})
                result.probe, problems = target.probe()
                for problem in problems:
                    result.fail(problem)
                print(f"   {result.probe}", flush=True)
                return result
            if target.workers > 1:
                result.problems += settle(target)
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
                f"PSS {result.pss_mib or 0:.0f} MiB, other load {result.other_cpu_pct or 0:.0f} %",
                flush=True,
            )
        except Aborted:
            raise
        except Exception as exc:
            result.fail(f"{type(exc).__name__}: {exc}")
        finally:
            if target is not None:
                _stop(target, result)
            result.seconds = round(time.monotonic() - started, 1)
    return result


def _med(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def combine(runs: list[ScenarioResult]) -> ScenarioResult:
    """One row from the rounds of a scenario: each figure the median over the rounds (clean rounds when
    there are any); the round with the median req/s is kept for details; every problem reported."""
    measured = [r for r in runs if r.wrk is not None]
    clean = [r for r in measured if r.status == "ok"]
    pool = sorted(clean or measured or runs, key=lambda r: r.wrk.rps if r.wrk else 0.0)
    chosen = pool[(len(pool) - 1) // 2]
    chosen.runs = [
        {
            "rps": r.wrk.rps,
            "p50_ms": r.wrk.p50_ms,
            "p99_ms": r.wrk.p99_ms,
            "cpu_us": r.cpu_us_per_req.get("server", 0.0),
            "pss_mib": r.pss_mib or 0.0,
        }
        for r in (clean or measured)
        if r.wrk is not None
    ]
    if chosen.runs:
        chosen.median = {k: _med([run[k] for run in chosen.runs]) for k in chosen.runs[0]}
    probes = [r.probe for r in runs if r.probe is not None]
    if probes:
        chosen.probe = {**probes[-1], "calls_per_round": [p["introspection_calls"] for p in probes]}
    chosen.problems = list(dict.fromkeys(p for r in runs for p in r.problems))
    if any(r.status == "failed" for r in runs):
        chosen.status = "failed"
    chosen.log_tail = chosen.log_tail or next((r.log_tail for r in runs if r.log_tail), None)
    chosen.seconds = round(sum(r.seconds for r in runs), 1)
    return chosen
