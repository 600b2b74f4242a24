"""The rule book is what the validator enforces and what the reference lists: problems carry the
records' messages at concrete paths, and every documented rule is in the generated table."""

from __future__ import annotations

import importlib

import pytest

from gateway.config import parse_config
from gateway.config import rulebook as rb
from gateway.errors import ConfigError
from tools.configref import rules_table

KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
BROKEN = """
server: {listen: "127.0.0.1:8080", admin_listen: "127.0.0.1:8080"}
providers:
  main: {issuer: "https://idp.example.com", client_id: gw}
sessions: {idle_timeout: 2h, absolute_timeout: 1h}
routes:
  - name: a
    match: {path_prefix: /oauth2/x}
    upstream: "http://127.0.0.1:9000"
    auth: {mode: public, provider: main, scopes: [x]}
  - name: a
    match: {path_prefix: /oauth2/x/}
    upstream: "http://127.0.0.1:9000"
    auth: {mode: session, provider: nope, scopes: [x], scopes_by_method: {GET: [y]}, allow_query_token: true}
"""


def problems(text: str) -> set[tuple[str, str]]:
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "t.yaml", env={})
    return {(p.path, p.message) for p in refused.value.problems}


def test_the_validator_reports_the_rule_books_messages() -> None:
    found = problems(BROKEN)
    expected = [
        rb.ADMIN_APART.problem("server.admin_listen"),
        rb.IDLE_WITHIN_ABSOLUTE.problem("sessions.idle_timeout"),
        rb.CLIENT_SECRET.problem("providers.main.client_secret"),
        rb.RESERVED_PREFIXES.problem("routes[0].match.path_prefix", "oauth2"),
        rb.PUBLIC_WITHOUT_PROVIDER.problem("routes[0].auth.provider"),
        rb.PUBLIC_WITHOUT_RULES.problem("routes[0].auth"),
        rb.ROUTE_NAMES_UNIQUE.problem("routes[1].name", name="a", other=0),
        rb.ROUTE_MATCHES_UNIQUE.problem("routes[1].match", other=0),
        rb.ROUTE_PROVIDER.problem("routes[1].auth.provider", "unknown", provider="nope", known="main"),
        rb.SCOPES_EXCLUSIVE.problem("routes[1].auth.scopes_by_method"),
        rb.TOKEN_CARRIERS.problem("routes[1].auth"),
        rb.PUBLIC_URL_FOR_SESSIONS.problem("server.public_url"),
        rb.KEY_FOR_SESSIONS.problem("sessions.encryption_key"),
    ]
    assert {(p.path, p.message) for p in expected} <= found
    # the wording is the validator's own (pinned elsewhere too): nothing lost in the move to data
    assert ("routes[1].name", "duplicate route name 'a' (also routes[0])") in found


def test_every_documented_rule_is_in_the_reference_table() -> None:
    table = rules_table()
    for rule in rb.RULES:
        row = "| " + ", ".join(f"`{p}`" for p in rule.paths) + " |"
        if rule.text is None:
            assert rule.messages, f"{rule.paths}: neither documented nor reported"
            continue
        assert row in table, rule.paths
        assert " ".join(rule.text.split()) in table


def test_every_rule_names_a_module_that_exists() -> None:
    for rule in rb.RULES:
        module = importlib.import_module(rule.checked_in)
        assert module.__name__.startswith("gateway.config."), rule.paths
