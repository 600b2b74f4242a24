"""Config of what upstreams learn about the caller (DESIGN §8): ``server.signing_key`` for the identity
assertion, ``routes[].auth.claim_headers`` and ``identity_jwt``; their offline checks and cross-field rules.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import AfterValidator, Field, SecretStr

from gateway.errors import ConfigProblem

if TYPE_CHECKING:
    from gateway.config.rules import ConfigParts
    from gateway.config.schema import RouteConfig

ASSERTION_HEADER = "X-Tokengate-Assertion"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 §5.6.2 field-name token
_CLAIM_PATH = r"^[^\s.][^\s]*$"
# Names the gateway sets or that change what the request means (lower-case, "_" read as "-"): a claim
# header may never replace them. X-Auth-Request-* beyond these three are free (oauth2-proxy's -Groups).
_RESERVED = frozenset(
    {
        "host",
        "authorization",
        "proxy-authorization",
        "cookie",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "expect",
        "forwarded",
        "x-request-id",
        "x-real-ip",
        "traceparent",
        "tracestate",
        "x-auth-request",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-scopes",
        "x-auth-request-access-token",
        "x-auth-request-login",
        ASSERTION_HEADER.lower(),
        # hop-by-hop (RFC 9110 §7.6.1)
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    }
)


def canonical_header(name: str) -> str:
    """Header names compared the way spoofed copies are stripped: case-insensitive, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


def _check_header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(f"{name!r} is not a valid header name (RFC 9110 token)")
    canonical = canonical_header(name)
    if canonical in _RESERVED or canonical.startswith("x-forwarded-"):
        raise ValueError(f"{name!r} is set by the gateway or changes what the request means")
    return name


ClaimHeaders = dict[
    Annotated[str, AfterValidator(_check_header_name)],
    Annotated[str, Field(min_length=1, max_length=200, pattern=_CLAIM_PATH)],
]


def _check_signing_key(value: SecretStr) -> SecretStr:
    """Offline: an EC P-256 private key, PEM (SEC 1 or PKCS #8) or a JWK object (RFC 7518 §6.2)."""
    text = value.get_secret_value().strip()
    if text.startswith("{"):
        _check_jwk(text)
        return value
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("expected an EC P-256 private key, PEM or JWK (gen-key --signing)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("expected an EC P-256 key (ES256)")
    return value


def _b64_int(text: object) -> int:
    if not isinstance(text, str):
        raise ValueError("JWK members x, y and d must be base64url strings")
    try:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")
    except (binascii.Error, ValueError):
        raise ValueError("JWK members x, y and d must be base64url strings") from None


def _check_jwk(text: str) -> None:
    try:
        jwk = json.loads(text)
    except ValueError:
        raise ValueError("signing key JWK is not valid JSON") from None
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("expected an EC P-256 JWK (kty EC, crv P-256)")
    if "d" not in jwk:
        raise ValueError("expected the private key (JWK member d), not only the public one")
    try:
        private = ec.derive_private_key(_b64_int(jwk["d"]), ec.SECP256R1())
    except ValueError:
        raise ValueError("JWK member d is not a P-256 private key") from None
    public = private.public_key().public_numbers()
    if (public.x, public.y) != (_b64_int(jwk.get("x")), _b64_int(jwk.get("y"))):
        raise ValueError("JWK members x and y do not belong to d")


SigningKey = Annotated[SecretStr, AfterValidator(_check_signing_key)]


def origin_of(url: str) -> str:
    """``http://orders:8080/base`` -> ``http://orders:8080``: an assertion's ``aud``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def assertion_audience(route: RouteConfig, public_url: str | None) -> str | None:
    """The upstream's origin; for a forward-auth-only route (no upstream), public_url's origin."""
    if route.upstream is not None:
        return origin_of(route.upstream)
    return origin_of(public_url) if public_url else None


def claim_header_names(routes: Iterable[RouteConfig]) -> frozenset[str]:
    """Every configured claim header (canonical spelling): stripped from requests on every route."""
    return frozenset(canonical_header(n) for r in routes for n in r.auth.claim_headers)


def identity_problems(parts: ConfigParts) -> list[ConfigProblem]:
    """identity_jwt needs server.signing_key (and an audience); neither applies to public routes."""
    problems: list[ConfigProblem] = []
    server = parts.server
    for i, route in parts.routes:
        at = f"routes[{i}].auth"
        auth = route.auth
        seen: dict[str, str] = {}
        for name in auth.claim_headers:
            other = seen.setdefault(canonical_header(name), name)
            if other != name:
                problems.append(ConfigProblem(f"{at}.claim_headers.{name}", f"the same header as {other!r}"))
        if auth.mode == "public":
            for key in ("claim_headers", "identity_jwt"):
                if getattr(auth, key):
                    problems.append(ConfigProblem(f"{at}.{key}", "has no effect on a public route"))
            continue
        if not auth.identity_jwt or server is None:
            continue
        if server.signing_key is None:
            problems.append(ConfigProblem(f"{at}.identity_jwt", "requires server.signing_key"))
        if assertion_audience(route, server.public_url) is None:
            problems.append(
                ConfigProblem(
                    f"{at}.identity_jwt",
                    "a route without upstream needs server.public_url (the assertion's aud)",
                )
            )
    return problems
