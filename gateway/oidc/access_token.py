"""JWT access tokens (RFC 9068) verified locally against the provider's JWKS, with a verified-token cache.

The cache is keyed by the token's SHA-256 and kept until ``exp``; a hit still rechecks the expiry
against the clock and the route's audience, so a cached token never skips either check.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import Key
from joserfc.jws import CompactSignature, JWSRegistry

from gateway.errors import InvalidToken
from gateway.models import Principal
from gateway.oidc.claims import audiences, build_principal, check_times, claims_object
from gateway.oidc.jwks import ALLOWED_ALGORITHMS, JwksCache

# RFC 9068 §4: "at+jwt" (also as a media type). A plain JWT ("JWT" or no typ at all) is accepted too,
# because many providers (Entra ID, Auth0, Keycloak) issue access tokens without the RFC 9068 typ.
_ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt", "jwt", "application/jwt"})

# strict_check_header=False: providers add their own header members (x5t, nonce, ...); "crit" is
# still enforced (RFC 7515 §4.1.11).
REGISTRY = JWSRegistry(algorithms=sorted(ALLOWED_ALGORITHMS), strict_check_header=False)


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    valid_until: float  # exp + leeway
    audiences: frozenset[str]


def parse_compact(token: str, *, what: str = "token") -> CompactSignature:
    """Split and decode a compact JWS; JWE (five parts) and anything malformed are refused."""
    dots = token.count(".")
    if dots == 4:
        raise InvalidToken(detail=f"encrypted {what} (JWE) is not accepted")
    if dots != 2:
        raise InvalidToken(detail=f"malformed {what}")
    try:
        return jws.extract_compact(token.encode("ascii"), registry=REGISTRY)
    except (JoseError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidToken(detail=f"malformed {what}") from exc


def check_signature(obj: CompactSignature, key: Key, alg: str) -> None:
    try:
        with warnings.catch_warnings():
            # joserfc warns that "EdDSA" is deprecated by RFC 9864 in favour of "Ed25519"; the alg is
            # still what providers publish today, so accept it quietly.
            warnings.simplefilter("ignore", SecurityWarning)
            valid = jws.validate_compact(obj, key, registry=REGISTRY)
    except JoseError as exc:
        raise InvalidToken(detail="signature invalid") from exc
    if not valid:
        raise InvalidToken(detail="signature invalid")


class JwtAccessTokenVerifier:
    """Verifies RFC 9068 access tokens of one issuer. ``cached`` is the synchronous hot path."""

    def __init__(
        self,
        issuer: str,
        jwks: JwksCache,
        clock: Callable[[], float],
        leeway: float,
        max_entries: int = 10_000,
    ) -> None:
        self._issuer = issuer
        self._jwks = jwks
        self._clock = clock
        self._leeway = leeway
        self._max_entries = max_entries
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()

    def cached(self, token: str, audience: str | None) -> Principal | None:
        """The principal of an already verified token, or None; raises InvalidToken when the cached
        token has expired since, or does not carry the route's audience."""
        return self._cached(hashlib.sha256(token.encode()).digest(), audience)

    def _cached(self, key: bytes, audience: str | None) -> Principal | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if self._clock() >= hit.valid_until:
            del self._cache[key]
            raise InvalidToken(detail="expired")
        if audience is not None and audience not in hit.audiences:
            raise InvalidToken(detail="audience mismatch")
        self._cache.move_to_end(key)
        return hit.principal

    async def verify(self, token: str, audience: str | None) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        principal = self._cached(key, audience)
        if principal is not None:
            return principal
        verified = await self._verify_signed(token)
        self._cache[key] = verified
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        if audience is not None and audience not in verified.audiences:
            raise InvalidToken(detail="audience mismatch")
        return verified.principal

    async def _verify_signed(self, token: str) -> _Verified:
        obj = parse_compact(token)
        header = obj.headers()
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise InvalidToken(detail="algorithm not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise InvalidToken(detail="not an access token (typ)")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken(detail="malformed kid")
        key = await self._jwks.key_for(kid, alg)
        check_signature(obj, key, alg)
        claims = claims_object(obj.payload)
        if claims is None:
            raise InvalidToken(detail="malformed claims")
        # RFC 9068 §4: iss exact, exp required, aud checked by the caller per route.
        if claims.get("iss") != self._issuer:
            raise InvalidToken(detail="issuer mismatch")
        exp = check_times(claims, self._clock(), self._leeway)
        if exp is None:
            raise InvalidToken(detail="missing exp")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken(detail="missing sub")
        if "at_hash" in claims or "c_hash" in claims:
            # Only ID tokens bind an access token or code (OIDC Core §3.1.3.6, §3.3.2.11): an ID token is
            # proof of a login to a client, never a credential for an API, even on routes with no audience.
            raise InvalidToken(detail="an ID token is not an access token")
        principal = build_principal(claims, "jwt", token, subject, exp)
        return _Verified(principal, exp + self._leeway, audiences(claims))
