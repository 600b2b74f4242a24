"""Real-browser fixtures: Debian's Chromium driven by Playwright for Python (async API).

One Playwright driver and one Chromium per test session, a new browser context (fresh cookie jar) per
test. Every request to a host other than loopback is aborted inside the browser: the provider's pages
load fonts from a public host, and this machine has no route there (PEERS.md).

Playwright's async objects belong to the event loop that created them, and the gateway under test runs
in the test's loop (aiohttp test server). So the e2e tests run in pytest-asyncio's *session* loop
(``pytest.mark.asyncio(loop_scope="session")`` in every module), and the two async fixtures that
``login_setup`` builds on (``aiohttp_client``, ``upstream``) are redefined here to run in that loop too.
Never ``playwright install``: the browser is /usr/bin/chromium (``make test`` installs it with apt).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Route,
    ViewportSize,
    async_playwright,
)

from tests.support.clients import Client
from tests.support.upstream import Upstream, start_upstream, stop_upstream

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
VIEWPORT: ViewportSize = {"width": 1000, "height": 700}
TIMEOUT_MS = 15_000  # any single browser step; a whole login takes ~1-2 s

LOGIN_TIMES: pytest.StashKey[list[tuple[str, float]]] = pytest.StashKey()


# ---- the gateway's building blocks, in the session loop -------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[Upstream]:
    up = await start_upstream()
    yield up
    await stop_upstream(up)


@pytest_asyncio.fixture(loop_scope="session")
async def aiohttp_client() -> AsyncIterator[Any]:
    """pytest-aiohttp's ``aiohttp_client(app, server_kwargs=...)``, in the session loop."""
    clients: list[Client] = []

    async def go(app: Application, *, server_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        client: Client = TestClient(TestServer(app, **(server_kwargs or {})), **kwargs)
        await client.start_server()
        clients.append(client)
        return client

    yield go
    while clients:
        await clients.pop().close()


# ---- the browser ----------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium(playwright: Playwright) -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    await browser.close()


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname in LOOPBACK_HOSTS


@dataclass
class Browsing:
    """One browser profile for one test, with every request it made (all pages, redirects included)."""

    context: BrowserContext
    requests: list[Request] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    async def new_page(self) -> Page:
        return await self.context.new_page()

    async def cookies(self) -> list[dict[str, Any]]:
        return [dict(c) for c in await self.context.cookies()]


@pytest_asyncio.fixture(loop_scope="session")
async def browsing(chromium: Browser) -> AsyncIterator[Browsing]:
    context = await chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    state = Browsing(context)

    async def abort(route: Route) -> None:
        state.blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    await context.route(lambda url: not is_loopback(url), abort)

    def record(request: Request) -> None:
        state.requests.append(request)

    context.on("request", record)
    yield state
    await context.close()


# ---- the time of one browser login, reported at the end of the run -------------------------------------


@pytest.fixture
def login_timer(request: pytest.FixtureRequest) -> Any:
    """``login_timer(label, seconds)`` records one measured browser login for the terminal summary."""
    times = request.config.stash.setdefault(LOGIN_TIMES, [])

    def record(label: str, seconds: float) -> None:
        times.append((label, seconds))
        print(f"browser login through the gateway ({label}): {seconds * 1000:.0f} ms")

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    times = config.stash.get(LOGIN_TIMES, [])
    if times:
        terminalreporter.section("browser login time")
        for label, seconds in times:
            terminalreporter.write_line(f"{label}: {seconds * 1000:.0f} ms (navigation start to final page)")
