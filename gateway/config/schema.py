"""The configuration schema (DESIGN §2): frozen pydantic models and their defaults; value types live in
``values``, cross-field rules in ``rules``; no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from gateway.config.hosts import check_cookie_domain, check_redirect_host
from gateway.config.identity import ClaimHeaders, SigningKey
from gateway.config.step_up import check_acr, check_max_age
from gateway.config.tls import ClientTlsConfig, ServerTlsConfig, UpstreamTlsConfig
from gateway.config.values import (
    Cidr,
    Duration,
    EncryptionKey,
    HttpUrl,
    Listen,
    Method,
    Origin,
    PathPrefix,
    PositiveDuration,
    RedisUrl,
    RouteName,
    cidr_texts,
    parse_duration,
    split_listen,
)
from gateway.config.values import Model as _Model

__all__ = ["parse_duration", "split_listen"]  # re-exported: their home is gateway.config.values


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
    public_url: Origin | None = Field(
        None,
        description="External origin of the gateway; redirect_uri = public_url + /oauth2/callback. "
        "Required when any route uses sessions.",
    )
    workers: int = Field(1, ge=1, le=64, description="Processes sharing the listening port (SO_REUSEPORT).")
    trusted_proxies: Annotated[list[Cidr], BeforeValidator(cidr_texts)] = Field(
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

    @property
    def is_oidc(self) -> bool:
        """OpenID Connect (``openid`` in scopes): logins send a nonce and require a valid ID token."""
        return "openid" in self.scopes


class SessionsConfig(_Model):
    store: Literal["redis", "memory"] = Field(
        "redis", description="`redis` (shared by replicas) or `memory` (one process, development only)."
    )
    redis_url: RedisUrl = Field(
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
    encryption_key: EncryptionKey | None = Field(
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
    path_prefix: PathPrefix = Field(
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


AuthMode = Literal["public", "bearer", "session", "bearer_or_session"]


class AuthConfig(_Model):
    mode: AuthMode = Field(description="public | bearer | session | bearer_or_session.")
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

    @property
    def uses_bearer(self) -> bool:
        """Bearer tokens are accepted (``bearer``, ``bearer_or_session``)."""
        return self.mode in ("bearer", "bearer_or_session")

    @property
    def uses_session(self) -> bool:
        """Browser sessions are accepted (``session``, ``bearer_or_session``)."""
        return self.mode in ("session", "bearer_or_session")


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
