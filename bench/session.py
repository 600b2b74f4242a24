"""A browser session for the session-route scenarios, made once per run without a browser: the
gateway's login redirect, the provider's pages (devtools.idp), the callback; the cookie it sets.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urljoin

from devtools.idp import IdP, loopback_session

HTML = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}
COOKIE_NAME = "tokengate_session"


async def _login(gateway: str, path: str, idp: IdP, login: str) -> str:
    async with loopback_session() as browser:
        url = gateway + path
        for _hop in range(3):  # the route -> /oauth2/login -> the provider
            async with browser.get(url, headers=HTML, allow_redirects=False) as resp:
                if resp.status != 302:
                    raise RuntimeError(f"GET {url} answered {resp.status}, want a login redirect")
                url = urljoin(url, resp.headers["Location"])
            if url.startswith(idp.issuer):
                break
        callback = await idp.follow_interactions(browser, url, login=login)
        if not callback.startswith(gateway + "/oauth2/callback"):
            raise RuntimeError(f"the provider sent the browser to {callback}, not the gateway's callback")
        async with browser.get(callback, allow_redirects=False) as resp:
            if resp.status != 302:
                raise RuntimeError(f"the callback answered {resp.status}: {(await resp.text())[:300]}")
        for cookie in browser.cookie_jar:
            if cookie.key == COOKIE_NAME:
                return f"{COOKIE_NAME}={cookie.value}"
    raise RuntimeError(f"the gateway set no {COOKIE_NAME} cookie")


def login_cookie(gateway: str, path: str, idp: IdP, login: str) -> str:
    """``name=value`` of the session cookie after a full code flow through ``gateway`` (an origin)."""
    return asyncio.run(_login(gateway, path, idp, login))
