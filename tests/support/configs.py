"""Every gateway config the tests build, from one set of parts: a provider entry for the real test provider
(or a fake's issuer), public/bearer/session routes on a test upstream, and the whole-config builders the
tiers share (login, bearer, DPoP, Redis-session fault configs, and ProviderConfig models for the fakes)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from devtools.idp import IdP
from gateway.config.schema import ProviderConfig
from tests.support.upstream import Upstream

#: One session encryption key for every test config (32 bytes, base64url).
SESSION_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
#: The default clients of the test provider and of the fakes (devtools/idp/settings.py).
CLIENT_ID = "gw"
CLIENT_SECRET = "gw-secret"
#: The public URL of the DPoP tests' gateway (the htu of their proofs).
DPOP_PUBLIC_URL = "https://api.example.test"
LOGIN_SCOPES = ["openid", "profile", "email", "offline_access", "api:read"]


class ProviderLike(Protocol):
    """What the builders read of a provider: the test provider (devtools.idp.IdP) or a stand-in for a
    fake or a dead one."""

    @property
    def issuer(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def introspection_client_id(self) -> str: ...
    @property
    def introspection_client_secret(self) -> str: ...
    @property
    def resource(self) -> str: ...


# ---- parts -----------------------------------------------------------------------------------------------


def provider(
    issuer: str,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    introspection: bool = True,
    timeout: str = "2s",
    **extra: Any,
) -> dict[str, Any]:
    """A ``providers.<name>`` entry; ``introspection`` adds the test provider's introspector client."""
    entry: dict[str, Any] = {"issuer": issuer, "client_id": client_id, "client_secret": client_secret}
    if introspection:
        entry["introspection_client_id"] = "introspector"
        entry["introspection_client_secret"] = "introspector-secret"
    return {**entry, "timeout": timeout, **extra}


def idp_provider(idp: ProviderLike, *, timeout: str = "2s", **extra: Any) -> dict[str, Any]:
    """The ``providers.<name>`` entry of a running test provider, with its clients."""
    return {
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "introspection_client_id": idp.introspection_client_id,
        "introspection_client_secret": idp.introspection_client_secret,
        "timeout": timeout,
        **extra,
    }


