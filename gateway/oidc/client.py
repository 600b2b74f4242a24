"""ProviderClient: one authorization server as the web layer sees it, composed of the parts beside it.

Owns the background task that loads provider metadata (with retry and backoff) and reloads it hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp

from gateway.config.schema import ProviderConfig
from gateway.config.trust import ANY_AUDIENCE, is_plain_http_off_loopback
from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.models import Principal, TokenSet
from gateway.oidc.access_token import JwtAccessTokenVerifier
from gateway.oidc.client_auth import ClientCredentials
from gateway.oidc.grant import Grants
from gateway.oidc.http import ProviderHttp
from gateway.oidc.id_token import IdTokenValidator
from gateway.oidc.introspection import Introspector, SharedCache
from gateway.oidc.jwks import JwksCache
from gateway.oidc.logout_token import LogoutClaims, LogoutTokenError, logout_token_header, verify_logout_token
from gateway.oidc.metadata import ENDPOINT_NAMES, ProviderMetadata, discover, discovery_needed, from_config

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 30.0
RELOAD_INTERVAL = 3600.0
#: OIDC Back-Channel Logout §2.6: logout tokens older than this (plus jwt_leeway) are refused, and their
#: jti is remembered this long; 5 minutes as DESIGN §8 says.
LOGOUT_TOKEN_MAX_AGE = 300.0


class ProviderClient:
    """Metadata, bearer-token verification (JWT or introspection) and the login grant of one provider."""

    def __init__(
        self,
        name: str,
        cfg: ProviderConfig,
        http: aiohttp.ClientSession,
        *,
        needs: frozenset[str] = frozenset(),
        shared_cache: SharedCache | None = None,
        clock: Callable[[], float] = time.time,
        jwks_min_refetch_interval: float = 5.0,
    ) -> None:
        unknown = set(needs).difference(ENDPOINT_NAMES)
        if unknown:
            raise ValueError(f"unknown endpoint names in needs: {sorted(unknown)}")
        self.name = name
        self.cfg = cfg
        self.metadata: ProviderMetadata | None = None
        self._needs = frozenset(needs)
        self._http = ProviderHttp(name, http, cfg.timeout.total_seconds(), tls=cfg.tls)
        leeway = cfg.jwt_leeway.total_seconds()
        self._jwks = JwksCache(name, self._http, self._jwks_uri, clock, jwks_min_refetch_interval)
        self._jwt = JwtAccessTokenVerifier(cfg.issuer, self._jwks, clock, leeway)
        self._introspector = Introspector(
            name,
            cfg.issuer,
            self._http,
            ClientCredentials.for_introspection(cfg),
            self._introspection_uri,
            clock,
            leeway,
            cfg.introspection_cache.total_seconds(),
            shared_cache,
        )
        self._id_tokens = IdTokenValidator(cfg.issuer, cfg.client_id, self._jwks, clock, leeway)
        self._grants = Grants(name, cfg, self._http, self._loaded_metadata, clock)
        self._clock = clock
        self._leeway = leeway
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def reload_tls(self) -> None:
        """Re-read providers.*.tls files (a renewed client certificate or CA bundle) on a config
        reload that keeps this client; new connections use them."""
        self._http.load_tls(self.cfg.tls)

    @property
    def needs(self) -> frozenset[str]:
        """The endpoints the routes using this provider need."""
        return self._needs

    @property
    def ready(self) -> bool:
        return self.metadata is not None

    async def start(self) -> None:
        """Spawn the metadata task and return at once; see wait_ready."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_metadata(), name=f"oidc-metadata-{self.name}")

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 - the web layer's readiness contract
        if self.ready:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the background work; the aiohttp session belongs to the caller and stays open."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._jwks.close()
        await self._introspector.close()

    async def _keep_metadata(self) -> None:
        delay = BACKOFF_INITIAL
        while True:
            try:
                metadata = await self._load_metadata()
            except Exception as exc:  # the task must survive anything; the next attempt may succeed
                detail = exc.detail if isinstance(exc, ProviderUnavailable) else type(exc).__name__
                log.warning(
                    "provider %s metadata not loaded (%s); retrying in %.1fs", self.name, detail, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_INITIAL
            first = self.metadata is None
            self.metadata = metadata
            self._ready.set()
            if first:
                log.info("provider %s metadata loaded", self.name)
            if metadata.jwks is not None and "jwks" in self._needs:
                # Warm (or, hourly, renew) the signing keys so the first token does not wait for them.
                with contextlib.suppress(ProviderUnavailable):
                    await self._jwks.refresh()
            await asyncio.sleep(RELOAD_INTERVAL)

    async def _load_metadata(self) -> ProviderMetadata:
        if not discovery_needed(self.cfg, self._needs):
            return from_config(self.cfg)
        metadata = await discover(self._http, self.cfg)
        missing = metadata.missing(self._needs)
        if missing:
            raise ProviderUnavailable(detail=f"metadata lacks needed endpoints: {', '.join(missing)}")
        if not self.cfg.allow_insecure_http:
            # The config rule (config.trust) sees only configured URLs; a document can name others.
            plain = [n for n in ENDPOINT_NAMES if is_plain_http_off_loopback(metadata.endpoint(n) or "")]
            if plain:
                raise ProviderUnavailable(
                    detail=f"metadata names plain http:// endpoints off loopback ({', '.join(plain)}): "
                    "use https, or set allow_insecure_http"
                )
        return metadata

    def _loaded_metadata(self) -> ProviderMetadata:
        metadata = self.metadata
        if metadata is None:
            raise ProviderUnavailable(detail=f"{self.name}: metadata not loaded yet")
        return metadata

    def _jwks_uri(self) -> str:
        uri = self._loaded_metadata().jwks
        if uri is None:
            raise ProviderUnavailable(detail=f"{self.name}: no jwks endpoint")
        return uri

    def _introspection_uri(self) -> str:
        uri = self._loaded_metadata().introspection
        if uri is None:
            raise ProviderUnavailable(detail=f"{self.name}: no introspection endpoint")
        return uri

    # ---- bearer tokens -----------------------------------------------------------------------------

    async def verify_access_token(
        self, token: str, *, validation: Literal["jwt", "introspection"], audience: str | None
    ) -> Principal:
        """The caller behind ``token``; InvalidToken (401) with the reason in ``detail``, or
        ProviderUnavailable (503) when the answer cannot be known now. ``audience`` None or ``"*"``
        (the route opted out, config.trust) accepts any ``aud``."""
        if audience == ANY_AUDIENCE:
            audience = None
        if validation == "jwt":
            principal = self._jwt.cached(token, audience)  # hot path: no coroutine below this one
            if principal is not None:
                return principal
            self._loaded_metadata()
            return await self._jwt.verify(token, audience)
        if validation == "introspection":
            principal = self._introspector.cached(token, audience)
            if principal is not None:
                return principal
            return await self._introspector.verify(token, audience)
        raise ValueError(f"unknown validation {validation!r}")

    async def forget_access_token(self, token: str) -> None:
        """A logged-out session's access token: purge its introspection answers (here and shared)."""
        await self._introspector.forget(token)

    # ---- back-channel logout -----------------------------------------------------------------------

    def logout_token_window(self, claims: LogoutClaims) -> float:
        """Seconds from now during which ``claims`` would still be accepted: how long its jti is kept
        (at least a second: a token accepted at the very edge of the window still gets its replay key)."""
        return max(1.0, claims.iat + LOGOUT_TOKEN_MAX_AGE + self._leeway - self._clock())

    async def verify_logout_token(self, token: str) -> LogoutClaims:
        """OIDC Back-Channel Logout §2.6 steps 1-5 against this provider's keys; LogoutTokenError when the
        token fails a check (an unknown key included), ProviderUnavailable when the keys cannot be had."""
        header = logout_token_header(token)  # alg none, MACs and malformed tokens stop here, before I/O
        self._loaded_metadata()
        try:
            key = await self._jwks.key_for(header.kid, header.alg)
        except InvalidToken as exc:
            raise LogoutTokenError(exc.detail) from exc
        return verify_logout_token(
            token,
            key,
            issuer=self.cfg.issuer,
            client_id=self.cfg.client_id,
            now=self._clock(),
            leeway=self._leeway,
            max_age=LOGOUT_TOKEN_MAX_AGE,
        )

    # ---- browser login -----------------------------------------------------------------------------

    def authorization_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        nonce: str | None,
        login_params: Mapping[str, str] | None = None,
    ) -> str:
        return self._grants.authorization_url(
            redirect_uri=redirect_uri,
            state=state,
            code_verifier=code_verifier,
            nonce=nonce,
            login_params=login_params,
        )

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        return await self._grants.exchange_code(
            code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )

    async def validate_id_token(
        self, id_token: str, *, nonce: str | None, access_token: str | None = None
    ) -> dict[str, Any]:
        self._loaded_metadata()
        return await self._id_tokens.validate(id_token, nonce=nonce, access_token=access_token)

    async def refresh(self, refresh_token: str) -> TokenSet:
        return await self._grants.refresh(refresh_token)

    async def revoke(self, token: str, token_type_hint: str = "refresh_token") -> bool:  # noqa: S107 - a hint name
        return await self._grants.revoke(token, token_type_hint)

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        return await self._grants.userinfo(access_token)

    def end_session_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str | None
    ) -> str | None:
        return self._grants.end_session_url(
            id_token_hint=id_token_hint, post_logout_redirect_uri=post_logout_redirect_uri
        )
