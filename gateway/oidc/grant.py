"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636), refresh (RFC 6749 §6), revocation
(RFC 7009), userinfo (OIDC Core §5.3) and the RP-initiated logout URL, through authlib's helpers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from gateway.config.schema import ProviderConfig
from gateway.errors import InvalidToken, LoginFailed, ProviderUnavailable
from gateway.models import TokenSet
from gateway.oidc.client_auth import ClientCredentials
from gateway.oidc.http import ProviderHttp, ProviderResponse
from gateway.oidc.metadata import ProviderMetadata

log = logging.getLogger(__name__)

# Parameters the gateway sets itself; extra_auth_params cannot replace them.
_RESERVED_AUTH_PARAMS = frozenset(
    {
        "uri",
        "client_id",
        "response_type",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)


class RefreshRejected(Exception):
    """The token endpoint refused the refresh token (``invalid_grant``, 400 or 401): the session ends."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def new_login_secrets() -> tuple[str, str, str]:
    """(state, code_verifier, nonce): 48-64 characters from 62 each (> 280 bits); the verifier fits
    RFC 7636 §4.1 (43-128 unreserved characters)."""
    return str(generate_token(48)), str(generate_token(64)), str(generate_token(48))


def s256_challenge(code_verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return str(create_s256_code_challenge(code_verifier))


class Grants:
    """The browser-login side of a provider: URLs to send the user to and calls to the token endpoint."""

    def __init__(
        self,
        provider: str,
        cfg: ProviderConfig,
        http: ProviderHttp,
        metadata: Callable[[], ProviderMetadata],
        clock: Callable[[], float],
    ) -> None:
        self._provider = provider
        self._cfg = cfg
        self._http = http
        self._metadata = metadata
        self._clock = clock
        self._credentials = ClientCredentials.for_token_endpoint(cfg)

    def _endpoint(self, name: str) -> str:
        url = self._metadata().endpoint(name)
        if url is None:
            raise ProviderUnavailable(detail=f"{self._provider}: no {name} endpoint")
        return url

    def authorization_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        nonce: str | None,
        login_params: Mapping[str, str] | None = None,
    ) -> str:
        """``login_params``: what this one login asks for beyond the configured parameters (RFC 9470 §4:
        ``acr_values``, ``max_age``, ``prompt=login``); they win over extra_auth_params, and a prompt
        joins the configured one (OIDC Core §3.1.2.1: a space-separated list)."""
        scopes = self._cfg.scopes
        params: dict[str, str] = {
            k: v for k, v in self._cfg.extra_auth_params.items() if k not in _RESERVED_AUTH_PARAMS
        }
        for name, value in (login_params or {}).items():
            if name in _RESERVED_AUTH_PARAMS:
                continue
            if name == "prompt" and params.get("prompt"):
                # "none" cannot be combined with another value (OIDC Core §3.1.2.1).
                joined = [p for p in params["prompt"].split() + value.split() if p != "none"]
                value = " ".join(dict.fromkeys(joined))
            params[name] = value
        # RFC 7636 §4.3: S256 only; "plain" would hand the verifier to anyone who sees the URL.
        params["code_challenge"] = s256_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
        if nonce is not None and "openid" in scopes:
            params["nonce"] = nonce  # OIDC Core §3.1.2.1
        return str(
            prepare_grant_uri(
                self._endpoint("authorization"),
                self._cfg.client_id,
                "code",
                redirect_uri=redirect_uri,
                scope=" ".join(scopes),
                state=state,
                **params,
            )
        )

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        """RFC 6749 §4.1.3 with the RFC 7636 §4.5 verifier; a 4xx is LoginFailed with the error code."""
        resp = await self._token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        if not resp.ok:
            raise LoginFailed(detail=resp.error)
        return self._token_set(resp.body, "code exchange")

    async def refresh(self, refresh_token: str) -> TokenSet:
        """RFC 6749 §6. A missing refresh_token in the answer leaves TokenSet.refresh_token None: the
        caller keeps the one it has (§6: the server MAY issue a new one)."""
        # Outcomes are counted once, by the session layer that decides what they mean.
        resp = await self._token_request("refresh_token", refresh_token=refresh_token)
        if not resp.ok:
            if resp.status in (400, 401) or resp.error == "invalid_grant":
                raise RefreshRejected(resp.error)
            raise ProviderUnavailable(detail=f"{self._provider} refresh: HTTP {resp.status} {resp.error}")
        return self._token_set(resp.body, "refresh")

    async def revoke(self, token: str, token_type_hint: str) -> bool:
        """RFC 7009 §2.1, best effort: False when there is no endpoint or the call fails; never raises."""
        try:
            url = self._metadata().revocation
            if url is None:
                return False
            form, headers = self._credentials.apply([("token", token), ("token_type_hint", token_type_hint)])
            # RFC 7009 §2.2: the body of a 200 is not specified (often empty).
            resp = await self._http.call(
                "POST", url, what="revocation", form=urlencode(form), headers=headers, expect_json=False
            )
        except ProviderUnavailable as exc:
            log.warning("token revocation failed: %s", exc.detail)
            return False
        except Exception as exc:  # best effort: logout must go on whatever happens here
            log.warning("token revocation failed: %s", type(exc).__name__)
            return False
        if not resp.ok:
            log.warning("token revocation refused: HTTP %s %s", resp.status, resp.error)
        return resp.ok  # RFC 7009 §2.2: 200 also for tokens that were already invalid

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """OIDC Core §5.3: the claims about the user; 401/403 mean the token is refused."""
        resp = await self._http.call(
            "GET",
            self._endpoint("userinfo"),
            what="userinfo",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if resp.ok:
            return resp.body
        if resp.status in (401, 403):
            raise InvalidToken(detail=f"userinfo: {resp.error}")
        raise ProviderUnavailable(detail=f"{self._provider} userinfo: HTTP {resp.status}")

    def end_session_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str | None
    ) -> str | None:
        """OIDC RP-Initiated Logout 1.0 §2; None when the provider has no end_session endpoint."""
        try:
            url = self._metadata().end_session
        except ProviderUnavailable:
            return None
        if url is None:
            return None
        params = [("client_id", self._cfg.client_id)]
        if id_token_hint:
            params.append(("id_token_hint", id_token_hint))
        redirect = post_logout_redirect_uri or self._cfg.post_logout_redirect_uri
        if redirect:
            params.append(("post_logout_redirect_uri", redirect))
        return url + ("&" if "?" in url else "?") + urlencode(params)

    async def _token_request(self, grant_type: str, **params: str) -> ProviderResponse:
        auth_params, headers = self._credentials.apply([])
        body = prepare_token_request(grant_type, **params, **dict(auth_params))
        return await self._http.call(
            "POST", self._endpoint("token"), what="token endpoint", form=str(body), headers=headers
        )

    def _token_set(self, body: dict[str, Any], what: str) -> TokenSet:
        """RFC 6749 §5.1; an answer without an access token is malformed (ProviderUnavailable)."""
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderUnavailable(detail=f"{self._provider} {what}: answer without access_token")
        expires_in = body.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at = self._clock() + float(expires_in)
        token_type, refresh_token = body.get("token_type"), body.get("refresh_token")
        id_token, scope = body.get("id_token"), body.get("scope")
        return TokenSet(
            access_token=access_token,
            token_type=token_type if isinstance(token_type, str) else "Bearer",
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            expires_at=expires_at,
            scope=scope if isinstance(scope, str) else None,
        )
