"""The runtime compiled from one config: route table, policies, provider clients, session store.

Built once per (re)load and swapped as a whole (Pomerium's pattern): a request holds the runtime it
started with until it ends, so a reload never changes the rules under a request in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from gateway.config.rules import ConfigParts
from gateway.config.schema import GatewayConfig, RouteConfig
from gateway.config.trust import ANY_AUDIENCE
from gateway.oidc import ProviderClient
from gateway.routing import RouteSpec, RouteTable
from gateway.runtime.cookies import LOGIN_COOKIE_INFIX, CookieSettings
from gateway.runtime.identity import Identity
from gateway.runtime.metadata import MetadataDocument, documents
from gateway.runtime.proxies import TrustedProxies
from gateway.runtime.route import CompiledRoute
from gateway.sessions import open_store
from gateway.sessions.replay import open_mark_store

if TYPE_CHECKING:
    from gateway.sessions import SessionStore

log = logging.getLogger("tokengate")


def used_providers(cfg: GatewayConfig) -> frozenset[str]:
    """The providers some route authenticates with: only these are ever contacted (DESIGN §7)."""
    return frozenset(r.auth.provider for r in cfg.routes if r.auth.mode != "public" and r.auth.provider)


def audience_warnings(cfg: GatewayConfig) -> None:
    """Log each bearer route that opted out of the audience check (``audience: "*"``)."""
    for i, route in enumerate(cfg.routes):
        auth = route.auth
        if auth.uses_bearer and auth.audience == ANY_AUDIENCE:
            log.warning(
                "routes[%d] %r accepts bearer tokens for any audience (auth.audience: %r): ID tokens, "
                "refresh tokens and other APIs' tokens of provider %r may pass as its access tokens",
                i,
                route.name,
                ANY_AUDIENCE,
                auth.provider,
            )


def provider_needs(cfg: GatewayConfig, name: str) -> frozenset[str]:
    """Which endpoints the routes using a provider need (decides whether discovery is required)."""
    needs: set[str] = set()
    provider = cfg.providers[name]
    for route in cfg.routes:
        auth = route.auth
        if auth.provider != name or auth.mode == "public":
            continue
        if auth.uses_bearer:
            needs.add("jwks" if auth.validation == "jwt" else "introspection")
        if auth.uses_session:
            needs.update({"authorization", "token"})
            if provider.is_oidc:
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
    identity: Identity  # claim headers, assertion signer and its cache (DESIGN §8)
    clock: Callable[[], float] = time.time
    compiled: tuple[CompiledRoute, ...] = field(default=())
    marks: SessionStore | None = None  # one-time marks (DPoP jti): the session store, or one of its own
    resource_documents: dict[str, tuple[MetadataDocument, ...]] = field(default_factory=dict)  # RFC 9728

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
        own_marks = self.marks is not None and self.marks is not self.store
        if own_marks and self.marks is not None and (successor is None or successor.marks is not self.marks):
            await self.marks.close()

    @property
    def uses_sessions(self) -> bool:
        """Whether a route needs the store for sessions; otherwise it is only the shared introspection
        cache, whose outage costs calls to the provider but never readiness (DESIGN §7)."""
        return any(route.uses_session for route in self.compiled)

    @property
    def session_provider(self) -> ProviderClient | None:
        """The provider used for logins that no route names (the first session route's)."""
        for route in self.compiled:
            if route.uses_session and route.provider is not None:
                return route.provider
        return None


def route_methods(route: RouteConfig) -> list[str] | None:
    """The route's methods; a route that lets CORS preflights through takes OPTIONS too."""
    methods = route.match.methods
    if methods is not None and route.auth.allow_preflight and "OPTIONS" not in methods:
        return [*methods, "OPTIONS"]
    return methods


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
    used = used_providers(cfg)
    for name, pcfg in cfg.providers.items():
        if name not in used:
            continue  # never fetched, never in /readyz: no route depends on it
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
            old.reload_tls()  # unchanged config, maybe renewed files
        else:
            providers[name] = ProviderClient(name, pcfg, http, needs=needs, shared_cache=store, clock=clock)
    compiled = tuple(CompiledRoute.build(r, providers, cfg.server) for r in cfg.routes)
    marks = _mark_store(cfg, compiled, store, previous, clock)
    audience_warnings(cfg)
    table = RouteTable(
        (
            RouteSpec(route, r.match.path_prefix, r.match.host, route_methods(r))
            for route, r in zip(compiled, cfg.routes, strict=True)
        ),
        case_insensitive=cfg.server.case_insensitive_paths,
    )
    public_url = cfg.server.public_url
    secure = bool(public_url and public_url.startswith("https://"))
    domain = cfg.sessions.cookie_domain
    # RFC 6265bis §4.1.3: "__Host-" forbids Domain; with cookie_domain, "__Secure-" keeps the Secure
    # guarantee (a cookie of that name cannot be set over plain http by a network attacker).
    prefix = ("__Secure-" if domain else "__Host-") if secure else ""
    name = prefix + cfg.sessions.cookie_name
    return Runtime(
        cfg=cfg,
        routes=table,
        providers=providers,
        store=store,
        trusted=TrustedProxies(cfg.server.trusted_proxies),
        http=http,
        cookies=CookieSettings(
            name=name, secure=secure, login_prefix=name + LOGIN_COOKIE_INFIX, domain=domain
        ),
        redirect_uri=f"{public_url}/oauth2/callback" if public_url else None,
        clock=clock,
        compiled=compiled,
        marks=marks,
        resource_documents=documents(cfg.routes, {n: p.issuer for n, p in cfg.providers.items()}),
        identity=Identity(cfg, clock),  # a reload re-reads server.signing_key
    )


def _mark_store(
    cfg: GatewayConfig,
    compiled: tuple[CompiledRoute, ...],
    store: SessionStore | None,
    previous: Runtime | None,
    clock: Callable[[], float],
) -> SessionStore | None:
    """Where DPoP proofs' jti are marked (RFC 9449 §11.1): the session store when there is one, else a
    store of ``sessions.store`` / ``redis_url`` of its own, opened lazily (only DPoP requests touch it)."""
    if not any(route.dpop != "off" for route in compiled):
        return None
    if store is not None:
        return store
    if previous is not None and previous.marks is not None and previous.cfg.sessions == cfg.sessions:
        return previous.marks
    return open_mark_store(cfg.sessions, clock=clock)
