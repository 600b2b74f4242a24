"""Servers shared by every scenario of a run, started on first use and stopped with the run's ExitStack:
the nginx upstream, one test OpenID provider per token format (and its https front), a private Redis,
and the browser session used by the session routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from bench.nginx import start_nginx, upstream_conf
from bench.procs import Proc
from bench.tls_front import start_tls_front
from devtools.idp import IdP, IdPSettings
from devtools.net import free_port
from devtools.redis import RedisServer

BODY_SIZE = 2048
TOKEN_SCOPE = "openid api:read"
#: A token the routes must refuse: it lacks api:read.
WRONG_SCOPE = "openid api:write"
REQUIRED_SCOPE = "api:read"
AUDIENCE = "api"
LOGIN = "alice"


@dataclass(frozen=True)
class Issuer:
    """A running provider and the tokens minted from it for alice."""

    idp: IdP
    token: str  # scope api:read, aud api
    wrong_scope_token: str  # scope api:write only, aud api


class Shared:
    def __init__(self, directory: Path, nginx_workers: int, stack: contextlib.ExitStack) -> None:
        self.directory = directory
        self.nginx_workers = nginx_workers
        self.stack = stack
        #: Session routes always listen here: the provider knows only this callback URL, and the session
        #: made once in Redis is valid for every gateway started on it.
        self.session_port = free_port()
        self.session_cookie: str | None = None
        self.session_key = secrets.token_urlsafe(32)  # 32 random bytes, base64url (sessions.encryption_key)
        self._upstream: tuple[Proc, int] | None = None
        self._issuers: dict[str, Issuer] = {}
        self._fronts: dict[str, str] = {}
        self._redis: RedisServer | None = None

    def upstream(self) -> tuple[Proc, int]:
        """The nginx upstream: a fixed 2 KiB body on every path, /whoami echoes the identity headers."""
        if self._upstream is None:
            www = self.directory / "www"
            www.mkdir(exist_ok=True)
            body = www / "body.bin"
            body.write_bytes((b"tokengate-bench " * (BODY_SIZE // 16 + 1))[:BODY_SIZE])
            port = free_port()
            where = self.directory / "nginx-upstream"
            proc = start_nginx(
                "nginx-upstream", where, upstream_conf(where, port, body, self.nginx_workers), port
            )
            self.stack.callback(proc.stop)
            self._upstream = (proc, port)
        return self._upstream

    def issuer(self, token_format: str) -> Issuer:
        """A test OpenID provider issuing ``token_format`` access tokens (one-hour TTL: longer than any
        run), and alice's tokens. Every token carries aud=api: JWTs always, opaque ones because the
        authorization request names the resource (RFC 8707), so introspection answers carry it too."""
        if token_format not in self._issuers:
            log_dir = self.directory / f"idp-{token_format}"
            log_dir.mkdir(exist_ok=True)
            callback = f"http://127.0.0.1:{self.session_port}/oauth2/callback"
            idp = IdP(
                IdPSettings(
                    access_token_format=token_format,  # type: ignore[arg-type]
                    access_token_ttl=3600,
                    resource=AUDIENCE,
                    redirect_uris=(callback,),
                ),
                log_dir,
            )
            self.stack.callback(idp.stop)
            idp.start()
            extra = {"resource": idp.resource_indicator}
            good = asyncio.run(idp.obtain_tokens(login=LOGIN, scope=TOKEN_SCOPE, extra=extra))
            wrong = asyncio.run(idp.obtain_tokens(login=LOGIN, scope=WRONG_SCOPE, extra=extra))
            tokens = [good.get("access_token"), wrong.get("access_token")]
            if not all(isinstance(t, str) and t for t in tokens):
                raise RuntimeError(f"the {token_format} IdP returned no access token: {good!r} {wrong!r}")
            self._issuers[token_format] = Issuer(idp, str(tokens[0]), str(tokens[1]))
        return self._issuers[token_format]

    def https_front(self, token_format: str) -> str:
        """``https://127.0.0.1:P`` in front of that provider (self-signed; the Apache modules want https)."""
        if token_format not in self._fronts:
            idp = self.issuer(token_format).idp
            proc, port = start_tls_front(self.directory / f"tls-front-{token_format}", idp.port)
            self.stack.callback(proc.stop)
            self._fronts[token_format] = f"https://127.0.0.1:{port}"
        return self._fronts[token_format]

    def redis(self) -> RedisServer:
        """A private redis-server on a free port (never the machine's own)."""
        if self._redis is None:
            where = self.directory / "redis"
            where.mkdir(exist_ok=True)
            server = RedisServer(free_port(), where)
            server.start()
            self.stack.callback(server.stop)
            self._redis = server
        return self._redis
