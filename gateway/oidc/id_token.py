"""ID token validation for the code flow (OIDC Core §3.1.3.7): joserfc checks the signature against the
provider's JWKS, authlib's CodeIDToken checks iss, aud, azp, exp, iat, nonce and at_hash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from authlib.oidc.core import CodeIDToken
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError

from gateway.errors import InvalidToken, LoginFailed
from gateway.oidc.access_token import check_signature, parse_compact
from gateway.oidc.jwks import ALLOWED_ALGORITHMS, JwksCache


class IdTokenValidator:
    """Validates ID tokens of one issuer for one client; every failure is LoginFailed, except that the
    JWKS being unreachable stays ProviderUnavailable (503: the login can be retried)."""

    def __init__(
        self, issuer: str, client_id: str, jwks: JwksCache, clock: Callable[[], float], leeway: float
    ) -> None:
        self._issuer = issuer
        self._client_id = client_id
        self._jwks = jwks
        self._clock = clock
        self._leeway = leeway

    async def validate(self, id_token: str, *, nonce: str | None, access_token: str | None) -> dict[str, Any]:
        try:
            obj = parse_compact(id_token, what="id_token")
            header = obj.headers()
            alg = header.get("alg")
            # OIDC Core §3.1.3.7 step 6-7: asymmetric algorithms only (no "none", no HS* with the secret).
            if alg not in ALLOWED_ALGORITHMS:
                raise InvalidToken(detail="id_token algorithm not allowed")
            typ = header.get("typ")
            if isinstance(typ, str) and typ.lower() in ("at+jwt", "application/at+jwt"):
                raise InvalidToken(detail="an access token is not an id_token")
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise InvalidToken(detail="malformed id_token kid")
            key = await self._jwks.key_for(kid, alg)
            check_signature(obj, key, alg)
            claims = json.loads(obj.payload)
        except InvalidToken as exc:
            raise LoginFailed(detail=exc.detail) from exc
        except ValueError as exc:
            raise LoginFailed(detail="malformed id_token claims") from exc
        if not isinstance(claims, dict):
            raise LoginFailed(detail="malformed id_token claims")
        check_claims(
            claims,
            header,
            issuer=self._issuer,
            client_id=self._client_id,
            nonce=nonce,
            access_token=access_token,
            now=self._clock(),
            leeway=self._leeway,
        )
        return claims


def check_claims(
    claims: dict[str, Any],
    header: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    access_token: str | None,
    now: float,
    leeway: float,
) -> None:
    """A typed wrapper around authlib's CodeIDToken (authlib has no type hints)."""
    options = {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id}}
    params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
    try:
        # iss exact (step 2), aud contains client_id (3), azp when several audiences (4-5), exp (9),
        # iat not in the future (10), nonce (11), at_hash when present (§3.1.3.8).
        CodeIDToken(claims, header, options, params).validate(now=int(now), leeway=int(leeway))
    except ExpiredTokenError as exc:
        raise LoginFailed(detail="id_token expired") from exc
    except ClaimError as exc:
        raise LoginFailed(detail=f"id_token {exc.error}: {exc.claim}") from exc
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise LoginFailed(detail=f"id_token rejected: {type(exc).__name__}") from exc