def route(name: str, prefix: str, upstream: str, auth: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": prefix}, "upstream": upstream, "auth": auth, **extra}


def public_route(name: str, prefix: str, upstream: str, **extra: Any) -> dict[str, Any]:
    return route(name, prefix, upstream, {"mode": "public"}, **extra)


def bearer_route(name: str, prefix: str, upstream: Upstream, **auth: Any) -> dict[str, Any]:
    return route(name, prefix, upstream.url, {"mode": "bearer", "provider": "main", **auth})


def session_route(upstream: Upstream, *, name: str = "app", prefix: str = "/", **auth: Any) -> dict[str, Any]:
    """A session route on the test upstream (no bearer routes: those must name an audience)."""
    return route(name, prefix, upstream.url, {"mode": "session", "provider": "main", **auth})


def gateway(
    routes: list[dict[str, Any]],
    providers: dict[str, dict[str, Any]],
    *,
    server: dict[str, Any] | None = None,
    sessions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole config; ``server`` defaults to listening on 127.0.0.1:8080 (tests serve it elsewhere)."""
    cfg: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:8080", **(server or {})},
        "providers": providers,
        "routes": routes,
    }
    if sessions is not None:
        cfg["sessions"] = sessions
    return cfg


# ---- the shared whole-config builders ---------------------------------------------------------------------


def session_config(
    idp: IdP,
    upstream: Upstream,
    port: int,
    *,
    store: str = "memory",
    redis_url: str | None = None,
    routes: list[dict[str, Any]] | None = None,
    provider: dict[str, Any] | None = None,
    sessions: dict[str, Any] | None = None,
    public_url: str | None = None,
) -> dict[str, Any]:
    """The login tests' gateway on ``port``: /public, /api (bearer or session), /scoped (session with
    api:write) and / (session), unless ``routes`` replaces them."""
    prov = {**idp_provider(idp, timeout="3s"), "scopes": LOGIN_SCOPES, **(provider or {})}
    sess: dict[str, Any] = {
        "store": store,
        "encryption_key": SESSION_KEY,
        "refresh_before": "0s",
        **(sessions or {}),
    }
    if redis_url:
        sess["redis_url"] = redis_url
    default_routes = [
        public_route("public", "/public", upstream.url),
        route(
            "api",
            "/api",
            upstream.url,
            {
                "mode": "bearer_or_session",
                "provider": "main",
                "validate": "introspection",
                "audience": idp.resource,
            },
        ),
        session_route(upstream, name="scoped", prefix="/scoped", scopes=["api:write"]),
        session_route(upstream, name="app", prefix="/"),
    ]
    server = {"listen": f"127.0.0.1:{port}", "public_url": public_url or f"http://127.0.0.1:{port}"}
    return gateway(routes or default_routes, {"main": prov}, server=server, sessions=sess)


def bearer_config(
    idp: ProviderLike, upstream: Upstream, *, validate: str = "jwt", **provider: Any
) -> dict[str, Any]:
    """/public (public), /api (bearer, api:read), /write (bearer, api:write) on one real provider."""
    auth: dict[str, Any] = {"validate": validate, "audience": idp.resource, "scopes": ["api:read"]}
    routes = [
        public_route("public", "/public", upstream.url),
        bearer_route("api", "/api", upstream, **auth),
        bearer_route("write", "/write", upstream, **{**auth, "scopes": ["api:write"]}),
    ]
    return gateway(routes, {"main": idp_provider(idp, **provider)})


def issuer_config(issuer: str, routes: list[dict[str, Any]], **provider_extra: Any) -> dict[str, Any]:
    """``routes`` on one provider known only by its issuer URL (the test provider's default clients)."""
    return gateway(routes, {"main": provider(issuer, **provider_extra)})


def dpop_config(
    idp: IdP,
    upstream: Upstream,
    validate: str,
    *,
    public_url: str = DPOP_PUBLIC_URL,
    redis_url: str | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Routes /api (dpop: allowed, the default), /strict (required) and /legacy (off)."""
    auth = {"validate": validate, "audience": "api", "scopes": ["api:read"]}
    routes = [
        bearer_route("api", "/api", upstream, **auth),
        bearer_route("strict", "/strict", upstream, **auth, dpop="required"),
        bearer_route("legacy", "/legacy", upstream, **auth, dpop="off"),
    ]
    sessions: dict[str, Any] = {"store": "memory"}
    if redis_url is not None:
        sessions = {"store": "redis", "redis_url": redis_url, "encryption_key": SESSION_KEY}
    return gateway(
        routes,
        {"main": idp_provider(idp)},
        server={"public_url": public_url, **(server or {})},
        sessions=sessions,
    )


def session_gateway_config(issuer: str, upstream: Upstream, redis_url: str, **server: Any) -> dict[str, Any]:
    """One session route on ``/app`` backed by Redis at ``redis_url``; the provider is only needed at
    login and refresh, which these sessions (valid for an hour) never reach."""
    sessions = {
        "store": "redis",
        "redis_url": redis_url,
        "encryption_key": SESSION_KEY,
        "key_prefix": "tg-faults:",
    }
    return gateway(
        [session_route(upstream, name="app", prefix="/app")],
        {"main": provider(issuer, introspection=False, timeout="1s")},
        server={"public_url": "http://127.0.0.1:8080", **server},
        sessions=sessions,
    )


def provider_config(issuer: str, **overrides: Any) -> ProviderConfig:
    """A validated ProviderConfig for a ProviderClient against a fake provider (short timeouts)."""
    values: dict[str, Any] = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "offline_access"],
        "timeout": timedelta(seconds=1.5),  # under the fakes' 3 s hangs, far over a busy loopback answer
        "jwt_leeway": timedelta(seconds=30),
    }
    values.update(overrides)
    return ProviderConfig.model_validate(values)
