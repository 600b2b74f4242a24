"""Forged, replayed and malformed back-channel logouts (OIDC Back-Channel Logout 1.0 §2.6, §2.8): each is
refused with 400 and leaves the session alive. Tokens are signed here with the real provider's own keys
(its key file), so every check but the one under attack passes; the gateway fetched those keys itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from tests.fixtures.login import HTML, LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream

BACKCHANNEL = "/oauth2/backchannel-logout"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
FORM = "application/x-www-form-urlencoded"


class Signer:
    """Logout tokens signed with the provider's RS256 key, claims overridable (None removes one)."""

    def __init__(self, setup: LoginSetup, key_file: Path, sid: str) -> None:
        keys = json.loads(key_file.read_text())["keys"]
        jwk = next(k for k in keys if k["alg"] == "RS256")
        self.key = RSAKey.import_key(jwk)
        self.kid = jwk["kid"]
        self.issuer = setup.idp.issuer
        self.client_id = setup.idp.client_id
        self.sid = sid
        self.count = 0

    def claims(self, **changes: Any) -> dict[str, Any]:
        self.count += 1
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": int(time.time()),
            "jti": f"test-jti-{self.count}-{time.time_ns()}",
            "sid": self.sid,
            "sub": "alice",
            "events": {EVENT: {}},
        }
        body.update(changes)
        return {k: v for k, v in body.items() if v is not None}

    def token(self, *, key: Any = None, kid: str | None = None, alg: str = "RS256", **changes: Any) -> str:
        header = {"alg": alg, "kid": kid or self.kid, "typ": "logout+jwt"}
        payload = json.dumps(self.claims(**changes))
        return jws.serialize_compact(header, payload, key or self.key, algorithms=[alg])


@pytest.fixture
async def setup(
    login_setup: LoginFactory,
    redis_url: str,
    upstream: Upstream,
    tmp_path: Path,
    browser: aiohttp.ClientSession,
) -> LoginSetup:
    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        routes=[session_route(upstream)],
        idp={
            "key_file": tmp_path / "idp-keys.json",
            "backchannel_logout_uri": lambda url: url + BACKCHANNEL,
        },
    )
    await setup.login(browser)
    return setup


@pytest.fixture
async def signer(setup: LoginSetup, browser: aiohttp.ClientSession, tmp_path: Path) -> Signer:
    cookie = setup.session_cookie(browser)
    assert cookie is not None
    session = await setup.store.get(cookie)
    assert session is not None
    assert session.sid is not None
    return Signer(setup, tmp_path / "idp-keys.json", session.sid)


async def post(
    setup: LoginSetup, body: str | bytes, *, content_type: str = FORM, query: str = ""
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as op,
        op.post(setup.url + BACKCHANNEL + query, data=body, headers={"Content-Type": content_type}) as resp,
    ):
        text = await resp.text()
        return resp.status, (json.loads(text) if text else {}), dict(resp.headers)


