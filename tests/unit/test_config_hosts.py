"""Config for several hosts and forward-auth (DESIGN §8): cookie_domain, allowed_redirect_hosts, session
routes on hosts the cookie reaches, and routes without an upstream; each error with its YAML path."""

from __future__ import annotations

import pytest
import yaml

from gateway.config import parse_config
from gateway.errors import ConfigError

KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"


def config(sessions: dict[str, object], routes: list[dict[str, object]], public_url: str) -> str:
    return yaml.safe_dump(
        {
            "server": {"public_url": public_url},
            "providers": {
                "main": {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "s"}
            },
            "sessions": {"store": "memory", "encryption_key": KEY, **sessions},
            "routes": routes,
        }
    )


def session_route(
    name: str, host: str | None, upstream: str | None = "http://127.0.0.1:3000"
) -> dict[str, object]:
    route: dict[str, object] = {
        "name": name,
        "match": {"path_prefix": "/", **({"host": host} if host else {})},
        "auth": {"mode": "session", "provider": "main"},
    }
    if upstream:
        route["upstream"] = upstream
    return route


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return [f"{p.path}: {p.message}" for p in info.value.problems]


def test_several_hosts_config_is_valid_and_normalised() -> None:
    cfg = parse_config(
        config(
            {"cookie_domain": ".Example.com", "allowed_redirect_hosts": ["App.example.com", "*.example.com"]},
            [
                session_route("a", "app.example.com"),
                session_route("b", "b.example.com"),
                session_route("c", None),
            ],
            "https://app.example.com",
        ),
        env={},
    )
    assert cfg.sessions.cookie_domain == "example.com"
    assert cfg.sessions.allowed_redirect_hosts == ["app.example.com", "*.example.com"]


def test_session_route_on_a_host_the_cookie_never_reaches_is_an_error() -> None:
    """Login loop by config: a session route on another host without cookie_domain can never log in."""
    found = problems(
        config(
            {},
            [session_route("a", "app.example.com"), session_route("b", "b.example.com")],
            "https://app.example.com",
        )
    )
    assert len(found) == 1
    assert found[0].startswith("routes[1].match.host: a session route on 'b.example.com'")


def test_session_route_outside_cookie_domain_is_an_error() -> None:
    found = problems(
        config(
            {"cookie_domain": "example.com"},
            [
                session_route("a", "app.example.com"),
                session_route("b", "b.other.com"),
                session_route("c", "badexample.com"),
            ],
            "https://app.example.com",
        )
    )
    assert [p.split(":")[0] for p in found] == ["routes[1].match.host", "routes[2].match.host"]


def test_cookie_domain_must_cover_public_url() -> None:
    found = problems(
        config({"cookie_domain": "example.org"}, [session_route("a", None)], "https://app.example.com")
    )
    assert found == [
        "sessions.cookie_domain: must be server.public_url's host 'app.example.com' or a parent domain of it"
    ]


@pytest.mark.parametrize(
    "bad", ["127.0.0.1", "com", "https://example.com", "example.com:443", "ex ample.com", "*.example.com"]
)
def test_bad_cookie_domains(bad: str) -> None:
    found = problems(config({"cookie_domain": bad}, [session_route("a", None)], "https://app.example.com"))
    assert found[0].startswith("sessions.cookie_domain")


@pytest.mark.parametrize(
    "bad", ["https://a.example.com", "a.example.com/x", "*example.com", "*.", "a..b", "a.example.com:80"]
)
def test_bad_redirect_hosts(bad: str) -> None:
    found = problems(
        config({"allowed_redirect_hosts": [bad]}, [session_route("a", None)], "https://app.example.com")
    )
    assert found[0].startswith("sessions.allowed_redirect_hosts[0]")


def test_route_without_upstream_is_valid() -> None:
    cfg = parse_config(
        config({}, [session_route("a", None, upstream=None)], "https://app.example.com"), env={}
    )
    assert cfg.routes[0].upstream is None


def test_public_and_bearer_routes_on_other_hosts_need_no_cookie_domain() -> None:
    routes: list[dict[str, object]] = [
        session_route("a", "app.example.com"),
        {
            "name": "p",
            "match": {"host": "b.other.com"},
            "upstream": "http://127.0.0.1:1",
            "auth": {"mode": "public"},
        },
    ]
    assert (
        parse_config(config({}, routes, "https://app.example.com"), env={}).routes[1].match.host
        == "b.other.com"
    )
