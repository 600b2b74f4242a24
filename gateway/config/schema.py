"""The configuration schema (DESIGN §2): frozen pydantic models, defaults and cross-field rules; no I/O."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
)

from gateway.config.hosts import check_cookie_domain, check_redirect_host, host_problems
from gateway.config.identity import ClaimHeaders, SigningKey, identity_problems
from gateway.config.step_up import check_acr, check_max_age, step_up_problems
from gateway.config.tls import ClientTlsConfig, ServerTlsConfig, UpstreamTlsConfig
from gateway.errors import ConfigProblem

# One or more <number><unit> terms, as Go's time.ParseDuration writes them (oauth2-proxy and Pomerium
# configs use "1h30m", "250ms"), plus "d" for days; no sign, no bare numbers.
_DURATION_TERM = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h|d))+$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(value: Any) -> timedelta:
    """``500ms``, ``30s``, ``15m``, ``12h``, ``1d``, Go's ``1h30m`` / ``2m0.5s`` -> timedelta.

    Bare numbers are refused: ``30`` could mean seconds or milliseconds, and a guess is worse than an error.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if _DURATION.match(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_TERM.findall(text))
            return timedelta(seconds=seconds)
    raise ValueError(f"expected a duration such as 500ms, 30s, 15m or 12h, got {value!r}")


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(_format_duration, return_type=str)
]


