"""The runtime compiled from one config: route table, policies, provider clients, session store.

Built once per (re)load and swapped as a whole (Pomerium's pattern): a request holds the runtime it
started with until it ends, so a reload never changes the rules under a request in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import aiohttp
from yarl import URL

from gateway.config.schema import ConfigParts, GatewayConfig, RouteConfig
from gateway.oidc import ProviderClient
from gateway.policy import RoutePolicy
from gateway.routing import RouteSpec, RouteTable
from gateway.sessions import open_store
from gateway.web.headers import TrustedProxies

if TYPE_CHECKING:
    from gateway.sessions import SessionStore

AuthMode = Literal["public", "bearer", "session", "bearer_or_session"]
LOGIN_COOKIE_INFIX = "_login_"


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """One route with everything a request needs precomputed."""

    name: str
    mode: AuthMode
    upstream: URL
    upstream_base: str  # scheme://host:port[/base] without trailing slash
    policy: RoutePolicy
    provider: ProviderClient | None
    validation: Literal["jwt", "introspection"]
    audience: str | None
    strip_prefix: bool
    preserve_host: bool
    forward_token: bool
    allow_query_token: bool
    allow_form_token: bool

    @classmethod
    def build(cls, cfg: RouteConfig, providers: dict[str, ProviderClient]) -> CompiledRoute:
        upstream = URL(cfg.upstream)
        auth = cfg.auth
        return cls(
            name=cfg.name,
            mode=auth.mode,
            upstream=upstream,
            upstream_base=str(upstream).rstrip("/"),
            policy=RoutePolicy.from_config(auth),
            provider=providers[auth.provider] if auth.provider else None,
            validation=auth.validation,
            audience=auth.audience,
            strip_prefix=cfg.strip_prefix,
            preserve_host=cfg.preserve_host,
            forward_token=auth.forward_token,
            allow_query_token=auth.allow_query_token,
            allow_form_token=auth.allow_form_token,
        )

    @property
    def uses_bearer(self) -> bool:
        return self.mode in ("bearer", "bearer_or_session")

    @property
    def uses_session(self) -> bool:
        return self.mode in ("session", "bearer_or_session")


@dataclass(frozen=True, slots=True)
class CookieSettings:
    name: str
    secure: bool
    login_prefix: str
    names: frozenset[str] = frozenset()  # the cookies never forwarded upstream; built once

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset({self.name}))


def provider_needs(cfg: GatewayConfig, name: str) -> frozenset[str]:
    """Which endpoints the routes using a provider need (decides whether discovery is required)."""
    needs: set[str] = set()
    provider = cfg.providers[name]
    for route in cfg.routes:
        auth = route.auth
        if auth.provider != name or auth.mode == "public":
            continue
        if auth.mode in ("bearer", "bearer_or_session"):
            needs.add("jwks" if auth.validation == "jwt" else "introspection")
        if auth.mode in ("session", "bearer_or_session"):
            needs.update({"authorization", "token"})
            if "openid" in provider.scopes:
                needs.add("jwks")
            else:
                needs.add("userinfo" if provider.endpoints.userinfo else "introspection")
    return frozenset(needs)


@dataclass(slots=True)
class Runtime:
    cfg: GatewayConfig
    routes: RouteTable[CompiledRoute]
    providers: dict[str, ProviderClient]
    store: SessionStore | None
    trusted: TrustedProxies
    http: aiohttp.ClientSession
    cookies: CookieSettings
    redirect_uri: str | None
    upstream_timeout: aiohttp.ClientTimeout
    clock: Callable[[], float] = time.time
    compiled: tuple[CompiledRoute, ...] = field(default=())

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()  # idempotent: a provider taken over from the last runtime runs on

    async def close(self, successor: Runtime | None = None) -> None:
        """Close what this runtime owns, except what ``successor`` took over on a reload."""
        kept = {id(p) for p in successor.providers.values()} if successor is not None else set()
        for provider in self.providers.values():
            if id(provider) not in kept:
                await provider.close()
        if self.store is not None and (successor is None or successor.store is not self.store):
            await self.store.close()

    @property
    def session_provider(self) -> ProviderClient | None:
        """The provider used for logins that no route names (the first session route's)."""
        for route in self.compiled:
            if route.uses_session and route.provider is not None:
                return route.provider
        return None


def build_runtime(
    cfg: GatewayConfig,
    http: aiohttp.ClientSession,
    *,
    clock: Callable[[], float] = time.time,
    store: SessionStore | None = None,
    previous: Runtime | None = None,
) -> Runtime:
    """Compile a validated config; opens no connection (start() does). On a reload, ``previous``
    lends what did not change: provider clients (metadata, JWKS, token caches) and the session store
    (a memory store's sessions, Redis pools), so a reload costs nothing that a restart would."""
    if previous is not None and store is None and previous.cfg.sessions == cfg.sessions:
        store = previous.store
    parts = ConfigParts.of(cfg)
    if store is None and (parts.uses_sessions or parts.shares_introspection_cache):
        store = open_store(cfg.sessions, clock=clock)
    providers: dict[str, ProviderClient] = {}
    for name, pcfg in cfg.providers.items():
        needs = provider_needs(cfg, name)
        old = previous.providers.get(name) if previous is not None else None
        if (
            old is not None
            and old.cfg == pcfg
            and old.needs == needs
            and previous is not None
            and previous.store is store
        ):
            providers[name] = old
        else:
            providers[name] = ProviderClient(name, pcfg, http, needs=needs, shared_cache=store, clock=clock)
    compiled = tuple(CompiledRoute.build(r, providers) for r in cfg.routes)
    table = RouteTable(
        (
            RouteSpec(route, r.match.path_prefix, r.match.host, r.match.methods)
            for route, r in zip(compiled, cfg.routes, strict=True)
        ),
        case_insensitive=cfg.server.case_insensitive_paths,
    )
    public_url = cfg.server.public_url
    secure = bool(public_url and public_url.startswith("https://"))
    name = ("__Host-" if secure else "") + cfg.sessions.cookie_name
    timeout_s = cfg.server.upstream_timeout.total_seconds()
    return Runtime(
        cfg=cfg,
        routes=table,
        providers=providers,
        store=store,
        trusted=TrustedProxies(cfg.server.trusted_proxies),
        http=http,
        cookies=CookieSettings(name=name, secure=secure, login_prefix=name + LOGIN_COOKIE_INFIX),
        redirect_uri=f"{public_url}/oauth2/callback" if public_url else None,
        upstream_timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=min(timeout_s, 10.0), sock_read=timeout_s
        ),
        clock=clock,
        compiled=compiled,
    )
