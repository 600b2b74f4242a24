"""Hostile `Cookie` headers (issue 9, defence 1): huge, many, duplicated session names (cookie tossing),
quoted values, invalid bytes, `__Host-` and letter-case variants of the session cookie. Never a 500,
never somebody else's session, and the gateway's cookies (in any spelling) never reach the upstream."""

from __future__ import annotations

import time

from gateway.models import Session, TokenSet
from gateway.sessions import SessionStore
from gateway.web.state import RUNTIME
from tests.fixtures.login import LoginFactory, LoginSetup
from tests.security.support import raw_request
from tests.support.upstream import Seen

XHR = {"Accept": "application/json", "Sec-Fetch-Mode": "cors"}


def _store(setup: LoginSetup) -> SessionStore:
    store = setup.client.app[RUNTIME].current.store
    assert store is not None
    return store


def cookie_name(setup: LoginSetup) -> str:
    return str(setup.client.app[RUNTIME].current.cookies.name)


async def new_session(setup: LoginSetup, subject: str) -> str:
    """A live session made in the gateway's own store (what a login leaves behind), without a browser."""
    now = time.time()
    tokens = TokenSet(access_token=f"at-{subject}", expires_at=now + 3600, scope="openid api:read")
    session = Session(
        subject=subject,
        provider="main",
        tokens=tokens,
        claims={"sub": subject},
        created_at=now,
        expires_at=now + 3600,
        email=f"{subject}@example.com",
    )
    return await _store(setup).create(session)


async def served_as(setup: LoginSetup, cookie: str) -> str | None:
    """Request a session route with exactly this Cookie header; the user the upstream saw, or None."""
    before = len(setup.upstream.seen)
    url = setup.url + "/app/x"
    async with setup.browser() as http, http.get(url, headers={"Cookie": cookie, **XHR}) as resp:
        assert resp.status in (200, 400, 401), (resp.status, await resp.text())
        if resp.status != 200:
            assert len(setup.upstream.seen) == before
            return None
    seen = setup.upstream.last
    assert_no_gateway_cookie(setup, seen)
    return seen.header("X-Auth-Request-User")


def assert_no_gateway_cookie(setup: LoginSetup, seen: Seen) -> None:
    base = setup.config["sessions"].get("cookie_name", "tokengate_session").lower()
    for header in seen.all("Cookie"):
        for part in header.split(";"):
            name = part.split("=", 1)[0].strip().lower()
            name = name.removeprefix("__host-").removeprefix("__secure-")
            assert not name.startswith(base), header