def _check_listen(value: str) -> str:
    split_listen(value)
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``0.0.0.0:8080`` / ``[::1]:8080`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {value!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"listen host must be an IP address or localhost, got {host!r}") from None
    return host, int(port_text)


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+(/[^\s]*)?$", value) or not _host_and_port_ok(value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value  # unchanged: an issuer must match the provider's spelling exactly (Auth0 ends in "/")


def _host_and_port_ok(value: str) -> bool:
    # "http://[::1", "http://:80" and "http://x:99999" pass the pattern but no HTTP client can use them.
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of range
    except ValueError:
        return False
    return bool(parts.hostname) and port != 0


def _cidr_texts(value: Any) -> Any:
    # YAML `[no]` or `[0]` would otherwise become 0.0.0.0/32: a network nobody meant to trust.
    if isinstance(value, list) and any(not isinstance(v, str) for v in value):
        raise ValueError("each entry must be a CIDR written as text, such as 10.0.0.0/8")
    return value


def _check_origin(value: str) -> str:
    value = _check_http_url(value).rstrip("/")
    if value.count("/") > 2:
        raise ValueError(f"expected an origin without a path (https://app.example.com), got {value!r}")
    return value


def _check_encryption_key(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip().rstrip("=").replace("+", "-").replace("/", "_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url text (32 random bytes)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(key)}")
    return value


def _check_redis_url(value: str) -> str:
    schemes = (
        "redis://",
        "rediss://",
        "unix://",
        "redis+sentinel://",
        "rediss+sentinel://",
        "redis+cluster://",
        "rediss+cluster://",
    )
    if not value.startswith(schemes):
        raise ValueError("expected a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL")
    return value


def _check_prefix(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if any(seg in {".", ".."} for seg in value.split("/")) or "//" in value or "%" in value or "\\" in value:
        raise ValueError("must be a normalised path (no '.', '..', '//', '%' or '\\')")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Listen = Annotated[str, AfterValidator(_check_listen)]
RouteName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Method = Annotated[str, AfterValidator(lambda v: v.upper())]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class TracingConfig(_Model):
    """OpenTelemetry traces (DESIGN §8); a key left out falls back to its standard OTEL_* variable."""

    otlp_endpoint: HttpUrl | None = Field(
        None,
        description="OTLP/HTTP collector base URL (spans go to `/v1/traces` under it); "
        "default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT.",
    )
    service_name: str | None = Field(
        None,
        min_length=1,
        description="`service.name` of the spans; default: OTEL_SERVICE_NAME or tokengate.",
    )
    sample_ratio: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded; a trusted caller's sampling decision is followed. "
        "Default: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 1.0.",
    )


class ServerConfig(_Model):
    listen: Listen = Field("0.0.0.0:8080", description="Public listener, host:port.")
    admin_listen: Listen = Field(
        "127.0.0.1:9090", description="Admin listener for /healthz, /readyz and /metrics; never public."
    )
    public_url: Annotated[str, AfterValidator(_check_origin)] | None = Field(
        None,
        description="External origin of the gateway; redirect_uri = public_url + /oauth2/callback. "
        "Required when any route uses sessions.",
    )
    workers: int = Field(1, ge=1, le=64, description="Processes sharing the listening port (SO_REUSEPORT).")
    trusted_proxies: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], BeforeValidator(_cidr_texts)
    ] = Field(
        default_factory=list,
        description="CIDRs whose X-Forwarded-* and X-Request-Id headers are believed.",
    )
    upstream_timeout: PositiveDuration = Field(
        timedelta(seconds=30),
        description="After the request is sent, time for the upstream's response headers (504 after); "
        "`routes[].timeout` overrides it.",
    )
    shutdown_grace: Duration = Field(
        timedelta(seconds=25), description="On SIGTERM, how long in-flight requests get to finish."
    )
    keepalive_timeout: PositiveDuration = Field(
        timedelta(seconds=75),
        description="How long an idle client (or load balancer) keep-alive connection stays open; "
        "keep it above the load balancer's idle timeout (often 60s).",
    )
    header_timeout: PositiveDuration = Field(
        timedelta(seconds=10),
        description="From a request's first byte, time to send the request line and headers "
        "(slowloris guard).",
    )
    body_timeout: PositiveDuration = Field(
        timedelta(seconds=60),
        description="Longest silence while a request body is read: 408, or the connection is closed "
        "once the answer has started.",
    )
    upstream_connect_timeout: PositiveDuration = Field(
        timedelta(seconds=5), description="Time to open a connection (and TLS) to an upstream (504 after)."
    )
    upstream_idle_timeout: Duration = Field(
        timedelta(0),
        description="Longest silence between the upstream's response body chunks; 0 = none (SSE, long-poll).",
    )
    tls: ServerTlsConfig | None = Field(None, description="Serve HTTPS on `listen` with this certificate.")
    max_body_size: int = Field(
        0, ge=0, description="Largest request body in bytes; 0 = unlimited (streamed)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written (JSON lines on stderr)."
    )
    access_log: bool = Field(True, description="One JSON access-log line per request.")
    tracing: TracingConfig | None = Field(
        None,
        description="OpenTelemetry tracing over OTLP/HTTP; off unless this or OTEL_EXPORTER_OTLP_*ENDPOINT "
        "names a collector.",
    )
    case_insensitive_paths: bool = Field(
        False,
        description="Compare path prefixes case-insensitively (for IIS-style upstreams that ignore case). "
        "Off: a path that would choose another route if case were ignored (`/ADMIN/x` beside `/admin`) is "
        "refused with 400.",
    )
    signing_key: SigningKey | None = Field(
        None,
        description="EC P-256 private key (PEM or JWK; `tokengate gen-key --signing`) that signs "
        "X-Tokengate-Assertion (ES256); use ${ENV} substitution. Required by `identity_jwt`.",
    )
    previous_signing_keys: list[SigningKey] = Field(
        default_factory=list,
        description="Retired signing keys still published in /oauth2/jwks.json during a key rollover "
        "(docs/identity-assertion.md); never used to sign.",
    )


class ProviderEndpoints(_Model):
    authorization: HttpUrl | None = Field(None, description="Authorization endpoint (RFC 6749 §3.1).")
    token: HttpUrl | None = Field(None, description="Token endpoint (RFC 6749 §3.2).")
    introspection: HttpUrl | None = Field(None, description="Introspection endpoint (RFC 7662).")
    revocation: HttpUrl | None = Field(None, description="Revocation endpoint (RFC 7009).")
    end_session: HttpUrl | None = Field(None, description="OIDC RP-initiated logout endpoint.")
    jwks: HttpUrl | None = Field(None, description="JWKS URI with the provider's signing keys.")
    userinfo: HttpUrl | None = Field(None, description="OIDC userinfo endpoint.")


class ProviderConfig(_Model):
    issuer: HttpUrl = Field(description="Issuer identifier; must equal the discovery document's `issuer`.")
    endpoints: ProviderEndpoints = Field(
        default_factory=ProviderEndpoints,
        description="Explicit endpoints; override discovery, or replace it when every needed one is set.",
    )
    client_id: str = Field(min_length=1, description="OAuth 2.0 client id of the gateway.")
    client_secret: SecretStr | None = Field(None, description="Client secret; use ${ENV} substitution.")
    client_auth: Literal["client_secret_basic", "client_secret_post"] = Field(
        "client_secret_basic", description="How the gateway authenticates at the token endpoint."
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"],
        description="Scopes asked for at login: `openid` for OIDC, `offline_access` for refresh tokens.",
    )
    introspection_cache: Duration = Field(
        timedelta(seconds=60), description="Upper bound on caching an introspection answer; never past exp."
    )
    introspection_client_id: str | None = Field(
        None, description="Client for introspection calls; default: client_id."
    )
    introspection_client_secret: SecretStr | None = Field(
        None, description="Secret for introspection calls; default: client_secret."
    )
    jwt_leeway: Duration = Field(timedelta(seconds=30), description="Clock skew allowed on exp, nbf and iat.")
    post_logout_redirect_uri: HttpUrl | None = Field(
        None, description="Where the provider sends the user after RP-initiated logout."
    )
    extra_auth_params: dict[str, str] = Field(
        default_factory=dict, description="Extra authorization request parameters, e.g. {prompt: consent}."
    )
    timeout: Duration = Field(
        timedelta(seconds=5), description="Time limit for each call to the provider (503 after)."
    )
    allow_insecure_http: bool = Field(
        False,
        description="Allow a plain http:// issuer and endpoints off loopback (a private network you "
        "trust, e.g. docker-compose service names); loopback never needs it.",
    )
    tls: ClientTlsConfig | None = Field(
        None, description="CA bundle and client certificate (mTLS) for calls to this provider."
    )


class SessionsConfig(_Model):
    store: Literal["redis", "memory"] = Field(
        "redis", description="`redis` (shared by replicas) or `memory` (one process, development only)."
    )
    redis_url: Annotated[str, AfterValidator(_check_redis_url)] = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS), unix://, redis+sentinel://host:port/service_name or "
        "redis+cluster://host:port.",
    )
    key_prefix: str = Field("tokengate:", description="Prefix of every Redis key the gateway writes.")
    cookie_name: str = Field(
        "tokengate_session",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Session cookie name; `__Host-` is prepended under https.",
    )
    idle_timeout: Duration = Field(timedelta(minutes=30), description="Session ends after this long unused.")
    absolute_timeout: Duration = Field(timedelta(hours=12), description="Session ends this long after login.")
    refresh_before: Duration = Field(
        timedelta(seconds=30),
        description="Refresh the access token this long before it expires.",
    )
    encryption_key: Annotated[SecretStr, AfterValidator(_check_encryption_key)] | None = Field(
        None,
        description="32 random bytes, base64url; encrypts tokens at rest (AES-GCM). Required for sessions.",
    )
    cookie_domain: Annotated[str, AfterValidator(check_cookie_domain)] | None = Field(
        None,
        description="Parent domain the session cookie is set for (`Domain=`), so one login on public_url "
        "serves session routes on every host under it; the `__Host-` prefix is then not used.",
    )
    allowed_redirect_hosts: list[Annotated[str, AfterValidator(check_redirect_host)]] = Field(
        default_factory=list,
        description="Hosts an absolute `rd` may lead to after login (same scheme as public_url, any "
        'port); "*.example.com" matches names under example.com on a dot boundary.',
    )


class MatchConfig(_Model):
    host: str | None = Field(None, description="Host to match (case-insensitive, port ignored).")
    path_prefix: Annotated[str, AfterValidator(_check_prefix)] = Field(
        "/", description="Segment-aware prefix: /api matches /api and /api/x, not /apix."
    )
    methods: list[Method] | None = Field(None, description="Methods to match; default: all.")


ClaimValue = str | int | bool


def _check_email_domains(value: list[str]) -> list[str]:
    # oauth2-proxy's --email-domain=* means "any domain"; beside real domains it would silently widen them.
    if "*" in value and len(value) > 1:
        raise ValueError('"*" allows every domain: list it alone or not at all')
    for domain in value:
        if domain != "*" and ("@" in domain or "*" in domain or not domain.strip()):
            raise ValueError(f"expected a domain such as example.com (exact match), got {domain!r}")
    return value


class RequireConfig(_Model):
    claims: dict[str, list[ClaimValue]] = Field(
        default_factory=dict,
        description="Each named claim (dotted path for nesting) must hold one of the listed values.",
    )
    email_domains: Annotated[list[str], AfterValidator(_check_email_domains)] = Field(
        default_factory=list,
        description='Allowed e-mail domains (exact); `["*"]`: any domain (an e-mail is still required).',
    )
    subjects: list[str] = Field(default_factory=list, description="Allowed `sub` values.")
    acr: list[Annotated[str, AfterValidator(check_acr)]] = Field(
        default_factory=list,
        description="RFC 9470 step-up: the authentication's `acr` must be one of these; otherwise bearer "
        "callers get an `insufficient_user_authentication` challenge and browsers log in again with "
        "`acr_values` (docs/step-up.md).",
    )
    max_age: Annotated[Duration, AfterValidator(check_max_age)] | None = Field(
        None,
        description="RFC 9470 step-up: the authentication (`auth_time`) must be at most this old; "
        "otherwise the challenge carries `max_age` and browsers log in again with it.",
    )


class AuthConfig(_Model):
    mode: Literal["public", "bearer", "session", "bearer_or_session"] = Field(
        description="public | bearer | session | bearer_or_session."
    )
    provider: str | None = Field(None, description="Name of the provider under `providers`.")
    validation: Literal["introspection", "jwt"] = Field(
        "jwt",
        alias="validate",
        description="Bearer tokens: `jwt` (local, RFC 9068, against JWKS) or `introspection` (RFC 7662).",
    )
    audience: str | None = Field(
        None,
        min_length=1,
        description="Bearer tokens: a value their `aud` must contain. Required on `bearer` and "
        '`bearer_or_session` routes; `"*"` accepts any audience (a warning at start).',
    )
    resource: str | None = Field(
        None,
        description="Bearer routes: the RFC 9728 resource identifier (an absolute https URL, the one "
        "clients call), published at /.well-known/oauth-protected-resource/<its path> and named in 401 "
        "challenges; tokens' `aud` must contain it (RFC 8707) as well as `audience`.",
    )
    scopes: list[str] = Field(default_factory=list, description="Scopes all required.")
    scopes_by_method: dict[str, list[str]] | None = Field(
        None, description='Scopes per method; "*" for the others. Exclusive with `scopes`.'
    )
    require: RequireConfig = Field(
        default_factory=RequireConfig, description="Claim rules: is this user allowed this resource?"
    )
    allow_query_token: bool = Field(
        False, description="Accept `?access_token=` (RFC 6750 §2.3), legacy only."
    )
    allow_form_token: bool = Field(False, description="Accept a form-body `access_token` (RFC 6750 §2.2).")
    forward_token: bool = Field(True, description="Relay `Authorization: Bearer <access token>` upstream.")
    allow_preflight: bool = Field(
        False,
        description="Forward CORS preflights (OPTIONS + Origin + Access-Control-Request-Method) "
        "without credentials; OPTIONS joins `match.methods` when those are restricted.",
    )
    dpop: Literal["off", "allowed", "required"] = Field(
        "allowed",
        description="DPoP (RFC 9449) for bearer tokens: `allowed` takes DPoP and plain bearer tokens, "
        "`required` only DPoP, `off` refuses DPoP. A key-bound token needs its proof in every mode "
        "(docs/dpop.md).",
    )
    claim_headers: ClaimHeaders = Field(
        default_factory=dict,
        description="Upstream header -> claim (dotted path for nesting); lists joined by `,`, "
        "absent claims send no header (docs/identity-assertion.md).",
    )
    identity_jwt: bool = Field(
        False,
        description="Send `X-Tokengate-Assertion`, a JWT of the caller signed with server.signing_key.",
    )


class RouteConfig(_Model):
    name: RouteName = Field(description="Unique name; used in logs and metric labels.")
    match: MatchConfig = Field(default_factory=MatchConfig, description="What requests the route takes.")
    upstream: HttpUrl | None = Field(
        None,
        description="Base URL of the upstream (http:// or https://). Omitted: the route only answers "
        "forward-auth (/oauth2/auth); a request sent to the gateway directly gets 404.",
    )
    strip_prefix: bool = Field(False, description="Remove path_prefix before forwarding.")
    preserve_host: bool = Field(False, description="Send the client's Host instead of the upstream's.")
    auth: AuthConfig = Field(description="Authentication and authorisation of the route.")
    timeout: PositiveDuration | None = Field(
        None, description="This route's upstream_timeout (time to the upstream's response headers)."
    )
    upstream_tls: UpstreamTlsConfig | None = Field(
        None, description="CA bundle, client certificate (mTLS) and server_name for an https:// upstream."
    )


class GatewayConfig(_Model):
    server: ServerConfig = Field(default_factory=ServerConfig, description="Listeners and limits.")
    providers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")], ProviderConfig] = Field(
        default_factory=dict, description="Authorization servers by name."
    )
    sessions: SessionsConfig = Field(default_factory=SessionsConfig, description="Browser sessions.")
    routes: list[RouteConfig] = Field(
        min_length=1, description="Routes, matched by host then longest prefix."
    )


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
        return any(r.auth.mode in ("session", "bearer_or_session") for _, r in self.routes)

    @property
    def uses_introspection(self) -> bool:
        return any(
            r.auth.mode in ("bearer", "bearer_or_session") and r.auth.validation == "introspection"
            for _, r in self.routes
        )

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

        def valid(model: type[_Model], value: Any) -> Any:
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
            problems.append(
                ConfigProblem(
                    "sessions.encryption_key",
                    "required to share the introspection cache "
                    "in Redis: replicas authenticate its entries with this key",
                )
            )
        if uses_sessions and sessions.encryption_key is None:
            problems.append(ConfigProblem("sessions.encryption_key", "required when a route uses sessions"))
        if sessions.idle_timeout > sessions.absolute_timeout:
            problems.append(
                ConfigProblem("sessions.idle_timeout", "must not exceed sessions.absolute_timeout")
            )
    if server is not None:
        if uses_sessions and server.public_url is None:
            problems.append(ConfigProblem("server.public_url", "required when a route uses sessions"))
        if server.listen == server.admin_listen:
            problems.append(ConfigProblem("server.admin_listen", "must differ from server.listen"))
    for name, provider in parts.providers.items():
        if provider.tls is not None and provider.tls.key_file and not provider.tls.cert_file:
            problems.append(ConfigProblem(f"providers.{name}.tls.cert_file", "required with key_file"))
        if provider.client_secret is None and provider.introspection_client_secret is None:
            problems.append(
                ConfigProblem(
                    f"providers.{name}.client_secret", "required (the gateway is a confidential client)"
                )
            )
    return problems


def _route_problems(parts: ConfigParts) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: dict[str, int] = {}
    matches: dict[tuple[str | None, str, tuple[str, ...] | None], int] = {}
    for i, route in parts.routes:
        at = f"routes[{i}]"
        if route.name in seen:
            problems.append(
                ConfigProblem(
                    f"{at}.name", f"duplicate route name {route.name!r} (also routes[{seen[route.name]}])"
                )
            )
        seen.setdefault(route.name, i)
        key = (
            route.match.host.lower() if route.match.host else None,
            route.match.path_prefix.rstrip("/") or "/",
            tuple(sorted(route.match.methods)) if route.match.methods else None,
        )
        if key in matches:
            problems.append(
                ConfigProblem(f"{at}.match", f"matches exactly what routes[{matches[key]}] matches")
            )
        matches.setdefault(key, i)
        if route.upstream_tls is not None and not str(route.upstream).startswith("https://"):
            problems.append(ConfigProblem(f"{at}.upstream_tls", "applies only to an https:// upstream"))
        tls = route.upstream_tls
        if tls is not None and tls.key_file and not tls.cert_file:
            problems.append(ConfigProblem(f"{at}.upstream_tls.cert_file", "required with key_file"))
        prefix = route.match.path_prefix
        if prefix == "/oauth2" or prefix.startswith("/oauth2/"):
            problems.append(ConfigProblem(f"{at}.match.path_prefix", "/oauth2/ is reserved for the gateway"))
        auth = route.auth
        if auth.mode == "public":
            for field in ("provider", "audience"):
                if getattr(auth, field) is not None:
                    problems.append(ConfigProblem(f"{at}.auth.{field}", "has no effect on a public route"))
            if auth.scopes or auth.scopes_by_method or auth.require != RequireConfig():
                problems.append(ConfigProblem(f"{at}.auth", "a public route cannot require scopes or claims"))
            continue
        if auth.provider is None:
            problems.append(ConfigProblem(f"{at}.auth.provider", f"required for mode {auth.mode!r}"))
        elif auth.provider not in parts.provider_names:
            known = ", ".join(sorted(parts.provider_names)) or "none defined"
            problems.append(
                ConfigProblem(
                    f"{at}.auth.provider", f"unknown provider {auth.provider!r} (providers: {known})"
                )
            )
        if auth.scopes and auth.scopes_by_method is not None:
            problems.append(
                ConfigProblem(f"{at}.auth.scopes_by_method", "give either scopes or scopes_by_method")
            )
        if auth.mode == "session" and (auth.allow_query_token or auth.allow_form_token):
            problems.append(ConfigProblem(f"{at}.auth", "token carriers apply to bearer routes only"))
        if auth.mode == "session" and auth.dpop == "required":
            problems.append(ConfigProblem(f"{at}.auth.dpop", "applies to bearer routes only"))
    return problems
