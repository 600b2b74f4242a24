"""The participants of one benchmark run. A scenario's ``setup`` starts what it needs inside the given
ExitStack and returns a Target: the URL wrk hits, the credentials it sends, the requests that must be
refused, and which processes' CPU time and memory are measured (role "server" is the one under test).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.apache import Kind, start_apache
from bench.coldcache import single_flight_probe
from bench.gateway import REPO, Gateway, ProviderSpec, start_gateway
from bench.naive_proxy import start_naive_proxy
from bench.nginx import proxy_conf, start_nginx
from bench.procs import Proc
from bench.session import login_cookie
from bench.shared import AUDIENCE, LOGIN, REQUIRED_SCOPE, Shared
from devtools.idp import IdP
from devtools.net import free_port, wait_for_http

REQUEST_PATH = "/bench/item"


@dataclass
class Target:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    #: (what, headers, statuses allowed): requests the participant must refuse before any load
    refusals: list[tuple[str, dict[str, str], tuple[int, ...]]] = field(default_factory=list)
    whoami: bool = False  # the upstream must see X-Auth-Request-User: alice and the scope
    measured: dict[str, int] = field(default_factory=dict)
    gateway: Gateway | None = None
    idp: IdP | None = None
    workers: int = 1
    #: instead of load: a measurement that returns its figures and the problems it found
    probe: Callable[[], tuple[dict[str, Any], list[str]]] | None = None
    logs: list[Path] = field(default_factory=list)  # error logs worth a tail on failure


Setup = Callable[[Shared, contextlib.ExitStack, Path], Target]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _bearer_refusals(wrong_scope_token: str) -> list[tuple[str, dict[str, str], tuple[int, ...]]]:
    return [
        ("no token", {}, (401,)),
        ("a garbage token", _bearer("not-a-token"), (401,)),
        ("a token without api:read", _bearer(wrong_scope_token), (401, 403)),
    ]


def _roles(shared: Shared, server: int, idp: IdP | None = None) -> dict[str, int]:
    upstream, _port = shared.upstream()
    roles = {"server": server, "upstream": upstream.pid}
    pid = idp.pid if idp is not None else None  # the provider's CPU is worth seeing too
    if pid is not None:
        roles["idp"] = pid
    return roles


def nginx_direct(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    proc, port = shared.upstream()
    return Target(url=f"http://127.0.0.1:{port}{REQUEST_PATH}", measured={"server": proc.pid})


def nginx_proxy(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
    _upstream, up_port = shared.upstream()
    port = free_port()
    where = directory / "nginx-proxy"
    proc = start_nginx("nginx-proxy", where, proxy_conf(where, port, up_port, shared.nginx_workers), port)
    stack.callback(proc.stop)
    return Target(url=f"http://127.0.0.1:{port}{REQUEST_PATH}", measured=_roles(shared, proc.pid))


def _naive_proxy(client: str) -> Setup:
    """The naive proxy with one of the upstream-client candidates (bench/naive_proxy.py)."""

    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        _upstream, up_port = shared.upstream()
        port = free_port()
        proc = start_naive_proxy(directory / f"naive-{client}", port, up_port, client)
        stack.callback(proc.stop)
        return Target(url=f"http://127.0.0.1:{port}{REQUEST_PATH}", measured=_roles(shared, proc.pid))

    return setup


naive_proxy = _naive_proxy("naive")


def _apache(kind: Kind, token_format: str) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        _upstream, up_port = shared.upstream()
        issuer = shared.issuer(token_format)
        front = shared.https_front(token_format)
        port = free_port()
        where = directory / "apache"
        proc = start_apache(
            where, port=port, upstream_port=up_port, kind=kind, front=front, audience=AUDIENCE
        )
        stack.callback(proc.stop)
        return Target(
            url=f"http://127.0.0.1:{port}{REQUEST_PATH}",
            headers=_bearer(issuer.token),
            refusals=_bearer_refusals(issuer.wrong_scope_token),
            measured=_roles(shared, proc.pid, issuer.idp),
            idp=issuer.idp,
            logs=[where / "error.log"],
        )

    return setup


def _tokengate(
    shared: Shared,
    stack: contextlib.ExitStack,
    directory: Path,
    *,
    auth: dict[str, Any],
    issuing: str | None = None,
    workers: int = 1,
    sessions: bool = False,
    server: dict[str, Any] | None = None,
) -> tuple[Target, Gateway]:
    _upstream, up_port = shared.upstream()
    issuer = shared.issuer(issuing) if issuing is not None else None
    provider = None
    if issuer is not None:
        provider = ProviderSpec(
            "idp",
            issuer.idp.issuer,
            introspection=auth.get("validate") == "introspection",
            scopes=("openid", REQUIRED_SCOPE) if sessions else (),
        )
    session_cfg = None
    if sessions:
        session_cfg = {
            "store": "redis",
            "redis_url": shared.redis().url,
            "encryption_key": shared.session_key,
            "refresh_before": "0s",
        }
    gw = start_gateway(
        "tokengate",
        directory / "tokengate",
        upstream_port=up_port,
        auth=auth,
        provider=provider,
        workers=workers,
        sessions=session_cfg,
        port=shared.session_port if sessions else None,
        server=server,
    )
    stack.callback(gw.stop)
    target = Target(
        url=f"http://127.0.0.1:{gw.port}{REQUEST_PATH}",
        measured=_roles(shared, gw.pid, issuer.idp if issuer else None),
        gateway=gw,
        idp=issuer.idp if issuer else None,
        workers=workers,
    )
    if issuer is not None and not sessions:
        target.headers = _bearer(issuer.token)
        target.refusals = _bearer_refusals(issuer.wrong_scope_token)
        target.whoami = True
    return target, gw


def _public(workers: int) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        return _tokengate(shared, stack, directory, auth={"mode": "public"}, workers=workers)[0]

    return setup


def _bearer_route(validate: str, workers: int) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        auth = {
            "mode": "bearer",
            "provider": "idp",
            "validate": validate,
            "audience": AUDIENCE,
            "scopes": [REQUIRED_SCOPE],
        }
        issuing = "jwt" if validate == "jwt" else "opaque"
        return _tokengate(shared, stack, directory, auth=auth, issuing=issuing, workers=workers)[0]

    return setup


def _session_route(workers: int) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        auth = {"mode": "session", "provider": "idp", "scopes": [REQUIRED_SCOPE]}
        target, gw = _tokengate(
            shared, stack, directory, auth=auth, issuing="jwt", workers=workers, sessions=True
        )
        if shared.session_cookie is None:  # once per run: the session lives in Redis, not the process
            assert target.idp is not None  # a session scenario always has its provider
            shared.session_cookie = login_cookie(
                f"http://127.0.0.1:{gw.port}", REQUEST_PATH, target.idp, LOGIN
            )
        target.headers = {"Cookie": shared.session_cookie}
        target.refusals = [
            ("no cookie", {}, (401, 302)),
            ("an unknown session", {"Cookie": "tokengate_session=bogus"}, (401, 302)),
        ]
        target.whoami = True
        return target

    return setup


def _cold(workers: int) -> Setup:
    def setup(shared: Shared, stack: contextlib.ExitStack, directory: Path) -> Target:
        target = _bearer_route("introspection", workers)(shared, stack, directory)
        token = shared.issuer("opaque").token
        target.probe = lambda: single_flight_probe(target.url, token, target.idp, workers)  # type: ignore[arg-type]
        return target

    return setup


def otlp_sink(stack: contextlib.ExitStack, directory: Path) -> int:
    """A loopback OTLP/HTTP receiver process (bench.otlp_sink, which decodes every span); its port."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.otlp_sink", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = Proc("otlp-sink", argv, directory / "otlp-sink.log", env=env, cwd=REPO)
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
        return _tokengate(shared, stack, directory, auth={"mode": "public"}, server={"tracing": tracing})[0]

    return setup


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    setup: Setup
    optional: bool = False  # a failure to start is reported as "skipped", not as a failure


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("nginx-direct", "nginx direct (upstream itself, the ceiling)", nginx_direct),
    Scenario("nginx-proxy", "nginx pass-through proxy -> nginx", nginx_proxy),
    Scenario("naive-proxy", "naive aiohttp proxy, uvloop, 1 process, no auth", naive_proxy),
    Scenario("naive-proxy-tuned", "naive proxy, tuned aiohttp ClientSession upstream", _naive_proxy("tuned")),
    *(
        # Not a dependency: the row appears once `pip install aiosonic` has been run in the venv.
        [
            Scenario(
                "naive-proxy-aiosonic",
                "naive proxy, aiosonic upstream",
                _naive_proxy("aiosonic"),
                optional=True,
            )
        ]
        if importlib.util.find_spec("aiosonic") is not None
        else []
    ),
    Scenario(
        "naive-proxy-pool", "naive proxy, gateway.upstream pool (httptools) upstream", _naive_proxy("pool")
    ),
    Scenario(
        "apache-openidc-jwt",
        "Apache + mod_auth_openidc, JWT via JWKS + scope + aud",
        _apache("openidc-jwt", "jwt"),
        optional=True,
    ),
    Scenario(
        "apache-openidc-introspection",
        "Apache + mod_auth_openidc, introspection + shm cache",
        _apache("openidc-introspection", "opaque"),
        optional=True,
    ),
    Scenario(
        "apache-oauth2-jwt",
        "Apache + mod_oauth2, JWT + scope + aud",
        _apache("oauth2-jwt", "jwt"),
        optional=True,
    ),
    Scenario("tokengate-public", "tokengate, public route", _public(1)),
    Scenario("tokengate-public-traced", "tokengate, public route, tracing on (OTLP/HTTP)", _traced(1.0)),
    Scenario("tokengate-public-traced-10", "tokengate, public route, tracing on, 10 % sampled", _traced(0.1)),
    Scenario("tokengate-jwt", "tokengate, bearer JWT + aud + scope (warm)", _bearer_route("jwt", 1)),
    Scenario(
        "tokengate-introspection",
        "tokengate, bearer introspection + aud + scope (warm)",
        _bearer_route("introspection", 1),
    ),
    Scenario("tokengate-session", "tokengate, session route (Redis)", _session_route(1)),
    Scenario("tokengate-cold", "tokengate, cold introspection cache: 100 concurrent first uses", _cold(1)),
    Scenario("tokengate-public-2w", "tokengate 2 workers, public route", _public(2)),
    Scenario("tokengate-jwt-2w", "tokengate 2 workers, bearer JWT (warm)", _bearer_route("jwt", 2)),
    Scenario(
        "tokengate-introspection-2w",
        "tokengate 2 workers, bearer introspection (warm)",
        _bearer_route("introspection", 2),
    ),
    Scenario("tokengate-session-2w", "tokengate 2 workers, session route (Redis)", _session_route(2)),
    Scenario(
        "tokengate-cold-2w", "tokengate 2 workers, cold introspection cache (per-process caches)", _cold(2)
    ),
)
