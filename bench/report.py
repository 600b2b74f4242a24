"""The Markdown table and the ratios of one run."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import ScenarioResult

#: (name, numerator scenario, denominator scenario, target or None)
RATIOS: tuple[tuple[str, str, str, float | None], ...] = (
    ("bearer JWT / public", "tokengate-jwt", "tokengate-public", 0.9),
    ("bearer introspection / public", "tokengate-introspection", "tokengate-public", 0.9),
    ("tracing on / off (public)", "tokengate-public-traced", "tokengate-public", None),
    ("tracing 10 % sampled / off (public)", "tokengate-public-traced-10", "tokengate-public", None),
    ("tokengate public / nginx pass-through", "tokengate-public", "nginx-proxy", None),
    ("nginx pass-through / nginx direct", "nginx-proxy", "nginx-direct", None),
    ("tokengate 2 workers / 1 worker (public)", "tokengate-public-2w", "tokengate-public", None),
)


def ratios(rows: Mapping[str, ScenarioResult]) -> dict[str, dict[str, Any]]:
    """Requests/s ratios between scenarios of this run (only where both sides completed cleanly)."""
    out: dict[str, dict[str, Any]] = {}
    for name, top, bottom, target in RATIOS:
        a, b = rows.get(top), rows.get(bottom)
        if a is None or b is None:
            continue
        entry: dict[str, Any] = {"of": top, "to": bottom, "target": target, "value": None}
        if a.wrk and b.wrk and a.status == "ok" and b.status == "ok" and b.wrk.rps:
            entry["value"] = round(a.wrk.rps / b.wrk.rps, 3)
            cpu_a, cpu_b = _cpu(a), _cpu(b)
            if cpu_a and cpu_b:
                entry["cpu_per_request_ratio"] = round(cpu_a / cpu_b, 3)
            if target is not None:
                entry["meets_target"] = entry["value"] >= target
                if cpu_a and cpu_b:
                    # One CPU-bound process: req/s = 1 / CPU per request, whatever else runs beside it.
                    entry["implied_by_cpu"] = round(cpu_b / cpu_a, 3)
                    entry["implied_meets_target"] = entry["implied_by_cpu"] >= target
        else:
            entry["note"] = "not comparable: a side failed or was skipped"
        out[name] = entry
    return out


def _cpu(result: ScenarioResult) -> float | None:
    """CPU µs per request of the process under test: the median over the rounds when there were several
    (CPU per request varies much less than req/s, but a round with heavy other load still inflates it)."""
    if len(result.runs_cpu_us_per_req) > 1:
        return statistics.median(result.runs_cpu_us_per_req)
    return result.cpu_us_per_req.get("server")


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _verdict(met: object, value: object) -> str:
    if value is None:
        return "n/a"
    return "**met**" if met else "**missed**"


def _busy(result: ScenarioResult) -> str:
    if result.host_busy_pct is None:
        return "—"
    extra = f"{result.irq_cpu_pct or 0:.0f} % irq"
    if (result.steal_cpu_pct or 0) >= 0.5:
        extra += f", {result.steal_cpu_pct:.0f} % steal"
    return f"{result.host_busy_pct:.0f} % ({extra})"


def _idp(result: ScenarioResult) -> str:
    if result.idp_calls is None:
        return "—"
    return str(sum(result.idp_calls.values()))


def markdown_report(
    meta: Mapping[str, Any], results: Sequence[ScenarioResult], computed: Mapping[str, Mapping[str, Any]]
) -> str:
    w = meta["wrk"]
    lines = [
        "# tokengate benchmark",
        "",
        f"{meta['date']} · git {meta['git']['commit']}{' (dirty)' if meta['git']['dirty'] else ''} · "
        f"`wrk -t{w['threads']} -c{w['connections']} -d{w['duration_s']:g}s --latency` after a "
        f"{w['warmup_s']:g} s warm-up · {meta['body_bytes']} B body · nginx worker_processes "
        f"{meta['nginx_workers']} · {meta['versions']['cpus']} CPUs, Python {meta['versions']['python']}, "
        f"aiohttp {meta['versions']['aiohttp']} · {meta['elapsed_s']:.0f} s in all"
        + (f" · **ABORTED ({meta['aborted']})**" if meta.get("aborted") else ""),
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors | CPU µs/req (proxy) "
        "| CPU µs/req (upstream) | IdP calls | host CPU busy | other load | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        wrk = r.wrk
        direct = r.key == "nginx-direct"
        proxy_cpu = None if direct else r.cpu_us_per_req.get("server")
        upstream_cpu = r.cpu_us_per_req.get("server" if direct else "upstream")
        status = r.status if not r.problems else f"{r.status}: " + "; ".join(r.problems)
        lines.append(
            "| "
            + " | ".join(
                [
                    r.title,
                    _num(wrk.rps if wrk else None),
                    _num(wrk.p50_ms if wrk else None, "{:.2f}"),
                    _num(wrk.p99_ms if wrk else None, "{:.2f}"),
                    _num(wrk.non_2xx if wrk else None),
                    _num(sum(wrk.socket_errors.values()) if wrk else None),
                    _num(proxy_cpu),
                    _num(upstream_cpu),
                    _idp(r),
                    _busy(r),
                    _num(r.other_cpu_pct, "{:.0f} %"),
                    status.replace("|", "/").replace("\n", " "),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "| ratio | req/s ratio | CPU/req ratio | req/s ratio implied by CPU/req | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, entry in computed.items():
        value = entry.get("value")
        target = entry.get("target")
        verdict = "—"
        if target is not None:
            verdict = f"≥ {target:g}: req/s " + _verdict(entry.get("meets_target"), value)
            if entry.get("implied_by_cpu") is not None:
                verdict += ", by CPU/req " + _verdict(entry.get("implied_meets_target"), value)
        lines.append(
            f"| {name} | {_num(value, '{:.3f}')} | {_num(entry.get('cpu_per_request_ratio'), '{:.2f}')} "
            f"| {_num(entry.get('implied_by_cpu'), '{:.3f}')} | {verdict} |"
        )
    noisy = [r.key for r in results if (r.other_cpu_pct or 0) > 10]
    if noisy:
        lines += [
            "",
            f"**Other jobs used more than 10 % of the machine's CPU during {', '.join(noisy)}**: req/s and "
            "latencies of those rows are skewed; compare CPU µs/req (and the ratio implied by it), or re-run "
            "on a quiet machine or with `--repeat 3`.",
        ]
    lines += [
        "",
        "CPU/req ratios use the median over the rounds with --repeat. "
        "Implied by CPU/req: the public row's CPU per request divided by this row's; for one CPU-bound "
        "process that is the req/s ratio with the machine to itself. "
        "CPU µs/req: user+system time of the process tree (master/supervisor and workers) over the measured "
        'run, divided by the requests wrk completed. "proxy" is the process under test (nginx proxy or '
        'tokengate); "upstream" is the nginx serving the body (for the direct row, the server under test). '
        "IdP calls: requests the provider received during the measured run (0 = the warm cache answered "
        "every check). wrk, the upstream and the proxy share the machine's CPUs. "
        "Host CPU busy: all CPUs over the measured run, with the share spent in interrupts (loopback "
        "networking is mostly softirq time, charged to no process) and stolen by the hypervisor; other load: "
        "CPU time charged to processes outside this benchmark (other jobs "
        "on the machine; more than a few % makes the row's numbers unreliable).",
        "",
    ]
    for r in results:
        if r.status != "ok" and r.log_tail:
            lines += [f"### {r.key}: gateway log tail", "", "```", r.log_tail[-2500:].rstrip(), "```", ""]
    return "\n".join(lines)
