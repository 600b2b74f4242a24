"""What an upstream learns about the caller beyond DESIGN §4's headers (DESIGN §8): ``claim_headers`` and
the signed ``X-Tokengate-Assertion`` (cached per principal and route); the key set the gateway publishes.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.identity import ASSERTION_HEADER, assertion_audience, claim_header_names
from gateway.config.schema import GatewayConfig, RouteConfig
from gateway.errors import AccessDenied
from gateway.models import Principal
from gateway.oidc.assertion import ASSERTION_LIFETIME, AssertionSigner, load_signing_key
from gateway.policy import lookup_claim

# A cached assertion is re-signed once less than this is left of its 5 minutes: upstreams always get
# at least 4 minutes of validity, and one principal costs one ES256 signature a minute per route.
RESIGN_BELOW = 240.0
_CACHE_MAX = 10_000


class Outcome(Protocol):
    """Where a request's decision is recorded for the access log and the span (web's RequestState)."""

    decision: str
    reasons: tuple[str, ...]


class UnsafeClaim(AccessDenied):
    """A claim that no header value can carry faithfully (DESIGN §7: 403, never a 500)."""

    code = "access_denied"
    message = "a claim of this caller cannot be sent to the upstream"


def _clean(text: str) -> str:
    # Header values from claims: no control character (C0, DEL, C1 such as NEL) nor line or paragraph
    # separator may reach the wire (response splitting), and no edge whitespace that parsers trim.
    if text.isprintable() and text == text.strip():
        return text
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Zl", "Zp")).strip()


def _scalar(value: object, header: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _clean(value)
    raise UnsafeClaim(reasons=("unsafe_claim_header",), detail=f"{header}: claim is an object")


def claim_header_value(value: object, header: str) -> str | None:
    """A claim as one header value: lists joined by ``,``; None (no header) when absent or empty.

    A list element with a ``,`` would read as two values upstream ("staff,admins" is not "admins"),
    so it is refused rather than mangled."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [_scalar(v, header) for v in value]
        if any("," in item for item in items):
            raise UnsafeClaim(reasons=("unsafe_claim_header",), detail=f"{header}: list element with ','")
        return ",".join(items) if items else None
    return _scalar(value, header)


