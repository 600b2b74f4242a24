"""Verified claims to a Principal: subject, scopes (``scope`` or ``scp``), audience and time checks.

Shared by JWT access tokens (RFC 9068 §2.2) and introspection answers (RFC 7662 §2.2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.errors import InvalidToken
from gateway.models import Principal, PrincipalSource


def claims_object(payload: bytes) -> dict[str, Any] | None:
    """A JWT payload as its claims set (RFC 7519 §7.2 step 10: a JSON object), or None; the caller
    raises its own error (invalid token, invalid DPoP proof, invalid logout token)."""
    try:
        # NaN and Infinity are not JSON (RFC 8259 §6): a "NaN" iat would pass every time-window check.
        claims = json.loads(payload, parse_constant=_not_json)
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None
    return claims if isinstance(claims, dict) else None


def _not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """An RFC 7519 §2 NumericDate, or None when absent; anything else (a bool, NaN, text) is refused."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(detail=f"malformed {name}")
    return float(value)


def audiences(claims: Mapping[str, Any]) -> frozenset[str]:
    """RFC 7519 §4.1.3: ``aud`` is one string or an array of strings."""
    aud = claims.get("aud")
    if aud is None:
        return frozenset()
    if isinstance(aud, str):
        return frozenset((aud,))
    if isinstance(aud, list) and all(isinstance(item, str) for item in aud):
        return frozenset(aud)
    raise InvalidToken(detail="malformed aud")


def scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (RFC 8693 §4.2, RFC 7662 §2.2: space-delimited) or ``scp`` (Entra ID: a space-delimited
    string; Okta: a list of strings)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> float | None:
    """RFC 7519 §4.1.4/§4.1.5 with leeway for clock skew; returns ``exp`` (None when absent)."""
    exp = numeric_date(claims, "exp")
    if exp is not None and now >= exp + leeway:
        raise InvalidToken(detail="expired")
    nbf = numeric_date(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken(detail="not yet valid")
    return exp


def build_principal(
    claims: dict[str, Any], source: PrincipalSource, token: str, subject: str, exp: float | None
) -> Principal:
    email = claims.get("email")
    name = claims.get("name")
    return Principal(
        subject=subject,
        source=source,
        scopes=scopes(claims),
        claims=MappingProxyType(claims),  # cached and shared by requests: read-only
        email=email if isinstance(email, str) else None,
        name=name if isinstance(name, str) else None,
        access_token=token,
        expires_at=exp,
    )
