"""The Markdown table of one run and the ratios of issue 11's targets (all within that run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.measure import ScenarioResult

#: (name, numerator, denominator, target, sense): sense ">=" for req/s ratios, "<=" for p99 ratios.
RATIOS: tuple[tuple[str, str, str, float | None, str], ...] = (
    (
        "2 workers bearer JWT / Apache + mod_auth_openidc JWT",
        "tokengate-jwt-2w",
        "apache-openidc-jwt",
        1.5,
        ">=",
    ),
    ("2 workers bearer JWT / Apache + mod_oauth2 JWT", "tokengate-jwt-2w", "apache-oauth2-jwt", 1.0, ">="),
    ("p99: 2 workers bearer JWT / mod_auth_openidc JWT", "tokengate-jwt-2w", "apache-openidc-jwt", 1.0, "<="),
    (
        "2 workers warm introspection / mod_auth_openidc cached introspection",
        "tokengate-introspection-2w",
        "apache-openidc-introspection",
        1.0,
        ">=",
    ),
    ("1 worker bearer JWT / naive aiohttp proxy", "tokengate-jwt", "naive-proxy", 1.3, ">="),
    ("bearer JWT / public (1 worker)", "tokengate-jwt", "tokengate-public", 0.9, ">="),
    ("bearer introspection / public (1 worker)", "tokengate-introspection", "tokengate-public", 0.9, ">="),
    ("bearer JWT / public (2 workers)", "tokengate-jwt-2w", "tokengate-public-2w", 0.9, ">="),
    ("session / bearer JWT (1 worker)", "tokengate-session", "tokengate-jwt", 0.8, ">="),
    ("session / bearer JWT (2 workers)", "tokengate-session-2w", "tokengate-jwt-2w", 0.8, ">="),
    ("tokengate public / naive aiohttp proxy", "tokengate-public", "naive-proxy", None, ">="),
    ("tracing on / off (public)", "tokengate-public-traced", "tokengate-public", None, ">="),
    ("tracing 10 % sampled / off (public)", "tokengate-public-traced-10", "tokengate-public", None, ">="),
    ("naive aiohttp proxy / nginx pass-through", "naive-proxy", "nginx-proxy", None, ">="),
    ("nginx pass-through / nginx direct", "nginx-proxy", "nginx-direct", None, ">="),
    ("2 workers / 1 worker (bearer JWT)", "tokengate-jwt-2w", "tokengate-jwt", None, ">="),
)
#: CPU per proxied request on these routes: target ≤ 200 µs.
CPU_TARGET_US = 200.0
CPU_ROWS = ("tokengate-jwt", "tokengate-introspection", "tokengate-jwt-2w", "tokengate-introspection-2w")


def figure(result: ScenarioResult, name: str) -> float | None:
    """A median over the rounds (rps, p50_ms, p99_ms, cpu_us, pss_mib), or None when never measured."""
    return result.median.get(name)


def ratios(rows: Mapping[str, ScenarioResult]) -> dict[str, dict[str, Any]]:
    """Ratios between participants of this run, where both sides were measured cleanly."""
    out: dict[str, dict[str, Any]] = {}
    for name, top, bottom, target, sense in RATIOS:
        a, b = rows.get(top), rows.get(bottom)
        if a is None or b is None:
            continue
        entry: dict[str, Any] = {"of": top, "to": bottom, "target": target, "sense": sense, "value": None}
        what = "p99_ms" if sense == "<=" else "rps"
        va, vb = figure(a, what), figure(b, what)
        if a.status == "ok" and b.status == "ok" and va and vb:
            entry["value"] = round(va / vb, 3)
            cpu_a, cpu_b = figure(a, "cpu_us"), figure(b, "cpu_us")
            if cpu_a and cpu_b:
                entry["cpu_per_request_ratio"] = round(cpu_a / cpu_b, 3)
                if sense == ">=":
                    # One CPU-bound process: req/s = 1 / CPU per request, whatever else runs beside it.
                    entry["implied_by_cpu"] = round(cpu_b / cpu_a, 3)
            if target is not None:
                ok = entry["value"] >= target if sense == ">=" else entry["value"] <= target
                entry["meets_target"] = ok
        else:
            entry["note"] = "not comparable: a side failed or was skipped"
        out[name] = entry
    for key in CPU_ROWS:
        r = rows.get(key)
        cpu = figure(r, "cpu_us") if r is not None else None
        if cpu:
            out[f"CPU µs/req {key}"] = {
                "of": key,
                "target": CPU_TARGET_US,
                "sense": "<=",
                "value": cpu,
                "meets_target": cpu <= CPU_TARGET_US,
            }
    cold = rows.get("tokengate-cold")
    if cold is not None and cold.probe is not None:
        calls = cold.probe["calls_per_round"]
        out["cold cache: introspection calls for 100 concurrent first uses (1 worker)"] = {
            "of": "tokengate-cold",
            "target": 1,
            "sense": "==",
            "value": max(calls),
            "meets_target": set(calls) == {1},
        }
    return out


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _target(entry: Mapping[str, Any]) -> str:
    target = entry.get("target")
    if target is None:
        return "—"
    sense = {">=": "≥", "<=": "≤", "==": "="}[entry["sense"]]
    verdict = (
        "n/a" if entry.get("value") is None else ("**met**" if entry.get("meets_target") else "**missed**")
    )
    return f"{sense} {target:g}: {verdict}"


def _row(r: ScenarioResult) -> list[str]:
    direct = r.key == "nginx-direct"
    status = r.status if not r.problems else f"{r.status}: " + "; ".join(r.problems)
    return [
        r.title,
        _num(figure(r, "rps")),
        _num(figure(r, "p50_ms"), "{:.2f}"),
        _num(figure(r, "p99_ms"), "{:.2f}"),
        _num(figure(r, "cpu_us")),
        _num(figure(r, "pss_mib"), "{:.0f}"),
        _num(r.cpu_us_per_req.get("server" if direct else "upstream")),
        "—" if r.idp_calls is None else str(sum(r.idp_calls.values())),
        _num(r.other_cpu_pct, "{:.0f} %"),
        " / ".join(f"{run['rps']:,.0f}" for run in r.runs) or "—",
        status.replace("|", "/").replace("\n", " "),
    ]


def markdown_report(
    meta: Mapping[str, Any], results: Sequence[ScenarioResult], computed: Mapping[str, Mapping[str, Any]]
) -> str:
    w = meta["wrk"]
    v = meta["versions"]
    lines = [
        "# tokengate benchmark",
        "",
        f"{meta['date']} · git {meta['git']['commit']}{' (dirty)' if meta['git']['dirty'] else ''} · "
        f"`wrk -t{w['threads']} -c{w['connections']} -d{w['duration_s']:g}s --latency` after a "
        f"{w['warmup_s']:g} s warm-up · {w['repeat']} round(s), medians · {meta['body_bytes']} B body · "
        f"nginx worker_processes {meta['nginx_workers']} · {v['cpus']} CPUs, Python {v['python']}, "
        f"aiohttp {v['aiohttp']}, {v.get('apache') or 'no Apache'} · {meta['elapsed_s']:.0f} s in all"
        + (f" · **ABORTED ({meta['aborted']})**" if meta.get("aborted") else ""),
        "",
        "| participant | req/s | p50 ms | p99 ms | CPU µs/req | PSS MiB | upstream µs/req | IdP calls "
        "| other load | req/s per round | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results if r.probe is None]
    probes = [r for r in results if r.probe is not None]
    if probes:
        lines += [
            "",
            "| cold cache | concurrent first uses | statuses | introspection calls per round | allowed "
            "| burst ms | status |",
            "| --- | ---: | --- | --- | ---: | ---: | --- |",
        ]
        for r in probes:
            p = r.probe or {}
            status = r.status if not r.problems else f"{r.status}: " + "; ".join(r.problems)
            lines.append(
                f"| {r.title} | {p.get('concurrent')} | {p.get('statuses')} | "
                f"{' / '.join(str(c) for c in p.get('calls_per_round', []))} | {p.get('allowed_calls')} | "
                f"{p.get('burst_ms')} | {status} |"
            )
    lines += [
        "",
        "| ratio | value | CPU/req ratio | req/s ratio implied by CPU/req | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, entry in computed.items():
        lines.append(
            f"| {name} | {_num(entry.get('value'), '{:,.3f}')} "
            f"| {_num(entry.get('cpu_per_request_ratio'), '{:.2f}')} "
            f"| {_num(entry.get('implied_by_cpu'), '{:.3f}')} | {_target(entry)} |"
        )
    lookup = meta.get("route_lookup_ns")
    if lookup:
        lines += [
            "",
            "Route lookup (`RouteTable.match`, best of 5, ns per hit / miss): "
            + ", ".join(f"{int(n):,} routes {v['hit']:.0f} / {v['miss']:.0f}" for n, v in lookup.items())
            + ".",
        ]
    noisy = [r.key for r in results if (r.other_cpu_pct or 0) > 10]
    if noisy:
        lines += [
            "",
            f"**Other jobs used more than 10 % of the machine's CPU during {', '.join(noisy)}** (in the "
            "round kept for details): compare CPU µs/req rather than req/s for those rows.",
        ]
    lines += [
        "",
        "req/s, p50, p99, CPU µs/req and PSS are medians over the rounds (rounds alternate participants). "
        "CPU µs/req: user+system time of the participant's own process tree (master/supervisor and "
        "workers) over the measured run ÷ requests completed; upstream µs/req: the nginx serving the body. "
        "PSS: proportional set size of the whole tree (smaps_rollup) right after the load. IdP calls: "
        "requests the provider received during the measured run (0 = a warm cache answered every check). "
        "Implied by CPU/req: the denominator's CPU per request ÷ the numerator's, the req/s ratio each "
        "would have with the machine to itself. Other load: CPU used by processes outside the benchmark.",
        "",
    ]
    for r in results:
        if r.status != "ok" and r.log_tail:
            lines += [f"### {r.key}: log tail", "", "```", r.log_tail[-2500:].rstrip(), "```", ""]
    return "\n".join(lines)
