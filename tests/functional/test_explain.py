"""``tokengate explain`` on every example in config/, against golden outputs (UPDATE_GOLDEN=1 rewrites
them), plus --token verified against the real provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.idp import IdP

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "explain"
ENV = {
    **os.environ,
    "TOKENGATE_CLIENT_SECRET": "s",
    "TOKENGATE_SESSION_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
}
ALICE = {"sub": "alice", "scope": "api:read api:write", "groups": ["admins"], "email": "alice@example.com"}
MCP_CALLER = {"sub": "alice", "scope": "mcp:tools", "aud": "https://mcp.example.com/mcp"}
BOB = {"sub": "bob", "scope": "api:read", "groups": ["staff"], "email": "bob@example.org"}

CASES = [
    ("gateway", "api-allowed", "GET", "https://api.example.com/api/orders?x=1", ALICE, 0),
    ("gateway", "api-claims-denied", "POST", "https://api.example.com/api/orders", BOB, 1),
    ("gateway", "api-no-credentials", "GET", "https://api.example.com/api/orders", None, 1),
    ("gateway", "other-host-falls-to-app", "GET", "https://www.example.com/api/orders", ALICE, 0),
    ("gateway", "public-status", "GET", "/status/live", None, 0),
    ("gateway", "path-attack", "GET", "/status/..%2Fapi", None, 1),
    ("public-api", "docs", "GET", "/docs/index.html", None, 0),
    ("public-api", "no-route", "GET", "/admin", None, 1),
    ("bearer-api", "read-allowed", "GET", "/api/orders/7", BOB, 0),
    ("bearer-api", "write-scope-missing", "POST", "/api/orders", BOB, 1),
    ("bearer-api", "write-allowed", "DELETE", "/api/orders/7", ALICE, 0),
    ("browser-app", "admin-denied", "GET", "/admin/users", BOB, 1),
    ("browser-app", "admin-allowed", "GET", "/admin/users", ALICE, 0),
    ("browser-app", "static", "GET", "/static/app.js", None, 0),
    ("demo", "api-whoami", "GET", "/api/whoami", ALICE, 0),
    (
        "mcp-server",
        "metadata",
        "GET",
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        None,
        0,
    ),
    ("mcp-server", "token-for-the-resource", "POST", "/mcp", MCP_CALLER, 0),
    ("mcp-server", "metadata-unknown", "GET", "/.well-known/oauth-protected-resource/other", None, 1),
    (
        "mcp-server",
        "token-for-another-resource",
        "POST",
        "/mcp",
        {**MCP_CALLER, "aud": "https://other.example/api"},
        1,
    ),
]


def run_explain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "explain", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("config", "case", "method", "url", "claims", "code"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_explain_golden(
    config: str, case: str, method: str, url: str, claims: dict[str, object] | None, code: int
) -> None:
    args = ["--config", f"config/{config}.yaml", method, url]
    if claims is not None:
        args += ["--claims", json.dumps(claims)]
    result = run_explain(*args)
    assert result.returncode == code, result.stdout + result.stderr
    golden = GOLDEN / f"{config}-{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()


def test_explain_config_error_exits_2() -> None:
    result = run_explain("--config", "tests/data/broken/cross-field.yaml", "GET", "/")
    assert result.returncode == 2
    assert "unknown provider 'mian'" in result.stderr


def test_explain_bad_claims_json() -> None:
    result = run_explain("--config", "config/public-api.yaml", "GET", "/", "--claims", "[1]")
    assert result.returncode == 64  # a usage error, not a config error (DESIGN §8)
    assert "JSON object" in result.stderr


async def test_explain_with_a_real_token(idp_jwt: IdP, idp: IdP, tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(f"""
providers:
  jwt: {{issuer: "{idp_jwt.issuer}", client_id: gw, client_secret: gw-secret}}
  opaque:
    issuer: "{idp.issuer}"
    client_id: gw
    client_secret: gw-secret
    introspection_client_id: introspector
    introspection_client_secret: introspector-secret
routes:
  - name: jwt-api
    match: {{path_prefix: /jwt}}
    upstream: http://127.0.0.1:9
    auth: {{mode: bearer, provider: jwt, validate: jwt, audience: api, scopes: [api:read],
            require: {{claims: {{groups: [admins]}}}}}}
  - name: opaque-api
    match: {{path_prefix: /opaque}}
    upstream: http://127.0.0.1:9
    auth: {{mode: bearer, provider: opaque, validate: introspection, audience: api, scopes: [api:read]}}
""")
    alice = await idp_jwt.obtain_tokens("alice", "openid api:read")
    bob = await idp_jwt.obtain_tokens("bob", "openid api:read")
    # Opaque tokens carry aud only when the authorization request names the resource (RFC 8707).
    opaque = await idp.obtain_tokens("bob", "openid api:read", extra={"resource": idp.resource_indicator})
    result = run_explain("--config", str(config), "GET", "/jwt/x", "--token", alice["access_token"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token:       valid (jwt): sub alice" in result.stdout
    result = run_explain("--config", str(config), "GET", "/jwt/x", "--token", bob["access_token"])
    assert result.returncode == 1
    assert "- claim:groups" in result.stdout
    result = run_explain("--config", str(config), "GET", "/opaque/x", "--token", opaque["access_token"])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_explain("--config", str(config), "GET", "/opaque/x", "--token", "not-a-real-token")
    assert result.returncode == 1
    assert "DENY (401 invalid_token)" in result.stdout
    assert "not-a-real-token" not in result.stdout + result.stderr
