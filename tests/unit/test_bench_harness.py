"""The benchmark harness's pure parts: py-spy sample attribution and the Apache peers' authorisation
config (a peer that authorises less than tokengate would make the comparison meaningless)."""

from __future__ import annotations

from pathlib import Path

from bench.apache import apache_conf
from bench.profile import classify


def _frame(func: str, path: str) -> str:
    return f"{func} ({path}:1)"


def test_samples_go_to_the_nearest_component_from_the_leaf() -> None:
    access = [
        _frame("error_middleware", "/repo/gateway/web/middleware.py"),
        _frame("write_access_log", "/repo/gateway/web/middleware.py"),
        _frame("dumps", "/usr/lib/python3.11/json/__init__.py"),
    ]
    metrics = [
        *access[:2],
        _frame("observe", "/venv/lib/python3.11/site-packages/prometheus_client/metrics.py"),
    ]
    upstream = [
        _frame("proxy", "/repo/gateway/web/proxy.py"),
        _frame("_request", "/venv/lib/python3.11/site-packages/aiohttp/client.py"),
    ]
    assert classify(access) == "access log (format + write)"
    assert classify(metrics) == "Prometheus metrics"
    assert classify(upstream) == "upstream ClientSession"
    assert classify(["<gc>"]) == "other (gc, interpreter, start-up)"


def test_mod_auth_openidc_checks_scope_within_a_list_and_the_audience(tmp_path: Path) -> None:
    """A peer that accepted any valid token (no scope, no aud) would be measured doing less work."""
    conf = apache_conf(tmp_path, 1, 2, "openidc-jwt", "https://127.0.0.1:3", "api")
    assert "<RequireAll>" in conf
    assert "Require valid-user" in conf
    assert 'Require claim "scope~(^| )api:read( |$)"' in conf
    assert "Require claim aud:api" in conf
    assert "OIDCCacheEncrypt On" in conf
    assert "MaxKeepAliveRequests 0" in conf


def test_mod_oauth2_checks_scope_and_audience(tmp_path: Path) -> None:
    conf = apache_conf(tmp_path, 1, 2, "oauth2-jwt", "https://127.0.0.1:3", "api")
    assert "Require oauth2_claim aud:api" in conf
    assert "%{ENV:OAUTH2_CLAIM_scope} =~ /(^| )api:read( |$)/" in conf
