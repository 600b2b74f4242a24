"""Reload swaps the runtime but keeps what did not change: provider clients (metadata, JWKS and token
caches) and the session store, so a reload never drops readiness, caches or memory sessions."""

from __future__ import annotations

from typing import Any

import yaml

from gateway.app import swap_runtime
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.fixtures.login import HTML, LoginFactory


async def test_reload_keeps_unchanged_providers_and_sessions(login_setup: LoginFactory) -> None:
    setup = await login_setup(store="memory")
    app = setup.client.app
    before = app[RUNTIME].current
    async with setup.browser() as browser:
        await setup.login(browser, "/")
        changed: dict[str, Any] = dict(setup.config)
        changed["routes"] = [*changed["routes"][:-1], {**changed["routes"][-1], "name": "app-renamed"}]
        old = await swap_runtime(app, parse_config(yaml.safe_dump(changed), env={}))
        after = app[RUNTIME].current
        assert old is before
        assert after is not before
        assert after.providers["main"] is before.providers["main"]  # same client: ready, caches warm
        assert after.providers["main"].ready
        assert after.store is before.store
        await old.close(after)  # what the server does after the grace
        async with browser.get(setup.url + "/still", headers=HTML) as resp:
            assert resp.status == 200  # the memory session survived the reload
        assert setup.upstream.last.header("X-Auth-Request-User") == "alice"

        # A changed provider gets a new client; the old one is closed with the old runtime.
        provider_changed = dict(changed)
        provider_changed["providers"] = {"main": {**changed["providers"]["main"], "timeout": "4s"}}
        old = await swap_runtime(app, parse_config(yaml.safe_dump(provider_changed), env={}))
        newest = app[RUNTIME].current
        assert newest.providers["main"] is not after.providers["main"]
        assert await newest.providers["main"].wait_ready(10)
        await old.close(newest)
        async with browser.get(setup.url + "/again", headers=HTML) as resp:
            assert resp.status == 200


async def test_oauth2_wrong_method_is_json_405(login_setup: LoginFactory) -> None:
    setup = await login_setup(store="memory")
    resp = await setup.client.post("/oauth2/login")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    assert (await resp.json())["error"] == "method_not_allowed"
