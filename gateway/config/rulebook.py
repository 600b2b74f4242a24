"""The cross-field rules of the configuration as data: for each, the YAML paths it concerns, its wording
in the reference (docs/configuration.md, "Rules across fields") and the problems the validator reports.
The validator (``rules`` and the modules it names) and the reference generator (tools/configref) both
read this table, so a rule cannot be enforced in one wording and documented in another."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.errors import ConfigProblem


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``paths`` are written as the reference shows them (``routes[i]``, ``providers.<name>``);
    ``messages`` maps a case to the text of the problem reported for it (``str.format`` fields filled
    by the check); ``text`` is None for a rule the reference does not list (its fields' descriptions
    carry it)."""

    paths: tuple[str, ...]
    text: str | None
    messages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    checked_in: str = "gateway.config.rules"

    def problem(self, path: str, case: str = "_", **fields: object) -> ConfigProblem:
        """The problem at ``path`` (the concrete one: ``routes[3].name``) for ``case``."""
        return ConfigProblem(path, self.messages[case].format(**fields))


def _messages(**cases: str) -> Mapping[str, str]:
    return MappingProxyType(cases)


ROUTE_NAMES_UNIQUE = Rule(
    ("routes[i].name",),
    "Route names are unique.",
    _messages(_="duplicate route name {name!r} (also routes[{other}])"),
)
ROUTE_MATCHES_UNIQUE = Rule(
    ("routes[i].match",),
    "No two routes match exactly the same requests (same `host` ignoring case, same `path_prefix` "
    "ignoring a trailing slash, same set of `methods`).",
    _messages(_="matches exactly what routes[{other}] matches"),
)
RESERVED_PREFIXES = Rule(
    ("routes[i].match.path_prefix",),
    "`/oauth2` and everything under `/oauth2/` are reserved for the gateway's own endpoints; so "
    "are `/.well-known/oauth-protected-resource` and everything under it (RFC 9728 metadata).",
    _messages(oauth2="/oauth2/ is reserved for the gateway"),  # the metadata path: gateway.config.resource
)
RESOURCE = Rule(
    ("routes[i].auth.resource",),
    "Only on `bearer` and `bearer_or_session` routes. An absolute `https://` URL (plain `http://` "
    "only on loopback) without query, fragment or userinfo, with a normalised path. Routes that "
    "publish at the same metadata URL must name the same resource and provider.",
    checked_in="gateway.config.resource",
)
ANY_AUDIENCE_BESIDE_RESOURCE = Rule(
    ("routes[i].auth.audience",),
    '`"*"` is refused beside `resource`: the token\'s `aud` must hold the resource anyway.',
    checked_in="gateway.config.resource",
)
ROUTE_PROVIDER = Rule(
    ("routes[i].auth.provider",),
    "Required for every mode but `public`, and must name a key under `providers`.",
    _messages(
        missing="required for mode {mode!r}",
        unknown="unknown provider {provider!r} (providers: {known})",
    ),
)
PUBLIC_WITHOUT_PROVIDER = Rule(
    ("routes[i].auth.provider", "routes[i].auth.audience"),
    "Not allowed on a `public` route (they would have no effect).",
    _messages(_="has no effect on a public route"),
)
PUBLIC_WITHOUT_RULES = Rule(
    ("routes[i].auth",),
    "A `public` route cannot have `scopes`, `scopes_by_method` or `require` rules.",
    _messages(_="a public route cannot require scopes or claims"),
)
SCOPES_EXCLUSIVE = Rule(
    ("routes[i].auth.scopes_by_method",),
    "Give either `scopes` or `scopes_by_method`, not both.",
    _messages(_="give either scopes or scopes_by_method"),
)
TOKEN_CARRIERS = Rule(
    ("routes[i].auth",),
    "`allow_query_token` and `allow_form_token` apply to `bearer` and `bearer_or_session` routes "
    "only, not to `session` routes.",
    _messages(_="token carriers apply to bearer routes only"),
)
PUBLIC_URL_FOR_SESSIONS = Rule(
    ("server.public_url",),
    "Required when any route uses `session` or `bearer_or_session` (the redirect URI is built from it).",
    _messages(_="required when a route uses sessions"),
)
KEY_FOR_SESSIONS = Rule(
    ("sessions.encryption_key",),
    "Required when any route uses `session` or `bearer_or_session`.",
    _messages(_="required when a route uses sessions"),
)
KEY_FOR_SHARED_INTROSPECTION = Rule(
    ("sessions.encryption_key",),
    "Also required when a bearer route uses `validate: introspection` and the file has a "
    "`sessions` section with `store: redis`: introspection answers are then shared by the "
    "replicas through Redis, encrypted and authenticated with this key. Without a `sessions` "
    "section the introspection cache stays inside each process.",
    _messages(
        _="required to share the introspection cache in Redis: replicas authenticate its entries with "
        "this key"
    ),
)
IDLE_WITHIN_ABSOLUTE = Rule(
    ("sessions.idle_timeout",),
    "Must not exceed `sessions.absolute_timeout`.",
    _messages(_="must not exceed sessions.absolute_timeout"),
)
CLIENT_SECRET = Rule(
    ("providers.<name>.client_secret",),
    "Required (the gateway is a confidential client). A provider with only "
    "`introspection_client_secret` passes, and then identifies itself at the token endpoint by "
    "`client_id` alone.",
    _messages(_="required (the gateway is a confidential client)"),
)
ADMIN_APART = Rule(
    ("server.admin_listen",),
    "Must differ from `server.listen`.",
    _messages(_="must differ from server.listen"),
)
AUDIENCE_REQUIRED = Rule(
    ("routes[i].auth.audience",),
    'Required on `bearer` and `bearer_or_session` routes; `"*"` accepts any audience and is '
    "logged as a warning at start (see [security.md](security.md#configuration-rules)).",
    checked_in="gateway.config.trust",
)
MEMORY_STORE_ONE_WORKER = Rule(
    ("sessions.store",),
    "`memory` is refused when `server.workers` is more than 1.",
    checked_in="gateway.config.trust",
)
PLAIN_HTTP_PROVIDERS = Rule(
    ("providers.<name>.issuer", "providers.<name>.endpoints.<endpoint>"),
    "A plain `http://` URL is refused unless its host is loopback (`127.0.0.0/8`, `::1`, "
    "`localhost`) or the provider sets `allow_insecure_http: true`. Host names are not "
    "resolved: docker-compose or Kubernetes service names need the flag.",
    checked_in="gateway.config.trust",
)
# Not listed in the reference: the descriptions of upstream_tls, tls.key_file and dpop say as much.
UPSTREAM_TLS_HTTPS = Rule(
    ("routes[i].upstream_tls",), None, _messages(_="applies only to an https:// upstream")
)
CERT_WITH_KEY = Rule(
    ("routes[i].upstream_tls.cert_file", "providers.<name>.tls.cert_file"),
    None,
    _messages(_="required with key_file"),
)
DPOP_BEARER_ONLY = Rule(("routes[i].auth.dpop",), None, _messages(_="applies to bearer routes only"))

#: In the reference's order.
RULES: tuple[Rule, ...] = (
    ROUTE_NAMES_UNIQUE,
    ROUTE_MATCHES_UNIQUE,
    RESERVED_PREFIXES,
    RESOURCE,
    ANY_AUDIENCE_BESIDE_RESOURCE,
    ROUTE_PROVIDER,
    PUBLIC_WITHOUT_PROVIDER,
    PUBLIC_WITHOUT_RULES,
    SCOPES_EXCLUSIVE,
    TOKEN_CARRIERS,
    PUBLIC_URL_FOR_SESSIONS,
    KEY_FOR_SESSIONS,
    KEY_FOR_SHARED_INTROSPECTION,
    IDLE_WITHIN_ABSOLUTE,
    CLIENT_SECRET,
    ADMIN_APART,
    AUDIENCE_REQUIRED,
    MEMORY_STORE_ONE_WORKER,
    PLAIN_HTTP_PROVIDERS,
    UPSTREAM_TLS_HTTPS,
    CERT_WITH_KEY,
    DPOP_BEARER_ONLY,
)