def claim_headers(principal: Principal, mapping: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The claim headers of one principal (raises UnsafeClaim)."""
    out = []
    for header, path in mapping:
        found = lookup_claim(principal.claims, path)
        if not isinstance(found, str | int | float | list | tuple | Mapping):
            continue  # absent (the lookup's sentinel) or null: no header
        value = claim_header_value(found, header)
        if value is not None:
            out.append((header, value))
    return out


def groups_of(principal: Principal) -> tuple[str, ...] | None:
    groups = principal.claims.get("groups")
    if isinstance(groups, str):
        return (groups,)
    if isinstance(groups, list | tuple) and all(isinstance(g, str) for g in groups):
        return tuple(groups)
    return None


def assertion_claims(issuer: str, audience: str, principal: Principal, iat: int) -> dict[str, Any]:
    """What the assertion carries (explain shows this; AssertionSigner.sign adds ``jti``)."""
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": principal.subject}
    if principal.email:
        claims["email"] = principal.email
    groups = groups_of(principal)
    if groups is not None:
        claims["groups"] = list(groups)
    claims.update(iat=iat, exp=iat + int(ASSERTION_LIFETIME))
    return claims


@dataclass(frozen=True, slots=True)
class RouteIdentity:
    claim_headers: tuple[tuple[str, str], ...]
    audience: str | None  # None: no assertion on this route


class Identity:
    """Per runtime: the signer (key parsed once), each route's settings and the assertion cache."""

    def __init__(
        self,
        cfg: GatewayConfig,
        clock: Callable[[], float],
    ) -> None:
        server = cfg.server
        key = server.signing_key
        self.signer = AssertionSigner(load_signing_key(key.get_secret_value())) if key is not None else None
        self.issuer = server.public_url or ""
        self.clock = clock
        self.strip = claim_header_names(cfg.routes) | {ASSERTION_HEADER.lower()}
        self.routes: dict[str, RouteIdentity] = {}
        for route in cfg.routes:
            settings = self.settings_for(route, server.public_url)
            if settings is not None:
                self.routes[route.name] = settings
        self.jwks: dict[str, Any] | None = None
        if self.signer is not None:
            keys = list(self.signer.jwks["keys"])
            for old in server.previous_signing_keys:
                retired = AssertionSigner(load_signing_key(old.get_secret_value()))
                keys += [k for k in retired.jwks["keys"] if k["kid"] != self.signer.kid]
            self.jwks = {"keys": keys}
        self._cache: dict[tuple[str, str, str | None, tuple[str, ...] | None], tuple[str, float]] = {}

    @staticmethod
    def settings_for(route: RouteConfig, public_url: str | None) -> RouteIdentity | None:
        auth = route.auth
        if auth.mode == "public" or not (auth.claim_headers or auth.identity_jwt):
            return None
        audience = assertion_audience(route, public_url) if auth.identity_jwt else None
        return RouteIdentity(tuple(auth.claim_headers.items()), audience)

    def headers(
        self, route: str, principal: Principal, state: Outcome | None = None
    ) -> list[tuple[str, str]]:
        """Claim headers and the assertion for one admitted request; [] for routes with neither.
        An unsafe claim turns the request's decision into a deny (access log, span) and raises."""
        settings = self.routes.get(route)
        if settings is None:
            return []
        try:
            out = claim_headers(principal, settings.claim_headers) if settings.claim_headers else []
        except UnsafeClaim as exc:
            if state is not None:
                state.decision, state.reasons = "deny", exc.reasons
            raise
        if settings.audience is not None and self.signer is not None:
            out.append((ASSERTION_HEADER, self.assertion(route, settings.audience, principal)))
        return out

    def assertion(self, route: str, audience: str, principal: Principal) -> str:
        signer = self.signer
        assert signer is not None
        now = self.clock()
        key = (route, principal.subject, principal.email, groups_of(principal))
        cached = self._cache.get(key)
        if cached is not None and cached[1] - now >= RESIGN_BELOW:
            return cached[0]
        groups = key[3]
        token = signer.sign(
            issuer=self.issuer,
            audience=audience,
            subject=principal.subject,
            email=principal.email,
            groups=groups,
            now=now,
        )
        if len(self._cache) >= _CACHE_MAX:
            del self._cache[next(iter(self._cache))]  # oldest first: bounded memory, no scans
        self._cache[key] = (token, int(now) + ASSERTION_LIFETIME)
        return token


def describe(cfg: GatewayConfig, route: RouteConfig, principal: Principal) -> list[tuple[str, str]]:
    """What the upstream (or a forward-auth answer) would carry for ``principal``: (header, value),
    the assertion as its claims (``tokengate explain``; no key, no signature needed). Raises UnsafeClaim."""
    out = [("X-Auth-Request-User", _clean(principal.subject))]
    if principal.email:
        out.append(("X-Auth-Request-Email", _clean(principal.email)))
    if principal.scopes:
        out.append(("X-Auth-Request-Scopes", " ".join(sorted(principal.scopes))))
    if route.auth.forward_token and route.upstream is None:  # a forward-auth answer's spelling
        out.append(("X-Auth-Request-Access-Token", "<the caller's access token>"))
    elif route.auth.forward_token:
        out.append(("Authorization", "Bearer <the caller's access token>"))
    settings = Identity.settings_for(route, cfg.server.public_url)
    if settings is None:
        return out
    out += claim_headers(principal, settings.claim_headers)
    if settings.audience is not None:
        claims = assertion_claims(cfg.server.public_url or "", settings.audience, principal, 0)
        claims.update(iat="<now>", exp="<now + 300>", jti="<random>")
        out.append((ASSERTION_HEADER, "ES256 JWT " + json.dumps(claims)))
    return out
