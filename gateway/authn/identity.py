"""DESIGN §4's identity headers of an admitted principal (X-Auth-Request-User, -Email, -Scopes), and the
rule that a claim no header can carry faithfully refuses the request (DESIGN §7) instead of being altered.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from gateway import metrics
from gateway.authn.facts import Record
from gateway.errors import AccessDenied, InvalidToken
from gateway.models import Principal
from gateway.runtime import CompiledRoute

# RFC 6749 §3.3 scope-token: NQCHAR only, so no space can split one scope into two upstream; a scope
# string is such tokens separated by single spaces (a tab or CR LF there is no separator, but a forgery).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
_SCOPE_STRING = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]*$")


def _faithful(value: str) -> bool:
    """Can this claim be an identity header value exactly as it is (DESIGN §7)? Not with a control or
    line-separator character (header splitting, NUL truncation), nor with the leading or trailing
    whitespace that header parsers trim (``"alice "`` would reach the upstream as ``alice``)."""
    if value[:1].isspace() or value[-1:].isspace():
        return False
    return value.isprintable() or not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


@lru_cache(maxsize=4096)
def identity_values(
    subject: str, email: str | None, scopes: frozenset[str], scope_text: str | None = None
) -> tuple[str, str, str] | None:
    """The identity header values of a principal, or None when a claim cannot be forwarded faithfully:
    altering it (stripping a NUL) could name another user upstream, so the request is refused instead.
    Computed once per distinct caller, not per request."""
    if not _faithful(subject) or (email and not _faithful(email)):
        return None
    if not all(_SCOPE_TOKEN.match(scope) for scope in scopes):
        return None
    if scope_text is not None and not _SCOPE_STRING.match(scope_text):
        return None
    return subject, email or "", " ".join(sorted(scopes))


def _scope_text(principal: Principal) -> str | None:
    """The space-delimited scope claim as the token carried it, before it was split (``scope`` or ``scp``,
    the first present: the order gateway.oidc.claims.scopes reads them in)."""
    for name in ("scope", "scp"):
        value = principal.claims.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return None
    return None


def identity_of(principal: Principal, route: CompiledRoute, state: Record) -> tuple[str, str, str]:
    """(user, email, scopes) for the identity headers, or a refusal when a claim cannot be forwarded
    faithfully (DESIGN §7): 401 invalid_token for a bearer token, 403 for a session. Shared by the
    proxy and forward-auth, so both refuse alike."""
    values = identity_values(principal.subject, principal.email, principal.scopes, _scope_text(principal))
    if values is None:
        state.reasons = ("unsafe_claim",)
        metrics.child(metrics.AUTH_DECISIONS, route.name, "deny", "unsafe_claim").inc()
        detail = "a sub, email or scope claim holds characters no header may carry"
        if state.auth == "bearer":
            raise InvalidToken(detail=detail)
        raise AccessDenied(reasons=("unsafe_claim",), detail=detail)
    return values


def identity_pairs(principal: Principal, route: CompiledRoute, state: Record) -> list[tuple[str, str]]:
    """DESIGN §4's identity headers of an admitted principal: request headers to the upstream, or a
    forward-auth verdict's response headers."""
    user, email, scopes = identity_of(principal, route, state)
    pairs = [("X-Auth-Request-User", user)]
    if email:
        pairs.append(("X-Auth-Request-Email", email))
    if scopes:
        pairs.append(("X-Auth-Request-Scopes", scopes))
    return pairs
