"""``tokengate explain`` shows what the identity headers, claim headers and the assertion's claims would
carry (golden outputs in tests/data/explain/identity-*.txt; UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.functional.test_explain import ENV, GOLDEN, ROOT, run_explain
from tests.support.assertion import new_signing_pem

IDENTITY_ENV = {**ENV, "TOKENGATE_SIGNING_KEY": new_signing_pem()}
ALICE = {
    "sub": "alice",
    "scope": "api:read",
    "email": "alice@example.com",
    "groups": ["admins", "staff"],
    "tenant": "acme\r\nX-Admin: 1",
    "realm_access": {"roles": ["ops"]},
}
CASES = [
    ("orders", "/orders/7", ALICE, 0),
    ("verdict-only", "/fa/7", {"sub": "bob"}, 0),
    ("comma-group", "/orders/7", {**ALICE, "groups": ["staff,admins"]}, 1),
]


@pytest.mark.parametrize(("case", "url", "claims", "code"), CASES, ids=[c[0] for c in CASES])
def test_explain_identity_golden(case: str, url: str, claims: dict[str, object], code: int) -> None:
    args = ["--config", "tests/data/identity/gateway.yaml", "GET", url, "--claims", json.dumps(claims)]
    result = run_explain(*args, env=IDENTITY_ENV)
    assert result.returncode == code, result.stdout + result.stderr
    golden = GOLDEN / f"identity-{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_check_config_finds_a_bad_signing_key_offline() -> None:
    """check-config: exit 2 with the YAML path; the (wrong) key text is never echoed."""
    bad = {
        **IDENTITY_ENV,
        "TOKENGATE_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", "tests/data/identity/gateway.yaml"],
        capture_output=True,
        text=True,
        env=bad,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "server.signing_key" in result.stderr
    assert "c2VjcmV0" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", "tests/data/identity/gateway.yaml"],
        capture_output=True,
        text=True,
        env=IDENTITY_ENV,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
