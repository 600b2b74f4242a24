"""What oauth2-proxy users type: Go durations, `email_domains: ["*"]`, "did you mean" for typos."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.config.schema import AuthConfig, parse_duration
from gateway.config.suggest import suggestion, valid_keys
from gateway.errors import ConfigError
from gateway.models import Principal
from gateway.policy import RoutePolicy, evaluate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2m0.5s", 120.5),
        ("1h0m0s", 3600),
        ("1.5h", 5400),
        ("300us", 0.0003),
        ("0s", 0),
        ("1d12h", 129600),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["1h30", "1h 30m", "h", "1x", "+1s", "-1h30m", "1s" * 40, "1e3s"])
def test_go_duration_mistakes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from(sorted(_UNITS))), min_size=1, max_size=4))
def test_go_duration_terms_add_up(terms: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in terms)
    expected = sum(n * _UNITS[unit] for n, unit in terms)
    assert parse_duration(text).total_seconds() == pytest.approx(expected)


def test_go_durations_in_a_config() -> None:
    cfg = parse_config(
        'server: {upstream_timeout: "1m30s", shutdown_grace: "250ms"}\n'
        "routes: [{name: r, upstream: 'http://127.0.0.1:1', auth: {mode: public}}]\n",
        env={},
    )
    assert cfg.server.upstream_timeout == timedelta(seconds=90)
    assert cfg.server.shutdown_grace == timedelta(milliseconds=250)


def _policy(domains: list[str]) -> RoutePolicy:
    auth = {"mode": "bearer", "provider": "p", "require": {"email_domains": domains}}
    return RoutePolicy.from_config(AuthConfig.model_validate(auth))


@pytest.mark.parametrize(
    ("email", "verified", "allowed"),
    [
        ("a@example.com", True, True),
        ("b@elsewhere.org", None, True),
        ("a@example.com", False, False),  # unverified addresses still never pass
        ("no-at-sign", True, False),
        (None, True, False),  # "*" means any domain, not "no e-mail needed"
    ],
)
def test_email_domains_star_means_any_domain(email: str | None, verified: bool | None, allowed: bool) -> None:
    claims = {} if verified is None else {"email_verified": verified}
    who = Principal(subject="alice", source="jwt", email=email, claims=claims)
    assert evaluate(_policy(["*"]), who, "GET").allowed is allowed


def test_email_domains_star_beside_domains_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            "providers: {p: {issuer: 'http://127.0.0.1:9', client_id: c}}\n"
            "routes: [{name: r, upstream: 'http://127.0.0.1:1', auth: {mode: bearer, provider: p,"
            " audience: api, require: {email_domains: ['*', example.com]}}}]\n",
            env={},
        )
    assert any(
        p.path == "routes[0].auth.require.email_domains" and "list it alone" in p.message
        for p in err.value.problems
    )


@pytest.mark.parametrize(
    ("loc", "nearest"),
    [
        (("server", "upstream_timout"), "upstream_timeout"),
        (("server", "trusted_proxy"), "trusted_proxies"),
        (("providers", "main", "isuer"), "issuer"),
        (("providers", "main", "endpoints", "jwks_uri"), "jwks"),
        (("routes", 3, "auth", "scope"), "scopes"),
        (("routes", 0, "match", "path-prefix"), "path_prefix"),
        (("sesions",), "sessions"),
        (("routes", 0, "auth", "zzzzzz"), None),
    ],
)
def test_unknown_keys_suggest_the_nearest(loc: tuple[str | int, ...], nearest: str | None) -> None:
    assert suggestion(loc) == nearest


def test_valid_keys_follow_aliases() -> None:
    assert "validate" in valid_keys(("routes", 0, "auth"))  # the YAML spelling, not the Python name


def test_did_you_mean_in_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            "server: {upstream_timout: 30s}\n"
            "routes: [{name: r, upstream: 'http://127.0.0.1:1', auth: {mode: public}}]\n",
            env={},
        )
    messages = {p.path: p.message for p in err.value.problems}
    assert messages["server.upstream_timout"] == "unknown key (did you mean 'upstream_timeout'?)"
