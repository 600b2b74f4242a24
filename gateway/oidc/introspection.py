"""RFC 7662 token introspection with a two-level cache and single flight.

A bounded in-process LRU sits in front of a SharedCache (Redis, shared by replicas). An answer is kept
until min(introspection_cache, exp) from when the provider gave it, never sliding; negative answers
for a few seconds at most; provider failures never. Every hit still checks the route's audience.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.metrics import INTROSPECTION_CACHE, INTROSPECTION_CALLS
from gateway.models import Principal
from gateway.oidc.claims import audiences, build_principal, check_times
from gateway.oidc.client_auth import ClientCredentials
from gateway.oidc.flight import SingleFlight
from gateway.oidc.http import ProviderHttp

log = logging.getLogger(__name__)

#: Keycloak's ``typ`` values for tokens that are not access tokens.
_NOT_ACCESS_TOKENS = frozenset({"refresh", "offline", "id"})

#: Longest time an inactive (or otherwise refused) answer is remembered: a token that becomes valid
#: (clock skew, nbf) must not stay refused for long, and a flood of one bad token costs one call.
NEGATIVE_TTL = 5.0
#: A shared-cache call that takes longer than this is treated as a miss (Redis trouble is not fatal).
SHARED_CACHE_TIMEOUT = 1.0
#: After a shared-cache failure the cache is left alone this long: a hung Redis must not add its
#: timeout to every miss (DESIGN §7: cache misses go to the provider while Redis is down).
SHARED_CACHE_BACKOFF = 5.0
# RFC 6749 §5.2 errors that say the gateway's own client is refused: misconfiguration, fail closed.
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


class SharedCache(Protocol):
    """Implemented by the session store (structural typing); keys are prefixed by the store."""

    async def cache_get(self, key: str) -> bytes | None: ...

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def cache_delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Answer:
    until: float  # absolute time after which the answer must be asked again
    principal: Principal | None  # None: the token is refused for ``reason``
    reason: str
    audiences: frozenset[str]


class Introspector:
    """Introspects tokens at one provider's endpoint. ``cached`` is the synchronous hot path."""

    def __init__(
        self,
        provider: str,
        issuer: str,
        http: ProviderHttp,
        credentials: ClientCredentials,
        endpoint: Callable[[], str],
        clock: Callable[[], float],
        leeway: float,
        cache_bound: float,
        shared_cache: SharedCache | None,
        max_entries: int = 10_000,
    ) -> None:
        self._provider = provider
        self._issuer = issuer
        self._http = http
        self._credentials = credentials
        self._endpoint = endpoint
        self._clock = clock
        self._leeway = leeway
        self._cache_bound = cache_bound
        self._shared = shared_cache
        self._max_entries = max_entries
        self._shared_paused_until = -float("inf")
        self._local: OrderedDict[bytes, _Answer] = OrderedDict()
        self._flight: SingleFlight[bytes, _Answer] = SingleFlight()
        self._prefix_for = ""
        self._prefix = hashlib.sha256()
        self._hits = {
            (layer, result): INTROSPECTION_CACHE.labels(provider, layer, result)
            for layer in ("local", "shared")
            for result in ("hit", "miss", "error")
        }
        self._calls = {
            outcome: INTROSPECTION_CALLS.labels(provider, outcome)
            for outcome in ("active", "inactive", "refused", "error")
        }

    def _key(self, token: str) -> bytes:
        """SHA-256 of issuer, endpoint and token (DESIGN §6): the token itself is never a cache key."""
        endpoint = self._endpoint()
        if endpoint != self._prefix_for:
            self._prefix = hashlib.sha256(f"{self._issuer}\n{endpoint}\n".encode())
            self._prefix_for = endpoint
        digest = self._prefix.copy()
        digest.update(token.encode())
        return digest.digest()

    def cached(self, token: str, audience: str | None) -> Principal | None:
        """The principal from the in-process cache, or None on a miss; raises InvalidToken for a cached
        refusal or when the token lacks the route's audience."""
        return self._cached(self._key(token), audience)

    def _cached(self, key: bytes, audience: str | None) -> Principal | None:
        hit = self._local.get(key)
        if hit is None:
            return None
        if self._clock() >= hit.until:
            del self._local[key]
            return None
        self._local.move_to_end(key)
        self._hits["local", "hit"].inc()
        return _admit(hit, audience)

    async def verify(self, token: str, audience: str | None) -> Principal:
        key = self._key(token)
        principal = self._cached(key, audience)
        if principal is not None:
            return principal
        self._hits["local", "miss"].inc()
        answer = await self._flight.run(key, lambda: self._lookup(token, key))
        return _admit(answer, audience)

    async def close(self) -> None:
        await self._flight.close()

    async def forget(self, token: str) -> None:
        """Drop what this process and the shared cache remember about ``token`` (its session was
        logged out), so the next use asks the provider. Store failures propagate: the caller decides."""
        key = self._key(token)
        self._local.pop(key, None)
        if self._shared is not None:
            await self._shared.cache_delete("introspect:" + key.hex())

    async def _lookup(self, token: str, key: bytes) -> _Answer:
        shared_key = "introspect:" + key.hex()
        answer = await self._shared_get(shared_key, token)
        if answer is None:
            answer = await self._introspect(token)
            await self._shared_set(shared_key, answer)
        self._remember(key, answer)
        return answer

    def _remember(self, key: bytes, answer: _Answer) -> None:
        if answer.until <= self._clock():
            return
        self._local[key] = answer
        self._local.move_to_end(key)
        if len(self._local) > self._max_entries:
            self._local.popitem(last=False)

    async def _introspect(self, token: str) -> _Answer:
        # RFC 7662 §2.1: POST form, token_type_hint, and the client's authentication.
        form, headers = self._credentials.apply([("token", token), ("token_type_hint", "access_token")])
        try:
            resp = await self._http.call(
                "POST", self._endpoint(), what="introspection", form=urlencode(form), headers=headers
            )
            now = self._clock()
            if resp.ok:
                active = resp.body.get("active")
                if not isinstance(active, bool):
                    raise ProviderUnavailable(detail=f"{self._provider} introspection: no boolean active")
            elif resp.status == 400 and resp.error not in _CLIENT_ERRORS:
                # About the token itself (e.g. unsupported_token_type): the token is refused, briefly cached.
                self._calls["refused"].inc()
                return self._refusal(resp.error, now)
            else:
                # 401/403/invalid_client: the gateway's client is refused; other 4xx: misconfiguration.
                raise ProviderUnavailable(
                    detail=f"{self._provider} introspection refused the gateway: "
                    f"HTTP {resp.status} {resp.error}"
                )
        except ProviderUnavailable:
            self._calls["error"].inc()
            raise
        self._calls["active" if active else "inactive"].inc()
        return self._judge(resp.body, token, now)

    def _judge(self, body: dict[str, Any], token: str, now: float, until: float | None = None) -> _Answer:
        """Turn an answer into a cache entry; ``until`` is given when the answer comes from the shared
        cache (the original deadline stays: never sliding)."""
        if body.get("active") is not True:
            return self._refusal("inactive", now, until)
        try:
            token_type = body.get("token_type")
            if isinstance(token_type, str) and token_type.lower() not in ("bearer", "dpop"):
                # RFC 9449 §6.2: "DPoP" for a key-bound token, whose cnf.jkt web.dpop_check then enforces.
                raise InvalidToken(detail="not an access token")
            typ = body.get("typ")
            if isinstance(typ, str) and typ.lower() in _NOT_ACCESS_TOKENS:
                # Keycloak marks what it introspects: a refresh, offline or ID token is no API credential.
                raise InvalidToken(detail="not an access token")
            exp = check_times(body, now, self._leeway)
            issuer = body.get("iss")
            if issuer is not None and issuer != self._issuer:
                raise InvalidToken(detail="issuer mismatch")
            subject = body.get("sub", body.get("username"))
            if not isinstance(subject, str) or not subject:
                raise InvalidToken(detail="no subject")
            token_audiences = audiences(body)
        except InvalidToken as exc:
            return self._refusal(exc.detail, now, until)
        if until is None:
            until = now + self._cache_bound
            if exp is not None:
                until = min(until, exp)  # never past the token's own expiry
        principal = build_principal(body, "introspection", token, subject, exp)
        return _Answer(until, principal, "", token_audiences)

    def _refusal(self, reason: str, now: float, until: float | None = None) -> _Answer:
        if until is None:
            until = now + min(NEGATIVE_TTL, self._cache_bound)
        return _Answer(until, None, reason, frozenset())

    def _shared_usable(self) -> SharedCache | None:
        if self._shared is None or self._clock() < self._shared_paused_until:
            return None
        return self._shared

    def _shared_failed(self, what: str, exc: Exception) -> None:
        self._hits["shared", "error"].inc()
        self._shared_paused_until = self._clock() + SHARED_CACHE_BACKOFF
        log.warning(
            "shared introspection cache %s failed (%s); not used for %.0fs",
            what,
            type(exc).__name__,
            SHARED_CACHE_BACKOFF,
        )

    async def _shared_get(self, shared_key: str, token: str) -> _Answer | None:
        shared = self._shared_usable()
        if shared is None:
            return None
        try:
            async with asyncio.timeout(min(self._http.timeout, SHARED_CACHE_TIMEOUT)):
                raw = await shared.cache_get(shared_key)
        except Exception as exc:  # any store failure is a miss, never fatal
            self._shared_failed("read", exc)
            return None
        record = _decode_record(raw) if raw is not None else None
        now = self._clock()
        if record is None or record[0] <= now:
            self._hits["shared", "miss"].inc()
            return None
        self._hits["shared", "hit"].inc()
        until, body, reason = record
        if body is None:
            return self._refusal(reason, now, until)
        return self._judge(body, token, now, until)

    async def _shared_set(self, shared_key: str, answer: _Answer) -> None:
        ttl = answer.until - self._clock()
        shared = self._shared_usable()
        if shared is None or ttl <= 0:
            return
        # The answer's claims (never the token) and its absolute deadline, so other replicas keep it
        # no longer than this one does.
        claims = dict(answer.principal.claims) if answer.principal else None
        raw = json.dumps(
            {"until": answer.until, "answer": claims, "reason": answer.reason}, separators=(",", ":")
        ).encode()
        try:
            async with asyncio.timeout(min(self._http.timeout, SHARED_CACHE_TIMEOUT)):
                await shared.cache_set(shared_key, raw, ttl)
        except Exception as exc:  # a failed write only costs other replicas a call
            self._shared_failed("write", exc)


def _admit(answer: _Answer, audience: str | None) -> Principal:
    if answer.principal is None:
        raise InvalidToken(detail=answer.reason)
    if audience is not None and audience not in answer.audiences:
        raise InvalidToken(detail="audience mismatch")
    return answer.principal


def _decode_record(raw: bytes) -> tuple[float, dict[str, Any] | None, str] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    until, body, reason = record.get("until"), record.get("answer"), record.get("reason")
    if (
        isinstance(until, bool)
        or not isinstance(until, int | float)
        or not isinstance(reason, str)
        or not (body is None or isinstance(body, dict))
    ):
        return None
    return float(until), body, reason
