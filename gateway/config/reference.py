"""``python -m gateway.config.reference``: docs/configuration.md, generated from the config schema.

Every table row comes from a pydantic field (key, type, default, ``Field(description=...)``); the prose
around the tables is written here. The output is deterministic, so a test can compare it with the file.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from gateway.config import schema, values
from gateway.config.loader import parse_config
from gateway.errors import ConfigError


def example_path() -> Path:
    """config/gateway.yaml in the source tree: the commented example included verbatim at the end."""
    return Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"


Noun = tuple[str, str]  # (singular, plural), so "list of URLs" reads right

_SCALARS: dict[object, Noun] = {
    str: ("string", "strings"),
    int: ("int", "ints"),
    float: ("number", "numbers"),
    bool: ("bool", "bools"),
    SecretStr: ("secret string", "secret strings"),
    timedelta: ("duration", "durations"),
}


def _method_validator() -> Callable[..., Any]:
    marker = get_args(values.Method)[1]
    if not isinstance(marker, AfterValidator):  # pragma: no cover - values.Method changed shape
        raise TypeError("values.Method is expected to carry an AfterValidator")
    return marker.func


# Validated string types are named by what they hold, not by their Python type. A renamed validator
# breaks this import loudly instead of silently degrading the reference to "string".
_VALIDATED: dict[Callable[..., Any], Noun] = {
    values.parse_duration: ("duration", "durations"),
    values.check_http_url: ("URL", "URLs"),
    values.check_origin: ("URL (origin, no path)", "URLs (origins, no path)"),
    values.check_listen: ("host:port", "host:port pairs"),
    values.check_redis_url: ("Redis URL", "Redis URLs"),
    values.check_prefix: ("path", "paths"),
    values.check_encryption_key: ("secret: 32-byte key, base64url", "secrets"),
    _method_validator(): ("HTTP method", "HTTP methods"),
}


@dataclass(frozen=True)
class Section:
    """One table: the options of one model, found at ``path`` in the YAML file."""

    path: str  # "" for the top level, then "server", "providers.<name>", "routes[].auth" ...
    description: str
    model: type[BaseModel]


def _is_model(tp: object) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip_annotated(tp: object) -> tuple[object, list[object]]:
    metadata: list[object] = []
    while get_origin(tp) is typing.Annotated:
        tp, *extra = get_args(tp)
        metadata.extend(extra)
    return tp, metadata


def _without_none(tp: object) -> object:
    if get_origin(tp) in (typing.Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def _nested(field: FieldInfo) -> tuple[str, type[BaseModel]] | None:
    """How a field nests a model: ``("", M)`` directly, ``(".<name>", M)`` as a map of them, ``("[]", M)``
    as a list of them; None for a plain option."""
    tp, _ = _strip_annotated(_without_none(field.annotation))
    if _is_model(tp):
        return "", tp
    origin, args = get_origin(tp), get_args(tp)
    if origin is dict and _is_model(args[1]):
        return ".<name>", args[1]
    if origin is list and _is_model(args[0]):
        return "[]", args[0]
    return None


def sections(
    model: type[BaseModel] = schema.GatewayConfig, path: str = "", description: str = ""
) -> Iterator[Section]:
    """Every model reachable from ``model``, depth first in field order (the order of the file)."""
    yield Section(path, description, model)
    for name, field in model.model_fields.items():
        nested = _nested(field)
        if nested is None:
            continue
        suffix, child = nested
        key = field.alias or name
        yield from sections(
            child, f"{path}.{key}{suffix}" if path else f"{key}{suffix}", field.description or ""
        )


def _constraints(metadata: Sequence[object]) -> list[str]:
    # Field(...) inside Annotated arrives as a FieldInfo carrying its own metadata (the key patterns).
    metadata = [m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
    out: list[str] = []
    ge = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    le = next((m.le for m in metadata if hasattr(m, "le")), None)
    if ge is not None and le is not None:
        out.append(f"{ge}-{le}")
    elif ge is not None:
        out.append(f">= {ge}")
    elif le is not None:
        out.append(f"<= {le}")
    for m in metadata:
        min_length = getattr(m, "min_length", None)
        if min_length is not None:
            out.append(f"at least {min_length}" if min_length > 1 else "not empty")
        pattern = getattr(m, "pattern", None)
        if pattern is not None:
            out.append(f"matching `{pattern}`")
    return out


def noun(tp: object, metadata: Sequence[object] = ()) -> Noun:
    """A human-readable name for a field type: "duration", "list of strings", "map of string to URL"."""
    tp, inner = _strip_annotated(tp)
    metadata = [*inner, *metadata]
    for m in metadata:
        if isinstance(m, AfterValidator | BeforeValidator) and m.func in _VALIDATED:
            return _VALIDATED[m.func]
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if set(members) <= {IPv4Network, IPv6Network}:
            return "CIDR", "CIDRs"
        if len(members) == 1:
            return noun(members[0], metadata)
        nouns = [noun(a) for a in members]
        return (
            ", ".join(n[0] for n in nouns[:-1]) + " or " + nouns[-1][0],
            ", ".join(n[1] for n in nouns[:-1]) + " or " + nouns[-1][1],
        )
    if origin is typing.Literal:
        choices = " or ".join(f"`{a}`" for a in args)
        return choices, choices
    if origin is list:
        item = noun(args[0])[1]
        return f"list of {item}", f"lists of {item}"
    if origin is dict:
        key, value = noun(args[0])[0], noun(args[1])[0]
        return f"map of {key} to {value}", f"maps of {key} to {value}"
    if tp in _SCALARS:
        return _SCALARS[tp]
    if _is_model(tp):
        return "section", "sections"
    raise TypeError(f"no readable name for the config type {tp!r}: extend gateway/config/reference.py")


def type_cell(field: FieldInfo, child_path: str | None) -> str:
    tp = _without_none(field.annotation)
    bare, inner = _strip_annotated(tp)
    if child_path is not None:
        origin = get_origin(bare)
        if origin is dict:
            key_meta = _strip_annotated(get_args(bare)[0])[1]
            where = f"map of name to `{child_path}` sections"
            extra = _constraints(key_meta)
            return where + (f" (names {', '.join(extra)})" if extra else "")
        if origin is list:
            extra = _constraints(field.metadata)
            return f"list of `{child_path}` entries" + (f", {', '.join(extra)}" if extra else "")
        return f"section `{child_path}`"
    text = noun(tp, field.metadata)[0]
    extra = _constraints([*inner, *field.metadata])
    return text + (f", {', '.join(extra)}" if extra else "")


def format_duration(value: timedelta) -> str:
    """The largest unit that states the value exactly: 500ms, 30s, 15m, 12h, 1d."""
    ms = round(value.total_seconds() * 1000)
    if not ms:
        return "0s"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_cell(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "not set"
    return f"`{_yaml_scalar(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(section: Section) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in section.model.model_fields.items():
        key = field.alias or name
        nested = _nested(field)
        child = None
        if nested is not None:
            child = f"{section.path}.{key}{nested[0]}" if section.path else f"{key}{nested[0]}"
        rows.append(
            f"| `{key}` | {_cell(type_cell(field, child))} | {default_cell(field)} "
            f"| {_cell(field.description or '')} |"
        )
    return rows


def _markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_MODES = _markdown_table(
    ("`mode`", "credentials", "without them"),
    [
        ("`public`", "none; the client's `Authorization` header is forwarded untouched", "-"),
        (
            "`bearer`",
            "`Authorization: Bearer <token>` (or a legacy carrier the route allows)",
            '401 with `WWW-Authenticate: Bearer realm="tokengate"`',
        ),
        (
            "`session`",
            "the session cookie from a login at `/oauth2/login`",
            "browser navigation: 302 to `/oauth2/login?rd=...`; other requests: 401 `login_required`",
        ),
        ("`bearer_or_session`", "a bearer token when the request has one, else the session", "as `session`"),
    ],
)

_CROSS_FIELD = _markdown_table(
    ("path", "rule"),
    [
        ("`routes[i].name`", "Route names are unique."),
        (
            "`routes[i].match`",
            "No two routes match exactly the same requests (same `host` ignoring case, same `path_prefix` "
            "ignoring a trailing slash, same set of `methods`).",
        ),
        (
            "`routes[i].match.path_prefix`",
            "`/oauth2` and everything under `/oauth2/` are reserved for the gateway's own endpoints; so "
            "are `/.well-known/oauth-protected-resource` and everything under it (RFC 9728 metadata).",
        ),
        (
            "`routes[i].auth.resource`",
            "Only on `bearer` and `bearer_or_session` routes. An absolute `https://` URL (plain `http://` "
            "only on loopback) without query, fragment or userinfo, with a normalised path. Routes that "
            "publish at the same metadata URL must name the same resource and provider.",
        ),
        (
            "`routes[i].auth.audience`",
            '`"*"` is refused beside `resource`: the token\'s `aud` must hold the resource anyway.',
        ),
        (
            "`routes[i].auth.provider`",
            "Required for every mode but `public`, and must name a key under `providers`.",
        ),
        (
            "`routes[i].auth.provider`, `routes[i].auth.audience`",
            "Not allowed on a `public` route (they would have no effect).",
        ),
        ("`routes[i].auth`", "A `public` route cannot have `scopes`, `scopes_by_method` or `require` rules."),
        ("`routes[i].auth.scopes_by_method`", "Give either `scopes` or `scopes_by_method`, not both."),
        (
            "`routes[i].auth`",
            "`allow_query_token` and `allow_form_token` apply to `bearer` and `bearer_or_session` routes "
            "only, not to `session` routes.",
        ),
        (
            "`server.public_url`",
            "Required when any route uses `session` or `bearer_or_session` (the redirect URI is built "
            "from it).",
        ),
        ("`sessions.encryption_key`", "Required when any route uses `session` or `bearer_or_session`."),
        (
            "`sessions.encryption_key`",
            "Also required when a bearer route uses `validate: introspection` and the file has a "
            "`sessions` section with `store: redis`: introspection answers are then shared by the "
            "replicas through Redis, encrypted and authenticated with this key. Without a `sessions` "
            "section the introspection cache stays inside each process.",
        ),
        ("`sessions.idle_timeout`", "Must not exceed `sessions.absolute_timeout`."),
        (
            "`providers.<name>.client_secret`",
            "Required (the gateway is a confidential client). A provider with only "
            "`introspection_client_secret` passes, and then identifies itself at the token endpoint by "
            "`client_id` alone.",
        ),
        ("`server.admin_listen`", "Must differ from `server.listen`."),
        (
            "`routes[i].auth.audience`",
            'Required on `bearer` and `bearer_or_session` routes; `"*"` accepts any audience and is '
            "logged as a warning at start (see [security.md](security.md#configuration-rules)).",
        ),
        ("`sessions.store`", "`memory` is refused when `server.workers` is more than 1."),
        (
            "`providers.<name>.issuer`, `providers.<name>.endpoints.<endpoint>`",
            "A plain `http://` URL is refused unless its host is loopback (`127.0.0.0/8`, `::1`, "
            "`localhost`) or the provider sets `allow_insecure_http: true`. Host names are not "
            "resolved: docker-compose or Kubernetes service names need the flag.",
        ),
    ],
)


# Notes under a section's table: behaviour the one-line descriptions cannot hold. Keyed by section path;
# render() refuses a key that names no section, so a renamed section cannot leave its notes behind.
_NOTES: dict[str, str] = {
    "server": """\
