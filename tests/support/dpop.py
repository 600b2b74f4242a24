"""DPoP clients for tests (RFC 9449): a key, proofs made with joserfc, and tokens the real provider
binds to the key (a proof at its token endpoint), plus a gateway config with DPoP routes."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from joserfc import jws
from joserfc.jwk import ECKey

from devtools.idp import IdP, basic_auth
from gateway.oidc.dpop import access_token_hash
from tests.support.configs import DPOP_PUBLIC_URL

PUBLIC_URL = DPOP_PUBLIC_URL
READ = "openid profile email api:read"


@dataclass
class DPoPKey:
    """A client's proof key (ES256, which oidc-provider offers)."""

    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        ath: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
            "jti": jti or secrets.token_urlsafe(16),
        }
        if token is not None or ath is not None:
            claims["ath"] = ath if ath is not None else access_token_hash(token or "")
        protected = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        protected.update(header or {})
        return jws.serialize_compact(protected, json.dumps(claims), self.key, algorithms=["ES256"])


def headers(key: DPoPKey, token: str, method: str, url: str, **proof: Any) -> dict[str, str]:
    """``Authorization: DPoP <token>`` and a fresh proof for this request."""
    return {"Authorization": f"DPoP {token}", "DPoP": key.proof(method, url, token=token, **proof)}


async def bound_tokens(idp: IdP, key: DPoPKey, login: str = "alice", scope: str = READ) -> dict[str, Any]:
    """A code flow whose token request carries a proof of ``key`` (RFC 9449 §5): the provider answers
    token_type DPoP and binds the access token (cnf.jkt in the JWT and in introspection)."""
    opaque = idp.settings.access_token_format == "opaque"
    extra = {"resource": idp.resource_indicator} if opaque else None
    params = await idp.authorize(login, scope, extra=extra)
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": params["redirect_uri"],
        "code_verifier": params["code_verifier"],
    }
    sent = {
        "Authorization": basic_auth(idp.client_id, idp.client_secret),
        "DPoP": key.proof("POST", idp.token_endpoint),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(idp.token_endpoint, data=form, headers=sent) as resp,
    ):
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
    assert body["token_type"] == "DPoP", body
    return body


async def plain_tokens(idp: IdP, login: str = "alice") -> dict[str, Any]:
    opaque = idp.settings.access_token_format == "opaque"
    extra = {"resource": idp.resource_indicator} if opaque else None
    return await idp.obtain_tokens(login, READ, extra=extra)
