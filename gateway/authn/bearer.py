"""Bearer tokens at the resource server (RFC 6750): the checks a verified token must still pass."""

from __future__ import annotations

from gateway.errors import InvalidToken
from gateway.models import Principal
from gateway.oidc.claims import audiences


def require_resource(principal: Principal, resource: str | None) -> None:
    """RFC 8707 §2 / RFC 9068 §4: a token for this resource names it in ``aud``; a token minted for
    another resource (or for none) is refused like any audience mismatch."""
    if resource is not None and resource not in audiences(principal.claims):
        raise InvalidToken(detail="resource not in aud (RFC 8707)")
