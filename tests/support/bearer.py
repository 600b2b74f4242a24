"""Helpers for bearer-token tests through the whole gateway: route and provider configs, the 401/200
assertions, forged-token encoding, and an ID token from the real provider's implicit flow."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from yarl import URL

from devtools.idp import DEFAULT_REDIRECT_URI, IdP, loopback_session
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.web.state import RUNTIME
from tests.support.clients import Client

SPA_REDIRECT = "http://127.0.0.1:8080/spa/callback"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def decode_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return result


def without_audience(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same config with every route's audience left out, as an operator might write it."""
    bare: dict[str, Any] = json.loads(json.dumps(cfg))
    for item in bare["routes"]:
        item["auth"].pop("audience", None)
    return bare


def audience_problems(cfg: dict[str, Any]) -> list[str]:
    """The YAML paths of the problems parse_config reports for ``cfg`` (none: the config is accepted)."""
    try:
        parse_config(yaml.safe_dump(cfg), env={})
    except ConfigError as exc:
        return [p.path for p in exc.problems]
    return []


async def ready(client: Client) -> Client:
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


async def refused(client: Client, token: str, path: str = "/api/x") -> None:
    resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401, (resp.status, await resp.text())
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def accepted(client: Client, token: str, path: str = "/api/x") -> None:
    resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, (resp.status, await resp.text())


async def implicit_id_token(idp: IdP) -> str:
    """An ID token from the provider's implicit flow (response_type=id_token): signed by the provider's
    key, no access token issued beside it, so no ``at_hash`` (and no ``c_hash``: no code either)."""
    url = URL(idp.authorization_endpoint).with_query(
        response_type="id_token",
        client_id="spa",
        redirect_uri=SPA_REDIRECT,
        scope="openid email",
        nonce=secrets.token_urlsafe(16),
    )
    async with loopback_session() as session:
        final = await idp.follow_interactions(session, str(url))
    fragment = dict(parse_qsl(urlsplit(final).fragment))
    assert "id_token" in fragment, final
    return fragment["id_token"]


SPA_CLIENTS = [
    {
        "client_id": "gw",
        "client_secret": "gw-secret",
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [DEFAULT_REDIRECT_URI],
    },
    {
        # A public single-page app of the same provider: its ID tokens are signed by the same keys.
        "client_id": "spa",
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["implicit"],
        "response_types": ["id_token"],
        "redirect_uris": [SPA_REDIRECT],
    },
]
