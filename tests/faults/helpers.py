"""Shared pieces of the fault tier: a session gateway served in-process on a real loopback port, sessions
written through the gateway's own store (what a login writes), and the checks every fault test makes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import yaml
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.config import parse_config
from gateway.models import Session, TokenSet
from gateway.sessions import SessionStore
from gateway.web.state import RUNTIME
from tests.support.clients import Client
from tests.support.upstream import Upstream

NAVIGATE = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


def a_session(subject: str, *, token_ttl: float = 3600.0) -> Session:
    now = time.time()
    return Session(
        subject=subject,
        provider="main",
        tokens=TokenSet(
            access_token=f"at-{subject}", refresh_token=f"rt-{subject}", expires_at=now + token_ttl
        ),
        claims={"sub": subject},
        created_at=now,
        expires_at=now + 3600,
        email=f"{subject}@example.com",
    )


def store_of(client: Client) -> SessionStore:
    store = client.app[RUNTIME].current.store
    assert store is not None
    return store


async def create_sessions(client: Client, count: int) -> dict[str, str]:
    """``count`` sessions (subjects user0..) through the gateway's store; session id -> subject."""
    store = store_of(client)
    made: dict[str, str] = {}
    for n in range(count):
        subject = f"user{n}"
        made[await store.create(a_session(subject))] = subject
    return made


def assert_identity_matches(upstream: Upstream, expected_user_by_path: dict[str, str]) -> None:
    """Each request that reached the upstream carried the user of the session it was sent with (a stale
    Redis reply read as another command's answer would hand one user's session to another)."""
    checked = 0
    for seen in upstream.seen:
        want = expected_user_by_path.get(seen.path)
        if want is not None:
            assert seen.header("X-Auth-Request-User") == want, (seen.path, seen.header("X-Auth-Request-User"))
            checked += 1
    assert checked, "no request reached the upstream"


async def serve(
    aiohttp_client: Any, cfg: dict[str, Any], *, clock: Callable[[], float] | None = None
) -> Client:
    """The gateway for ``cfg`` on a loopback port (with an injected clock when given)."""
    parsed = parse_config(yaml.safe_dump(cfg), env={})
    app = create_app(parsed, clock=clock) if clock else create_app(parsed)
    client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    return client  # type: ignore[no-any-return]


async def wait_providers(client: Client, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    providers = client.app[RUNTIME].current.providers.values()
    return all([await p.wait_ready(timeout) for p in providers])


def in_flight() -> float:
    """The gateway's in-flight request gauge (one process-wide registry): 0 when nothing is stuck."""
    value = REGISTRY.get_sample_value("tokengate_in_flight_requests")
    return 0.0 if value is None else value


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:  # noqa: ASYNC109
    """Poll ``predicate()`` every 20 ms; True once it holds, False after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