async def logout(setup: LoginSetup, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return await post(setup, "logout_token=" + token)


async def alive(setup: LoginSetup, browser: aiohttp.ClientSession) -> bool:
    async with browser.get(setup.url + "/", headers=HTML, allow_redirects=False) as resp:
        return resp.status == 200


async def refused(setup: LoginSetup, browser: aiohttp.ClientSession, token: str) -> None:
    status, body, headers = await logout(setup, token)
    assert status == 400, body
    assert body["error"] == "invalid_request"
    assert body["error_description"]
    assert headers["Cache-Control"] == "no-store"
    assert await alive(setup, browser)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_control_a_provider_signed_token_ends_the_session(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Control: a logout token the provider's key signed, with every claim right, ends the session."""
    status, _, headers = await logout(setup, signer.token())
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert not await alive(setup, browser)


async def test_replayed_token_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Replay: a captured logout token sent again (same jti) cannot end the user's next session."""
    captured = signer.token()
    assert (await logout(setup, captured))[0] == 200
    await setup.login(browser)  # the provider session lives on, so the new session has the same sid
    await refused(setup, browser, captured)


async def test_unsigned_token_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Forged logout, alg none: an unsigned token with the right claims is refused."""
    await refused(setup, browser, f"{_b64({'alg': 'none', 'typ': 'logout+jwt'})}.{_b64(signer.claims())}.")


async def test_token_signed_by_another_key_under_the_providers_kid_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Forged logout: a token signed by the attacker's key, naming the provider's key id."""
    await refused(setup, browser, signer.token(key=RSAKey.generate_key(2048)))


async def test_token_signed_by_an_unknown_key_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Forged logout: a token signed by a key the provider never published (unknown kid)."""
    await refused(setup, browser, signer.token(key=ECKey.generate_key("P-256"), kid="attacker", alg="ES256"))


async def test_hmac_with_the_public_key_as_secret_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Algorithm confusion: HS256 over the token, keyed with the provider's public key."""
    # joserfc refuses to make this token (a PEM is no HMAC key), so it is put together by hand.
    header = {"alg": "HS256", "kid": signer.kid, "typ": "logout+jwt"}
    signing_input = f"{_b64(header)}.{_b64(signer.claims())}"
    secret = signer.key.as_pem(private=False)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    await refused(setup, browser, signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode())


@pytest.mark.parametrize(
    ("attack", "changes"),
    [
        ("wrong audience", {"aud": "another-client"}),
        ("wrong issuer", {"iss": "https://idp.attacker.example"}),
        ("stale iat", {"iat": -(300 + 30 + 10)}),  # past the 5 min window plus jwt_leeway (30 s)
        ("iat in the future", {"iat": 30 + 10}),  # beyond the leeway
        ("no events", {"events": None}),
        ("another event", {"events": {"http://schemas.openid.net/event/other": {}}}),
        ("nonce-bearing", {"nonce": "n-0S6_WzA2Mj"}),
        ("neither sid nor sub", {"sid": None, "sub": None}),
        ("no jti", {"jti": None}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_provider_signed_token_with_a_bad_claim_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession, attack: str, changes: dict[str, Any]
) -> None:
    """A token the provider's key signed but that is not a valid logout token for us (each §2.6 check)."""
    if "iat" in changes:  # given as an offset from now
        changes = {**changes, "iat": int(time.time()) + changes["iat"]}
    await refused(setup, browser, signer.token(**changes))


async def test_real_id_token_passed_off_as_a_logout_token_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Token substitution: the provider's own ID token (nonce, no events) sent as a logout token."""
    cookie = setup.session_cookie(browser)
    assert cookie is not None
    session = await setup.store.get(cookie)
    assert session is not None
    assert session.tokens.id_token is not None
    await refused(setup, browser, session.tokens.id_token)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("", FORM),
        ("other=1", FORM),
        ("logout_token=", FORM),
        ("logout_token=a.b.c&logout_token=d.e.f", FORM),
        ('{"logout_token": "a.b.c"}', "application/json"),
        ("logout_token=" + "a" * 40_000, FORM),
        ("logout_token=%ff%fe", FORM),
    ],
    ids=["empty", "missing", "blank", "repeated", "json", "huge", "not-utf8"],
)
async def test_malformed_logout_requests_are_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession, body: str, content_type: str
) -> None:
    """Malformed logout requests (§2.5): no, blank, repeated or oversized logout_token, or no form."""
    status, answer, headers = await post(setup, body, content_type=content_type)
    assert status == 400, answer
    assert answer["error"] == "invalid_request"
    assert headers["Cache-Control"] == "no-store"
    assert await alive(setup, browser)


async def test_unknown_provider_parameter_is_refused(
    setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession
) -> None:
    """Provider confusion: ?provider= naming no configured provider cannot pick whose keys are used."""
    status, answer, _ = await post(setup, "logout_token=" + signer.token(), query="?provider=evil")
    assert status == 400, answer
    assert await alive(setup, browser)


async def test_get_is_not_a_logout(setup: LoginSetup, signer: Signer, browser: aiohttp.ClientSession) -> None:
    """Cross-site logout by link or image: a GET with a valid token is refused (405), nothing ends."""
    async with (
        aiohttp.ClientSession() as op,
        op.get(setup.url + BACKCHANNEL, params={"logout_token": signer.token()}) as resp,
    ):
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
    assert await alive(setup, browser)


async def test_the_token_is_never_logged(
    setup: LoginSetup, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """Token leak through logs: neither an accepted nor a refused logout token appears in any log line."""
    accepted, bad = signer.token(), signer.token(aud="another-client")
    with caplog.at_level(logging.DEBUG):
        assert (await logout(setup, bad))[0] == 400
        assert (await logout(setup, accepted))[0] == 200
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage()
        for token in (accepted, bad):
            for part in token.split("."):
                assert part not in text


async def test_redis_down_answers_503_and_never_500(
    setup: LoginSetup, signer: Signer, redis_server: Any
) -> None:
    """Fail closed: with Redis down, a valid logout is answered 503 + Retry-After (the provider retries)."""
    token = signer.token()
    redis_server.stop()
    try:
        status, answer, headers = await logout(setup, token)
    finally:
        redis_server.start()
    assert status == 503, answer
    assert headers["Retry-After"]
    assert answer["error"] == "temporarily_unavailable"


async def test_endless_chunked_body_is_cut_off(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Memory exhaustion: a chunked body with no length is read only up to the logout request limit."""

    async def endless() -> Any:
        yield b"logout_token="
        for _ in range(64):
            yield b"a" * 4096

    async with (
        aiohttp.ClientSession() as op,
        op.post(setup.url + BACKCHANNEL, data=endless(), headers={"Content-Type": FORM}) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
    assert await alive(setup, browser)