async def test_huge_cookie_headers_are_refused_cleanly(login_setup: LoginFactory) -> None:
    """Oversized Cookie header (8 KiB to 1 MiB): a 4xx from the HTTP layer, never a 500 or a session."""
    setup = await login_setup()
    sid = await new_session(setup, "alice")
    for size in (9000, 70_000, 1 << 20):
        head = (
            f"GET /app/x HTTP/1.1\r\nHost: gw\r\nCookie: {cookie_name(setup)}={sid}; pad={'a' * size}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        status, answer = await raw_request(setup.client, head)
        assert status == 0 or 400 <= status < 500, answer[:200]  # 0: cut off while still sending
    assert setup.upstream.seen == []


async def test_many_cookies(login_setup: LoginFactory) -> None:
    """A thousand cookies around the session cookie: the session is found, nothing else goes wrong."""
    setup = await login_setup()
    sid = await new_session(setup, "alice")
    name = cookie_name(setup)
    many = "; ".join(f"c{i}=v" for i in range(1000))
    assert await served_as(setup, f"{many}; {name}={sid}") == "alice"
    assert await served_as(setup, f"{name}={sid}; {many}") == "alice"
    assert len(setup.upstream.last.header("Cookie") or "") > 5000  # the other cookies still go upstream


async def test_tossed_duplicate_session_cookie(login_setup: LoginFactory) -> None:
    """Cookie tossing: a second session cookie of the same name (attacker's session) is never used."""
    setup = await login_setup()
    name = cookie_name(setup)
    victim, attacker = await new_session(setup, "alice"), await new_session(setup, "mallory")
    assert await served_as(setup, f"{name}={victim}; {name}={attacker}") is None
    assert await served_as(setup, f"{name}={attacker}; {name}={victim}") is None
    assert await served_as(setup, f'{name}="{attacker}"; x=1; {name}={victim}') is None
    assert await served_as(setup, f"{name}={victim}; {name}={victim}") == "alice"  # same value twice: fine


async def test_duplicate_session_cookie_in_a_second_cookie_header(login_setup: LoginFactory) -> None:
    """Cookie tossing through two Cookie header lines: the second line's session is never used either."""
    setup = await login_setup()
    name = cookie_name(setup)
    victim, attacker = await new_session(setup, "alice"), await new_session(setup, "mallory")
    head = (
        f"GET /app/x HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nCookie: {name}={victim}\r\n"
        f"Cookie: {name}={attacker}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, answer = await raw_request(setup.client, head)
    assert status in (400, 401), answer[:300]
    assert b"mallory" not in answer


ODD_COOKIES = [
    '{name}="{sid}"',  # quoted: RFC 6265 allows DQUOTEs around the value
    "{name}={sid}\x01",
    "{name}={sid}\x7f",
    "{name}={sid}\u00ff",
    "{name}=\u00e9\u00e8; x=1",
    "{name}={sid};;;; =; =x; ;",
    "{name} = {sid}",
    "{name}={sid}=",
    "{name}={sid},{name}=other",
    '{name}="{sid}',
    "$Version=1; {name}={sid}; $Path=/",
    "{name}=" + "A" * 200,
    "{name}=",
    "=; {name}",
]


async def test_odd_cookie_syntax(login_setup: LoginFactory) -> None:
    """Malformed Cookie syntax (quotes, control bytes, Latin-1, empty names): alice's session or none."""
    setup = await login_setup()
    await new_session(setup, "mallory")
    sid = await new_session(setup, "alice")
    for template in ODD_COOKIES:
        await one_odd_cookie(setup, template.format(name=cookie_name(setup), sid=sid))


async def one_odd_cookie(setup: LoginSetup, cookie: str) -> None:
    before = len(setup.upstream.seen)
    head = (
        (b"GET /app/x HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nConnection: close\r\n")
        + b"Cookie: "
        + cookie.encode("latin-1")
        + b"\r\n\r\n"
    )
    status, answer = await raw_request(setup.client, head)
    assert status in (200, 400, 401), (cookie, answer[:300])
    if status == 200:
        assert setup.upstream.last.header("X-Auth-Request-User") == "alice", cookie
        assert_no_gateway_cookie(setup, setup.upstream.last)
    else:
        assert len(setup.upstream.seen) == before, cookie


async def test_session_cookie_in_another_spelling_on_http(login_setup: LoginFactory) -> None:
    """Case and prefix variants of the session cookie: not a session, and never forwarded upstream."""
    setup = await login_setup()
    sid = await new_session(setup, "alice")
    assert cookie_name(setup) == "tokengate_session"
    for spelling in (
        "TOKENGATE_SESSION",
        "Tokengate_Session",
        "__Host-tokengate_session",
        "__Secure-tokengate_session",
    ):
        await one_spelling(setup, spelling, sid)


async def one_spelling(setup: LoginSetup, spelling: str, sid: str) -> None:
    assert await served_as(setup, f"{spelling}={sid}") is None
    async with setup.browser() as http:
        url = setup.url + "/public/x"
        async with http.get(url, headers={"Cookie": f"{spelling}={sid}; keep=1"}) as resp:
            assert resp.status == 200
    assert_no_gateway_cookie(setup, setup.upstream.last)
    assert setup.upstream.last.all("Cookie") == ["keep=1"]


async def test_host_prefix_tricks_under_https(login_setup: LoginFactory) -> None:
    """__Host- tricks: under https only the exact __Host- name is a session; look-alikes are not sent on."""
    setup = await login_setup(public_url="https://gw.example")
    sid = await new_session(setup, "alice")
    assert cookie_name(setup) == "__Host-tokengate_session"
    assert await served_as(setup, f"__Host-tokengate_session={sid}") == "alice"  # the real one works
    for spelling in (
        "tokengate_session",
        "__host-tokengate_session",
        "__HOST-tokengate_session",
        "__Secure-tokengate_session",
    ):
        assert await served_as(setup, f"{spelling}={sid}") is None, spelling
        url = setup.url + "/public/x"
        async with setup.browser() as http, http.get(url, headers={"Cookie": f"{spelling}={sid}"}) as resp:
            assert resp.status == 200
        assert setup.upstream.last.all("Cookie") == [], spelling


async def test_login_cookies_in_any_spelling_stay_home(login_setup: LoginFactory) -> None:
    """Login binding cookies (and look-alikes) are not forwarded upstream with the other cookies."""
    setup = await login_setup()
    sid = await new_session(setup, "alice")
    name = cookie_name(setup)
    cookie = f"{name}_login_0123456789abcdef=b1; {name.upper()}_LOGIN_x=b2; other=1; {name}={sid}"
    assert await served_as(setup, cookie) == "alice"
    assert setup.upstream.last.all("Cookie") == ["other=1"]
