"""The `make run` demo in a real browser: the same three processes `python -m demo` starts (test provider,
demo upstream, gateway with config/demo.yaml), a login as alice, and the README's screenshot of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from demo.stack import DemoStack, Ports
from devtools.net import free_port
from tests.e2e.conftest import Browsing
from tests.e2e.flows import at_provider, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "demo-login.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture(loop_scope="session")
async def demo() -> AsyncIterator[DemoStack]:
    ports = Ports(gateway=free_port(), admin=free_port(), idp=free_port(), upstream=free_port())
    stack = DemoStack(ports)
    await asyncio.to_thread(stack.start)  # blocking: spawns the processes and waits for each to answer
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


async def test_demo_login_and_readme_screenshot(demo: DemoStack, browsing: Browsing, tmp_path: Path) -> None:
    issuer = f"http://127.0.0.1:{demo.ports.idp}"
    page = await browsing.new_page()
    await page.goto(demo.url + "/")
    assert at_provider(page, issuer), page.url
    await sign_in(page, issuer, "alice")
    await page.wait_for_url(lambda url: url == demo.url + "/")
    heading = page.locator("h1")
    assert await heading.inner_text() == "Hello, alice"
    body = await page.inner_text("body")
    assert "alice@example.com" in body
    assert "Bearer token received" in body
    # The gateway keeps its session cookie to itself (the provider's cookies share 127.0.0.1's jar, so
    # the upstream may well see those).
    received = await page.locator("tr", has_text="Cookies received").locator("td").inner_text()
    assert "tokengate" not in received
    # The committed README image is rewritten only on request (or when missing): the page shows a
    # request id, so every run's picture differs by a few pixels.
    target = (
        SCREENSHOT
        if (os.environ.get("UPDATE_SCREENSHOT") or not SCREENSHOT.exists())
        else tmp_path / "demo.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target), full_page=False)
    data = target.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 700)
