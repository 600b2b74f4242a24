"""The config loader: substitution, every error with its YAML path and line, cross-field rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.config.schema import parse_duration
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
ENV = {"TOKENGATE_CLIENT_SECRET": "s", "TOKENGATE_SESSION_KEY": KEY}

MINIMAL = """
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: http://127.0.0.1:3000
    auth: {mode: public}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    "name", ["gateway.yaml", "public-api.yaml", "bearer-api.yaml", "browser-app.yaml", "demo.yaml"]
)
def test_examples_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "config" / name, env=ENV)
    assert cfg.routes


def test_defaults() -> None:
    cfg = parse_config(MINIMAL, env={})
    assert cfg.server.listen == "0.0.0.0:8080"
    assert cfg.server.upstream_timeout == timedelta(seconds=30)
    assert cfg.sessions.idle_timeout == timedelta(minutes=30)
    assert cfg.routes[0].auth.validation == "jwt"


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("15m", 900), ("12h", 43200), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["30", 30, "30x", "", "-1s", None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_env_substitution_and_defaults() -> None:
    text = MINIMAL.replace("http://127.0.0.1:3000", "${UP:-http://127.0.0.1:4000}")
    assert parse_config(text, env={}).routes[0].upstream == "http://127.0.0.1:4000"
    assert (
        parse_config(text, env={"UP": "http://127.0.0.1:5000"}).routes[0].upstream == "http://127.0.0.1:5000"
    )


def test_unset_variable_names_it_with_path_and_line() -> None:
    text = MINIMAL.replace("http://127.0.0.1:3000", "${NOT_SET_ANYWHERE}")
    assert problems(text) == [
        "routes[0].upstream (line 5): environment variable NOT_SET_ANYWHERE is not set and has no default"
    ]


def test_substituted_values_cannot_inject_yaml() -> None:
    text = MINIMAL.replace("http://127.0.0.1:3000", "${UP}")
    found = problems(text, {"UP": "x\n    bogus: 1"})
    assert found
    assert found[0].startswith("routes[0].upstream (line 5): expected an http")


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems((ROOT / "tests/data/broken/types-and-refs.yaml").read_text())
    assert found == [
        "providers.main.client_secret (line 8): environment variable TOKENGATE_TEST_UNSET_SECRET is not set "
        "and has no default",
        "server.upstream_timeout (line 3): expected a duration such as 500ms, 30s, 15m or 12h, got 30",
        "providers.main.issuer (line 6): expected an http:// or https:// URL, got 'idp.example.com'",
        "routes[0].match.path_prefix (line 11): must start with '/'",
        "routes[0].upstream (line 12): expected an http:// or https:// URL, got 'ftp://127.0.0.1:3000'",
        "routes[0].auth.validate (line 13): Input should be 'introspection' or 'jwt'",
    ]


def test_unknown_keys() -> None:
    found = problems((ROOT / "tests/data/broken/unknown-keys.yaml").read_text())
    assert found == [
        "server.lisen_backlog (line 3): unknown key",
        "routes[0].auth.scope (line 8): unknown key (did you mean 'scopes'?)",
    ]


def test_cross_field_rules() -> None:
    found = problems((ROOT / "tests/data/broken/cross-field.yaml").read_text())
    assert sorted(found) == [
        "routes[0].auth.provider (line 12): unknown provider 'mian' (providers: main)",
        "routes[1].auth.scopes_by_method (line 16): give either scopes or scopes_by_method",
        "routes[1].match.path_prefix (line 14): /oauth2/ is reserved for the gateway",
        "routes[1].name (line 13): duplicate route name 'app' (also routes[0])",
        "server.public_url: required when a route uses sessions",
        "sessions.encryption_key: required when a route uses sessions",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[1, 2", "invalid YAML"),
        ("- a\n- b", "the file must hold a YAML mapping"),
        ("routes: []", "routes (line 1): List should have at least 1 item"),
    ],
)
def test_shape_errors(snippet: str, expected: str) -> None:
    found = problems(snippet)
    assert len(found) == 1
    assert expected in found[0]


def test_secrets_are_not_echoed() -> None:
    text = MINIMAL + "sessions:\n  encryption_key: not-a-valid-key-but-secret\n"
    found = problems(text)
    assert found == ["sessions.encryption_key (line 8): must decode to 32 bytes, got 19"]
    assert "not-a-valid" not in "".join(found)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(ROOT / "config" / "does-not-exist.yaml")


def test_cross_field_problems_come_with_schema_errors() -> None:
    """All at once: a type error in one route does not hide an unknown provider in another."""
    text = """
providers:
  main: {issuer: "https://idp.example.com", client_id: gw, client_secret: s}
routes:
  - name: broken
    upstream: "ftp://nope"
    auth: {mode: public}
  - name: api
    match: {path_prefix: /api}
    upstream: http://127.0.0.1:3000
    auth: {mode: bearer, provider: mian, audience: api}
  - name: api
    match: {path_prefix: /other}
    upstream: http://127.0.0.1:3000
    auth: {mode: public}
"""
    assert problems(text) == [
        "routes[0].upstream (line 6): expected an http:// or https:// URL, got 'ftp://nope'",
        "routes[1].auth.provider (line 11): unknown provider 'mian' (providers: main)",
        "routes[2].name (line 12): duplicate route name 'api' (also routes[1])",
    ]