- `listen`, `admin_listen` and `workers` take effect only after a restart (a reload logs a warning
  for each). The drain time of `shutdown_grace`, and whether `tls` is set, are also read once at
  start; everything else applies on reload (`keepalive_timeout` to connections opened after it), and
  a reload reads every certificate file again.
- Each timeout bounds one thing: `keepalive_timeout` an idle connection (between requests, or before
  the first), `header_timeout` a request head from its first byte, `body_timeout` the silence within
  a request body (the client's: not while the gateway waits for the upstream to take the bytes),
  `upstream_connect_timeout` the connection to the upstream, `upstream_timeout` (or the route's
  `timeout`) the wait from the end of the request to the upstream's answer headers, and
  `upstream_idle_timeout` the silence between answer body chunks. See docs/operations.md, "Timeouts".
- `trusted_proxies`: only from these peers are `X-Forwarded-For` (appended to), `X-Forwarded-Proto`,
  `X-Forwarded-Host` and `X-Request-Id` believed. From any other peer the gateway sets
  `X-Forwarded-For` to the peer address and `-Proto` / `-Host` to its own values. IPv4-mapped IPv6
  peers are compared as IPv4.
- `max_body_size` is checked against `Content-Length` before anything is sent upstream, and counted
  while a chunked body streams; either way the answer is 413.
""",
    "providers.<name>": """\
- **Metadata.** Unless every endpoint the routes need is given under `endpoints`, the gateway fetches
  `<issuer>/.well-known/openid-configuration` and, when that answers 4xx, the RFC 8414 document
  `/.well-known/oauth-authorization-server<issuer path>`. The document's `issuer` must equal `issuer`
  exactly; endpoints given under `endpoints` override the document's. Metadata loads in the background
  at start with retries (0.2 s, doubling to 30 s) and is reloaded hourly; `/readyz` answers 503 until
  every provider that a route uses is loaded, and requests that need a provider answer 503 meanwhile.
  A provider that no route uses is never contacted.
- **Endpoints needed**: bearer routes with `validate: jwt` need `jwks`; with `validate: introspection`,
  `introspection`. Session routes need `authorization` and `token`, plus `jwks` when `scopes` contains
  `openid` (the ID token is validated), otherwise `userinfo` when it is configured, otherwise
  `introspection` (to learn the user's `sub`). `revocation` and `end_session` are used at logout when
  known.
- **`openid` in `scopes`** makes the login OpenID Connect: a `nonce` is sent and an ID token is required
  and validated. Without it the provider is treated as a plain OAuth 2.0 server.
- `client_auth` is used at the token, introspection and revocation endpoints.
  `introspection_client_id` switches introspection to another client, whose secret is
  `introspection_client_secret` (or `client_secret` when that is unset).
- `extra_auth_params` cannot replace the parameters the gateway sets itself (`client_id`,
  `response_type`, `redirect_uri`, `scope`, `state`, `nonce`, `code_challenge`, `code_challenge_method`);
  such keys are ignored.
- `timeout` bounds each call as a whole (connect, send, wait, read). Recipes for common providers:
  [providers.md](providers.md).
""",
    "sessions": """\
- `redis_url` forms (plain, TLS, unix socket, Sentinel, Cluster) are listed in
  [deployment.md](deployment.md#redis). Every key has a TTL and lives under `key_prefix`:
  `session:{<sha256 of the session id>}`, `lock:refresh:{<sha256 of the session id>}`,
  `login:<sha256 of state>`, `introspect:<sha256 of issuer, endpoint and token>`, and for back-channel
  logout `bcl:sid:{<sha256>}` / `bcl:sub:{<sha256>}` (sorted sets of hashed session ids) and
  `replay:logout:<sha256 of issuer and jti>` ([backchannel-logout.md](backchannel-logout.md)). Sessions, login
  states and cache entries are encrypted with AES-256-GCM under `encryption_key`, with their own Redis
  key as associated data (the lock holds only a random owner id).
- `store: memory` keeps sessions in the process: they are not shared by replicas (and are refused with
  `server.workers` > 1), and are lost on a restart and on a reload that changes `sessions`.
- With no session route, Redis serves only as the shared introspection cache: its outage is shown in
  `/readyz` (`introspection_cache`) but does not make the gateway unready; misses go to the provider.
- The cookie holds only the random session id (256 bits): `HttpOnly`, `SameSite=Lax`, `Path=/`,
  `Max-Age` = `absolute_timeout`; when `server.public_url` is https it is `Secure` and its name gets the
  `__Host-` prefix.
- Changing `encryption_key` ends every session (stored records can no longer be decrypted).
""",
    "routes[]": """\
- **Route choice.** The path is normalised first (see [security.md](security.md#path-normalisation)).
  Routes with a `host` equal to the request's `Host` (case-insensitive, port ignored) are tried first;
  routes without `host` only when none of those covers the path. Among the candidates the longest
  `path_prefix` wins, counted in whole segments; at equal prefixes, the first route in file order whose
  `methods` include the request's method. When none of the longest prefix's routes takes the method
  the answer is 405 with `Allow`, never a route with a shorter prefix. Nothing matches: 404. Prefixes
  compare case-sensitively unless `server.case_insensitive_paths`. `tokengate explain METHOD URL` shows
  the choice and why the other routes were not chosen.
- The upstream receives the normalised path (without the prefix's segments when `strip_prefix`),
  appended to `upstream`'s own path, and the query string unchanged.
""",
    "routes[].auth": _MODES
    + """

- Scopes come from the token's `scope` (space-separated) or `scp` (string or list) claim, or, on
  session routes, from the `scope` of the token endpoint's answer. A missing scope is 403
  `insufficient_scope` with `scope="<the route's required scopes>"`.
- `scopes_by_method`: a method that is neither listed nor covered by `"*"` requires no scope; give
  `"*"` unless that is meant.
- `audience` applies to bearer tokens (the JWT's or the introspection answer's `aud`) and is required
  on `bearer` and `bearer_or_session` routes, so that ID tokens, refresh tokens and other APIs' tokens
  are refused; `"*"` accepts any audience (a warning at start). Session routes do not check it. See
  [security.md](security.md#configuration-rules).
- `resource` (RFC 9728, RFC 8707): bearer tokens must hold **both** `audience` and `resource` in `aud`;
  with a provider that puts the resource indicator in `aud` (oidc-provider, Keycloak with an audience
  mapper, Entra ID v1 tokens) set `audience` to the same URL. The gateway answers
  `GET /.well-known/oauth-protected-resource<path of resource>` itself and every challenge of the route
  names that URL as `resource_metadata`. See
  [protected-resource-metadata.md](protected-resource-metadata.md).
- On every route but `public` the client's `Authorization` header is removed; the gateway sets its own
  when `forward_token` is true (on session routes: the session's current access token).
- An `access_token` in the query string, or in a form body (`application/x-www-form-urlencoded`
  POST, PUT or PATCH of up to 64 KiB), is refused with 400 `invalid_request` unless the route allows
  that carrier; an allowed one is removed from the URL or body before forwarding.
""",
    "routes[].auth.require": """\
- Rules are checked after the scopes and all of them must pass. They see the verified claims: the
  JWT's, the introspection answer's, or on session routes the ID token's and userinfo's claims taken
  at login (not the access token's).
- `claims`: a list-valued claim matches when any element matches; values compare with their type
  (`true` does not match `1`, nor `"1"` match `1`); `realm_access.roles` walks nested objects, but a
  top-level claim whose name contains dots (`https://example.com/roles`) is matched first. A claim the
  principal lacks denies.
- `email_domains`: the exact domain after the address's single `@` (case-insensitive); an
  `email_verified: false` claim denies.
- A failed rule is 403 `access_denied` (JSON; for a browser navigation a small page with a sign-out
  button); the access log names the failed rules (`claim:groups`, `email_domain`, `subject`), never
  the claim values.
- `acr` / `max_age` (RFC 9470 step-up, [step-up.md](step-up.md)) are checked last, once every other
  rule passed. On session routes they read the `acr` / `auth_time` of the login's ID token (never
  userinfo's). A bearer token that fails them gets 401 `insufficient_user_authentication` with
  `acr_values` / `max_age` in the challenge; a browser session is sent through the login again, asking
  the provider for them (`step_up:acr` / `step_up:max_age` in the access log).
""",
}

# ---- the hand-written parts ---------------------------------------------------------------------------

_INTRO = """\
# Configuration reference

<!-- Generated from gateway/config/schema.py by `python -m gateway.config.reference`.
     Do not edit by hand: change the schema's Field descriptions, then run `make docs`. -->

tokengate reads one YAML file: `tokengate run --config PATH` (default `config/gateway.yaml`; in the
container image `/etc/tokengate/gateway.yaml`). This page lists every option, generated from the schema
the gateway validates with (the tables cannot drift from the code; the notes under them are written
by hand). [`config/`](../config) holds a small example per use; the complete commented example is at
the [end of this page](#complete-example).

## How the file is read

- **Environment variables.** `${VAR}` and `${VAR:-default}` in a string value are replaced from the
  environment, so secrets never need to be written in the file
  (`client_secret: "${TOKENGATE_CLIENT_SECRET}"`).
  Substitution happens after the YAML is parsed, in values only (never in keys), so a variable's value
  cannot inject YAML structure. A variable that is not set and has no default is an error that names
  the variable. Unlike the shell, `:-` applies only when the variable is unset: a variable set to the
  empty string stays empty. A value that is entirely a variable is still converted to the option's type
  (`workers: "${WORKERS:-2}"` is the int 2).
- **Durations** are strings: a number (decimals allowed) and a unit, `ms`, `s`, `m`, `h` or `d`:
  `500ms`, `30s`, `1.5m`, `12h`, `1d`; several terms as Go writes them (oauth2-proxy, Pomerium) work
  too: `1h30m`, `2m0.5s`, `300us`. A bare number such as `30` is refused, because its unit would be
  a guess.
- **Unknown keys are errors**, everywhere: a misspelt option is reported, never silently ignored, with
  the nearest valid key at that place when one is close (`unknown key (did you mean 'scopes'?)`).
- **Every problem is reported at once**, each with its YAML path and, where known, its line. Paths
  read like the file: `server.upstream_timeout`, `providers.main.issuer`, `routes[2].auth.scopes`
  (list indexes count from 0).
- **Validate offline** with `tokengate check-config FILE`: no network, no Redis. It prints
  `FILE: OK (N routes, M providers)` and exits 0, or prints every problem and exits 2 (a missing file
  or invalid YAML too). The variables the file references must be set (dummy values do).
- **Reload.** A running gateway reloads the file on `SIGHUP` and when it changes; an invalid file is
  refused and the running configuration kept. See [operations](operations.md#reload).

For example, this file:

```yaml
{broken}
```

gives (`tokengate check-config gateway.yaml`, exit status 2):

```text
{errors}
```
"""

_RULES = (
    """\
## Rules across fields

Checked after every option is valid on its own; each is reported with the path shown.

"""
    + _CROSS_FIELD
    + """

Other notes that follow from the types:

- `path_prefix` must already be normalised (no `.`, `..`, `//`, `%` or `\\`); a trailing slash is
  insignificant (`/api/` matches `/api` and `/api/x`, exactly like `/api`).
- `issuer` is kept exactly as written: it must equal the provider's own spelling (Auth0's ends in `/`).
  `public_url` loses a trailing slash and may not have a path.
- `validate` is the YAML key of the field the code calls `validation`; error paths use `validate`.
"""
)


def _broken_example() -> tuple[str, str]:
    text = (
        "server:\n"
        '  listen: "0.0.0.0:8080"\n'
        "  upstream_timout: 30s\n"
        "  shutdown_grace: 25\n"
        "providers:\n"
        "  main:\n"
        '    issuer: "idp.example.com"\n'
        "    client_id: tokengate\n"
        '    client_secret: "${TOKENGATE_CLIENT_SECRET}"'
    )
    try:
        parse_config(text, "gateway.yaml", env={})
    except ConfigError as exc:
        count = len(exc.problems)
        lines = [f"{exc.source}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {problem}" for problem in exc.problems]
        return text, "\n".join(lines)
    raise AssertionError("the broken example validated")  # pragma: no cover


def render(example: str) -> str:
    """The whole of docs/configuration.md; ``example`` is config/gateway.yaml's text."""
    broken, errors = _broken_example()
    out = [_INTRO.replace("{broken}", broken).replace("{errors}", errors)]
    out.append("## Options\n")
    all_sections = list(sections())
    unknown = set(_NOTES).difference(s.path for s in all_sections)
    if unknown:
        raise ValueError(f"notes for sections that do not exist: {sorted(unknown)}")
    for section in all_sections:
        title = f"`{section.path}`" if section.path else "Top level"
        out.append(f"### {title}\n")
        if section.description:
            out.append(section.description + "\n")
        out.append("\n".join(table(section)) + "\n")
        if section.path in _NOTES:
            out.append(_NOTES[section.path])
    out.append(_RULES)
    out.append("## Complete example\n")
    out.append("[`config/gateway.yaml`](../config/gateway.yaml), every option with a comment:\n")
    out.append("```yaml\n" + example.rstrip("\n") + "\n```\n")
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render(example_path().read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
