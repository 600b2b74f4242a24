"""The scenarios of one benchmark run, and the shared servers they use (one upstream, lazily the IdPs).

A scenario's ``setup`` starts what it needs inside the given ExitStack and returns a Target: the URL wrk
hits, the bearer token (if any), and which processes' CPU time to measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.gateway import REPO, Gateway, ProviderSpec, start_gateway
from bench.nginx import proxy_conf, start_nginx, upstream_conf
from bench.procs import Proc
from tests.fixtures.idp import IdP, IdPSettings
from tests.support.net import free_port, wait_for_http

BODY_SIZE = 2048
REQUEST_PATH = "/bench/item"
TOKEN_SCOPE = "openid api:read"
REQUIRED_SCOPE = "api:read"
AUDIENCE = "api"
LOGIN = "alice"


@dataclass
class Target:
    url: str
    token: str | None = None
    #: role -> pid of a process tree whose CPU time is measured ("server" is the one under test)
    measured: dict[str, int] = field(default_factory=dict)
    gateway: Gateway | None = None
    idp: IdP | None = None
    bearer: bool = False
    workers: int = 1


class Shared:
    """Servers shared by every scenario of a run, started on first use and stopped at ``close``."""

    def __init__(self, directory: Path, nginx_workers: int, stack: contextlib.ExitStack) -> None:
        self.directory = directory
        self.nginx_workers = nginx_workers
        self.stack = stack
        self._upstream: tuple[Proc, int] | None = None
        self._idps: dict[str, tuple[IdP, str]] = {}

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

    def idp(self, token_format: str) -> tuple[IdP, str]:
        """A test OpenID provider issuing ``token_format`` access tokens, and one access token for alice
        with scope api:read and aud=api. Tokens live for an hour: longer than any run."""
        if token_format not in self._idps:
            log_dir = self.directory / f"idp-{token_format}"
            log_dir.mkdir(exist_ok=True)
            idp = IdP(
                IdPSettings(access_token_format=token_format, access_token_ttl=3600),  # type: ignore[arg-type]
                log_dir,
            )
            self.stack.callback(idp.stop)
            idp.start()
            # Opaque tokens carry aud only when bound to the resource (RFC 8707); JWTs always do.
            extra = {"resource": idp.resource_indicator} if token_format == "opaque" else None
            tokens = asyncio.run(idp.obtain_tokens(login=LOGIN, scope=TOKEN_SCOPE, extra=extra))
            token = tokens["access_token"]
            if not isinstance(token, str) or not token:
                raise RuntimeError(f"the {token_format} IdP returned no access token: {tokens!r}")
            self._idps[token_format] = (idp, token)
        return self._idps[token_format]


Setup = Callable[[Shared, contextlib.ExitStack, Path], Target]


def nginx_direct(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    proc, port = shared.upstream()
    return Target(url=f"http://127.0.0.1:{port}{REQUEST_PATH}", measured={"server": proc.pid})


def nginx_proxy(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    upstream, up_port = shared.upstream()
    port = free_port()
    where = directory / "nginx-proxy"
    proc = start_nginx("nginx-proxy", where, proxy_conf(where, port, up_port, shared.nginx_workers), port)
    stack.callback(proc.stop)
    return Target(
        url=f"http://127.0.0.1:{port}{REQUEST_PATH}", measured={"server": proc.pid, "upstream": upstream.pid}
    )


def _gateway_target(
    shared: Shared,
    stack: contextlib.ExitStack,
    directory: Path,
    *,
    auth: dict[str, object],
    issuing: str | None = None,
    workers: int = 1,
    server: dict[str, object] | None = None,
) -> Target:
    upstream, up_port = shared.upstream()
    idp, token, provider = None, None, None
    if issuing is not None:
        idp, token = shared.idp(issuing)
        provider = ProviderSpec("idp", idp.issuer, introspection=auth.get("validate") == "introspection")
    gw = start_gateway(
        "tokengate",
        directory / "tokengate",
        upstream_port=up_port,
        auth=auth,
        provider=provider,
        workers=workers,
        server=server,
    )
    stack.callback(gw.stop)
    return Target(
        url=f"http://127.0.0.1:{gw.port}{REQUEST_PATH}",
        token=token,
        measured={"server": gw.pid, "upstream": upstream.pid, **_idp_role(idp)},
        gateway=gw,
        idp=idp,
        bearer=token is not None,
        workers=workers,
    )


def _idp_role(idp: IdP | None) -> dict[str, int]:
    proc = getattr(idp, "_proc", None)  # the fixture keeps its Popen private; its CPU is worth seeing
    return {"idp": proc.pid} if proc is not None else {}


def tokengate_public(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    return _gateway_target(shared, stack, directory, auth={"mode": "public"})


def tokengate_jwt(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    auth = {
        "mode": "bearer",
        "provider": "idp",
        "validate": "jwt",
        "audience": AUDIENCE,
        "scopes": [REQUIRED_SCOPE],
    }
    return _gateway_target(shared, stack, directory, auth=auth, issuing="jwt")


def tokengate_introspection(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    auth = {
        "mode": "bearer",
        "provider": "idp",
        "validate": "introspection",
        "audience": AUDIENCE,
        "scopes": [REQUIRED_SCOPE],
    }
    return _gateway_target(shared, stack, directory, auth=auth, issuing="opaque")


def otlp_sink(stack: contextlib.ExitStack, directory: Path) -> int:
    """A loopback OTLP/HTTP receiver process (bench.otlp_sink); returns its port."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.otlp_sink", str(port)]
    proc = Proc(
        "otlp-sink", argv, directory / "otlp-sink.log", env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO
    )
    stack.callback(proc.stop)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=15)
    except TimeoutError:
        raise RuntimeError(f"the OTLP sink did not start:\n{proc.log_tail()}") from None
    return port


def _traced(ratio: float) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        """As tokengate-public, with server.tracing exporting to a loopback OTLP/HTTP receiver."""
        port = otlp_sink(stack, directory / "otlp")
        tracing = {"otlp_endpoint": f"http://127.0.0.1:{port}", "sample_ratio": ratio}
        return _gateway_target(shared, stack, directory, auth={"mode": "public"}, server={"tracing": tracing})

    return setup


tokengate_public_traced = _traced(1.0)
tokengate_public_traced_10 = _traced(0.1)


def tokengate_public_2w(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    return _gateway_target(shared, stack, directory, auth={"mode": "public"}, workers=2)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    setup: Setup
    optional: bool = False  # a failure to start is reported as "skipped", not as a failure


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("nginx-direct", "nginx direct (upstream itself, the ceiling)", nginx_direct),
    Scenario("nginx-proxy", "nginx pass-through proxy -> nginx", nginx_proxy),
    Scenario("tokengate-public", "tokengate, public route", tokengate_public),
    Scenario(
        "tokengate-public-traced", "tokengate, public route, tracing on (OTLP/HTTP)", tokengate_public_traced
    ),
    Scenario(
        "tokengate-public-traced-10",
        "tokengate, public route, tracing on, sample_ratio 0.1",
        tokengate_public_traced_10,
    ),
    Scenario("tokengate-jwt", "tokengate, bearer jwt + aud + scope (warm)", tokengate_jwt),
    Scenario(
        "tokengate-introspection", "tokengate, bearer introspection + scope (warm)", tokengate_introspection
    ),
    Scenario(
        "tokengate-public-2w",
        "tokengate, public route, server.workers: 2",
        tokengate_public_2w,
        optional=True,
    ),
)
