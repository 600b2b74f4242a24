"""One compiled route: everything a request on it needs, computed once per runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from yarl import URL

from gateway.config.resource import metadata_url
from gateway.config.schema import AuthMode, RouteConfig, ServerConfig
from gateway.config.tls import client_context
from gateway.oidc import ProviderClient
from gateway.policy import RoutePolicy
from gateway.upstream.options import UpstreamOptions, upstream_options


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """One route with everything a request needs precomputed."""

    name: str
    mode: AuthMode
    upstream: URL | None  # None: a forward-auth-only route (DESIGN §8), never proxied
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
    allow_preflight: bool
    upstream_options: UpstreamOptions
    dpop: Literal["off", "allowed", "required"] = "off"
    match_host: str | None = None  # the route's match.host: the origin a DPoP proof names (htu)
    resource: str | None = None  # auth.resource (RFC 9728 / RFC 8707)
    resource_metadata: str | None = None  # its metadata URL, named in the route's challenges
    uses_bearer: bool = False  # auth.uses_bearer, copied: read on every request
    uses_session: bool = False  # auth.uses_session

    @classmethod
    def build(
        cls, cfg: RouteConfig, providers: dict[str, ProviderClient], server: ServerConfig
    ) -> CompiledRoute:
        upstream = URL(cfg.upstream) if cfg.upstream is not None else None
        auth = cfg.auth
        tls = cfg.upstream_tls
        return cls(
            name=cfg.name,
            mode=auth.mode,
            upstream=upstream,
            upstream_base=str(upstream).rstrip("/") if upstream is not None else "",
            policy=RoutePolicy.from_config(auth),
            provider=providers[auth.provider] if auth.provider else None,
            validation=auth.validation,
            audience=auth.audience,
            strip_prefix=cfg.strip_prefix,
            preserve_host=cfg.preserve_host,
            forward_token=auth.forward_token,
            allow_query_token=auth.allow_query_token,
            allow_form_token=auth.allow_form_token,
            allow_preflight=auth.allow_preflight,
            resource=auth.resource,
            resource_metadata=metadata_url(auth.resource) if auth.resource else None,
            # Built per runtime: a reload re-reads the upstream_tls files (renewed certificates).
            upstream_options=upstream_options(
                connect=server.upstream_connect_timeout.total_seconds(),
                headers=(cfg.timeout or server.upstream_timeout).total_seconds(),
                idle=server.upstream_idle_timeout.total_seconds(),
                ssl_context=client_context(tls),
                server_hostname=tls.server_name if tls is not None else None,
            ),
            dpop=auth.dpop if auth.uses_bearer else "off",
            match_host=cfg.match.host,
            uses_bearer=auth.uses_bearer,
            uses_session=auth.uses_session,
        )
