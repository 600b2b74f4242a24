"""A scriptable loopback authorization server for the oidc tests (no tests here): faults a real
provider cannot be made to show on demand (500s, hangs, malformed JSON, key rotation at a chosen moment).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from gateway.config.schema import ProviderConfig
from gateway.oidc import ProviderClient
from tests.support.configs import CLIENT_ID


class Clock:
    """An injected clock (STYLE: inject the clock, don't patch it)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@cache
def signing_key(kind: str, name: str = "a") -> Key:
    """Keys are slow to make (RSA); one per (kind, name) per test session."""
    if kind == "RSA":
        key: Key = RSAKey.generate_key(2048, parameters={"kid": f"rsa-{name}"})
    elif kind == "EC":
        key = ECKey.generate_key("P-256", parameters={"kid": f"ec-{name}"})
    elif kind == "EC384":
        key = ECKey.generate_key("P-384", parameters={"kid": f"ec384-{name}"})
    else:
        key = OKPKey.generate_key("Ed25519", parameters={"kid": f"okp-{name}"})
    return key


def public_jwk(key: Key, **extra: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), **extra}


def mint(key: Key, claims: dict[str, Any], *, alg: str = "RS256", **header: Any) -> str:
    """A signed compact JWT; header members given as None are left out."""
    head: dict[str, Any] = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **header}
    head = {k: v for k, v in head.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # "EdDSA" is deprecated by RFC 9864
        return jwt.encode(head, claims, key, algorithms=[alg])


@dataclass
class Reply:
    """What an endpoint answers: a JSON body (or raw text), a status, optionally after a delay."""

    body: Any = None
    status: int = 200
    raw: str | None = None
    delay: float = 0.0

    def response(self) -> web.Response:
        if self.raw is not None:
            return web.Response(status=self.status, text=self.raw, content_type="application/json")
        return web.json_response(self.body, status=self.status)


@dataclass
class FakeProvider:
    """State behind the loopback server; tests change it between calls."""

    issuer: str = ""
    jwks_keys: list[dict[str, Any]] = field(default_factory=list)
    jwks_reply: Reply | None = None  # overrides the key set (faults)
    discovery: Reply | None = None  # None: a document built from the issuer
    oauth_metadata: Reply | None = None  # RFC 8414 document; None: 404
    introspect: Callable[[dict[str, str]], Reply] = field(default=lambda form: Reply({"active": False}))
    token: Callable[[dict[str, str]], Reply] = field(default=lambda form: Reply({}, 400))
    revocation: Reply = field(default_factory=lambda: Reply({}))
    userinfo: Reply = field(default_factory=lambda: Reply({"sub": "alice"}))
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "userinfo_endpoint": f"{base}/me",
            "end_session_endpoint": f"{base}/logout",
        }

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            path = request.path
            self.hits[path] += 1
            form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
            self.requests.append((path, form, dict(request.headers)))
            reply = self._reply(path, form)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return reply.response()

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def _reply(self, path: str, form: dict[str, str]) -> Reply:
        if path == "/.well-known/openid-configuration":
            return self.discovery or Reply(self.document())
        if path.startswith("/.well-known/oauth-authorization-server"):
            return self.oauth_metadata or Reply({"error": "not_found"}, 404)
        if path == "/jwks":
            return self.jwks_reply or Reply({"keys": self.jwks_keys})
        if path == "/introspect":
            return self.introspect(form)
        if path == "/token":
            return self.token(form)
        if path == "/revoke":
            return self.revocation
        if path == "/me":
            return self.userinfo
        return Reply({"error": "not_found"}, 404)

    def last(self, path: str) -> tuple[dict[str, str], dict[str, str]]:
        for seen, form, headers in reversed(self.requests):
            if seen == path:
                return form, headers
        raise AssertionError(f"no request to {path}")


@contextlib.asynccontextmanager
async def running(fake: FakeProvider, port: int | None = None, path: str = "") -> AsyncIterator[FakeProvider]:
    server = TestServer(fake.app(), host="127.0.0.1", port=port)
    await server.start_server()
    fake.issuer = f"http://127.0.0.1:{server.port}{path}"
    try:
        yield fake
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def provider_client(
    cfg: ProviderConfig, *, start: bool = True, **kwargs: Any
) -> AsyncIterator[ProviderClient]:
    async with aiohttp.ClientSession() as http:
        client = ProviderClient("main", cfg, http, **kwargs)
        try:
            if start:
                await client.start()
                assert await client.wait_ready(5)
            yield client
        finally:
            await client.close()


def claims_for(issuer: str, clock: Clock, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "alice",
        "aud": "api",
        "client_id": CLIENT_ID,
        "scope": "api:read api:write",
        "iat": int(clock.now),
        "exp": int(clock.now) + 300,
        "jti": "jti-1",
        "email": "alice@example.com",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}
