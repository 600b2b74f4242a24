"""``tokengate explain`` shows what the identity headers, claim headers and the assertion's claims would
carry (golden outputs in tests/data/explain/identity-*.txt; UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import json
import os

import pytest

from tests.functional.test_explain import ENV, GOLDEN, run_explain
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
