"""The provider's signing keys (RFC 7517 JWK Set): fetched, cached, refetched on an unknown ``kid``.

Refetches are single flight and rate limited, so a stream of tokens with made-up key ids cannot make
the gateway hammer the provider, while a real key rotation is picked up on the first token that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.metrics import JWKS_FETCHES
from gateway.oidc.flight import SingleFlight
from gateway.oidc.http import ProviderHttp

log = logging.getLogger(__name__)

#: Asymmetric algorithms only (RFC 8725 §3.1): never "none", never HS* (a public key is not a secret).
ALLOWED_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)
_KEY_CLASS: dict[str, type[Key]] = {"RS": RSAKey, "PS": RSAKey, "ES": ECKey, "Ed": OKPKey}


def key_fits(key: Key, alg: str) -> bool:
    """RFC 7517 §4.2/§4.4: the key's type suits the algorithm, and its ``use``/``alg`` (when set) agree."""
    if not isinstance(key, _KEY_CLASS[alg[:2]]):
        return False
    use = key.get("use")
    key_alg = key.get("alg")
    return (use is None or use == "sig") and (key_alg is None or key_alg == alg)


class JwksCache:
    """Keys by ``kid``. ``jwks_uri`` is asked at fetch time (metadata may be reloaded meanwhile)."""

    def __init__(
        self,
        provider: str,
        http: ProviderHttp,
        jwks_uri: Callable[[], str],
        clock: Callable[[], float],
        min_refetch_interval: float,
    ) -> None:
        self._provider = provider
        self._http = http
        self._jwks_uri = jwks_uri
        self._clock = clock
        self._min_interval = min_refetch_interval
        self._by_kid: dict[str, Key] = {}
        self._keys: list[Key] = []
        self._loaded = False
        self._last_attempt = -float("inf")
        self._last_unknown_kid = -float("inf")
        self._last_fetch_failed = False
        self._flight: SingleFlight[str, None] = SingleFlight()
        self._ok = JWKS_FETCHES.labels(provider, "ok")
        self._failed = JWKS_FETCHES.labels(provider, "error")

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key that verifies a signature by ``alg`` with header ``kid``; InvalidToken when none does,
        ProviderUnavailable when the set cannot be fetched."""
        if not self._loaded:
            await self._refetch(cold=True)
        key = self._find(kid, alg)
        if key is not None:
            return key
        # An unknown kid may mean the provider rotated its keys (OIDC Core §10.1.1): refetch, but at
        # most once per interval counted between unknown-kid refetches (the initial load does not
        # count, so a rotation soon after start-up is still seen); a refetch under way is joined.
        now = self._clock()
        if not self._flight.in_flight("jwks") and now - self._last_unknown_kid < self._min_interval:
            if self._last_fetch_failed:
                # The set could not be fetched a moment ago: the kid may be a new key we cannot see.
                raise ProviderUnavailable(detail=f"{self._provider} JWKS: unavailable, retrying shortly")
            raise InvalidToken(detail="unknown kid")
        self._last_unknown_kid = now
        await self._refetch(cold=False)
        key = self._find(kid, alg)
        if key is None:
            raise InvalidToken(detail="unknown kid")
        return key

    async def refresh(self) -> None:
        """Fetch now, whatever the rate limit (periodic reload); raises ProviderUnavailable."""
        await self._flight.run("jwks", self._fetch)

    async def close(self) -> None:
        await self._flight.close()

    def _find(self, kid: str | None, alg: str) -> Key | None:
        if kid is not None:
            key = self._by_kid.get(kid)
            if key is not None and not key_fits(key, alg):
                raise InvalidToken(detail="algorithm does not match the key")
            return key
        # No kid in the header: acceptable only when exactly one key can verify this algorithm.
        fitting = [key for key in self._keys if key_fits(key, alg)]
        if len(fitting) > 1:
            raise InvalidToken(detail="no kid and several possible keys")
        return fitting[0] if fitting else None

    async def _refetch(self, *, cold: bool) -> None:
        if (
            cold
            and not self._flight.in_flight("jwks")
            and self._clock() - self._last_attempt < self._min_interval
        ):
            # The last attempt failed a moment ago: fail fast instead of calling again.
            raise ProviderUnavailable(detail=f"{self._provider} JWKS: unavailable, retrying shortly")
        await self._flight.run("jwks", self._fetch)

    async def _fetch(self) -> None:
        self._last_attempt = self._clock()
        try:
            resp = await self._http.call("GET", self._jwks_uri(), what="JWKS", follow_redirects=True)
            if not resp.ok:
                raise ProviderUnavailable(detail=f"{self._provider} JWKS: HTTP {resp.status}")
            keys = parse_key_set(resp.body)
        except ProviderUnavailable as exc:
            self._last_fetch_failed = True
            self._failed.inc()
            log.warning("JWKS fetch failed: %s", exc.detail)
            raise
        self._keys = keys
        self._by_kid = {key.kid: key for key in keys if key.kid is not None}
        self._loaded = True
        self._last_fetch_failed = False
        self._ok.inc()


def parse_key_set(body: dict[str, Any]) -> list[Key]:
    """RFC 7517 §5: a ``keys`` array; members we cannot use (unknown kty, ``use: enc``, symmetric
    keys, malformed members) are skipped rather than failing the whole set (§5, last paragraph)."""
    members = body.get("keys")
    if not isinstance(members, list):
        raise ProviderUnavailable(detail="JWKS: no keys array")
    keys: list[Key] = []
    for member in members:
        if not isinstance(member, dict) or member.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if member.get("use", "sig") != "sig" or not isinstance(member.get("kid", ""), str):
            continue
        try:
            keys.append(JWKRegistry.import_key(member))
        except (JoseError, ValueError, TypeError):
            continue
    return keys
