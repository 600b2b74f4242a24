"""Cross-field rules of the configuration: every problem that spans fields, each with its YAML path,
run over the sections that validated on their own (so one pass reports everything); no I/O. The
rules' wording and messages are data in ``rulebook``, shared with the reference generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.config import rulebook as rb
from gateway.config.hosts import host_problems
from gateway.config.identity import identity_problems
from gateway.config.schema import (
    GatewayConfig,
    ProviderConfig,
    RequireConfig,
    RouteConfig,
    ServerConfig,
    SessionsConfig,
)
from gateway.config.step_up import step_up_problems
from gateway.config.values import Model
from gateway.errors import ConfigProblem


@dataclass(frozen=True)
class ConfigParts:
    """The sections of a config that validated on their own: cross-field rules run over these, so a
    file with type errors still gets its cross-field problems reported in the same pass."""

    routes: list[tuple[int, RouteConfig]]
    provider_names: frozenset[str]
    providers: dict[str, ProviderConfig]
    server: ServerConfig | None
    sessions: SessionsConfig | None
    sessions_given: bool

    @property
    def uses_sessions(self) -> bool:
        return any(r.auth.uses_session for _, r in self.routes)

    @property
    def uses_introspection(self) -> bool:
        return any(r.auth.uses_bearer and r.auth.validation == "introspection" for _, r in self.routes)

    @property
    def shares_introspection_cache(self) -> bool:
        """Introspection answers go to Redis when the operator configured a Redis store; a bearer-only
        gateway without a `sessions:` section keeps its cache in-process only."""
        sessions = self.sessions
        return (
            self.uses_introspection
            and self.sessions_given
            and sessions is not None
            and sessions.store == "redis"
        )

    @classmethod
    def of(cls, cfg: GatewayConfig) -> ConfigParts:
        return cls(
            list(enumerate(cfg.routes)),
            frozenset(cfg.providers),
            dict(cfg.providers),
            cfg.server,
            cfg.sessions,
            "sessions" in cfg.model_fields_set,
        )

    @classmethod
    def salvage(cls, data: dict[str, Any]) -> ConfigParts:
        """Validate each section (and each route, each provider) alone; keep what passes."""

        def valid(model: type[Model], value: Any) -> Any:
            try:
                return model.model_validate(value if value is not None else {})
            except ValidationError:
                return None

        raw_routes = data.get("routes")
        routes = [
            (i, r)
            for i, raw in enumerate(raw_routes if isinstance(raw_routes, list) else [])
            if (r := valid(RouteConfig, raw)) is not None
        ]
        raw_providers = data.get("providers")
        raw_providers = raw_providers if isinstance(raw_providers, dict) else {}
        providers = {
            str(n): p for n, raw in raw_providers.items() if (p := valid(ProviderConfig, raw)) is not None
        }
        return cls(
            routes,
            frozenset(str(n) for n in raw_providers),
            providers,
            valid(ServerConfig, data.get("server")),
            valid(SessionsConfig, data.get("sessions")),
            "sessions" in data,
        )


def cross_field_problems(cfg: GatewayConfig | ConfigParts) -> list[ConfigProblem]:
    """Rules that span fields; every one reported, each with its YAML path."""
    parts = cfg if isinstance(cfg, ConfigParts) else ConfigParts.of(cfg)
    problems = _route_problems(parts)
    problems += host_problems(parts)
    problems += step_up_problems(parts)
    problems += identity_problems(parts)
    uses_sessions = parts.uses_sessions
    sessions, server = parts.sessions, parts.server
    if sessions is not None:
        if parts.shares_introspection_cache and not uses_sessions and sessions.encryption_key is None:
            problems.append(rb.KEY_FOR_SHARED_INTROSPECTION.problem("sessions.encryption_key"))
        if uses_sessions and sessions.encryption_key is None:
            problems.append(rb.KEY_FOR_SESSIONS.problem("sessions.encryption_key"))
        if sessions.idle_timeout > sessions.absolute_timeout:
            problems.append(rb.IDLE_WITHIN_ABSOLUTE.problem("sessions.idle_timeout"))
    if server is not None:
        if uses_sessions and server.public_url is None:
            problems.append(rb.PUBLIC_URL_FOR_SESSIONS.problem("server.public_url"))
        if server.listen == server.admin_listen:
            problems.append(rb.ADMIN_APART.problem("server.admin_listen"))
    for name, provider in parts.providers.items():
        if provider.tls is not None and provider.tls.key_file and not provider.tls.cert_file:
            problems.append(rb.CERT_WITH_KEY.problem(f"providers.{name}.tls.cert_file"))
        if provider.client_secret is None and provider.introspection_client_secret is None:
            problems.append(rb.CLIENT_SECRET.problem(f"providers.{name}.client_secret"))
    return problems


def _route_problems(parts: ConfigParts) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: dict[str, int] = {}
    matches: dict[tuple[str | None, str, tuple[str, ...] | None], int] = {}
    for i, route in parts.routes:
        at = f"routes[{i}]"
        if route.name in seen:
            problems.append(
                rb.ROUTE_NAMES_UNIQUE.problem(f"{at}.name", name=route.name, other=seen[route.name])
            )
        seen.setdefault(route.name, i)
        key = (
            route.match.host.lower() if route.match.host else None,
            route.match.path_prefix.rstrip("/") or "/",
            tuple(sorted(route.match.methods)) if route.match.methods else None,
        )
        if key in matches:
            problems.append(rb.ROUTE_MATCHES_UNIQUE.problem(f"{at}.match", other=matches[key]))
        matches.setdefault(key, i)
        if route.upstream_tls is not None and not str(route.upstream).startswith("https://"):
            problems.append(rb.UPSTREAM_TLS_HTTPS.problem(f"{at}.upstream_tls"))
        tls = route.upstream_tls
        if tls is not None and tls.key_file and not tls.cert_file:
            problems.append(rb.CERT_WITH_KEY.problem(f"{at}.upstream_tls.cert_file"))
        prefix = route.match.path_prefix
        if prefix == "/oauth2" or prefix.startswith("/oauth2/"):
            problems.append(rb.RESERVED_PREFIXES.problem(f"{at}.match.path_prefix", "oauth2"))
        auth = route.auth
        if auth.mode == "public":
            for field in ("provider", "audience"):
                if getattr(auth, field) is not None:
                    problems.append(rb.PUBLIC_WITHOUT_PROVIDER.problem(f"{at}.auth.{field}"))
            if auth.scopes or auth.scopes_by_method or auth.require != RequireConfig():
                problems.append(rb.PUBLIC_WITHOUT_RULES.problem(f"{at}.auth"))
            continue
        if auth.provider is None:
            problems.append(rb.ROUTE_PROVIDER.problem(f"{at}.auth.provider", "missing", mode=auth.mode))
        elif auth.provider not in parts.provider_names:
            known = ", ".join(sorted(parts.provider_names)) or "none defined"
            problems.append(
                rb.ROUTE_PROVIDER.problem(
                    f"{at}.auth.provider", "unknown", provider=auth.provider, known=known
                )
            )
        if auth.scopes and auth.scopes_by_method is not None:
            problems.append(rb.SCOPES_EXCLUSIVE.problem(f"{at}.auth.scopes_by_method"))
        if auth.mode == "session" and (auth.allow_query_token or auth.allow_form_token):
            problems.append(rb.TOKEN_CARRIERS.problem(f"{at}.auth"))
        if auth.mode == "session" and auth.dpop == "required":
            problems.append(rb.DPOP_BEARER_ONLY.problem(f"{at}.auth.dpop"))
    return problems
