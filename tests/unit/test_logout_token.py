"""Back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.6), made here with real keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from gateway.oidc.logout_token import (
    BACKCHANNEL_EVENT,
    LogoutTokenError,
    logout_token_header,
    verify_logout_token,
)

NOW = 1_800_000_000.0
ISSUER = "https://idp.example.com"
CLIENT = "tokengate"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


def token(key: Any = KEY, *, alg: str = "RS256", typ: str | None = "logout+jwt", **claims: Any) -> str:
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": int(NOW) - 10,
        "jti": "lt-1",
        "sid": "sid-1",
        "sub": "alice",
        "events": {BACKCHANNEL_EVENT: {}},
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header: dict[str, Any] = {"alg": alg, "kid": "k1"}
    if typ is not None:
        header["typ"] = typ
    return jws.serialize_compact(header, json.dumps(body), key, algorithms=[alg])


def verify(value: str, key: Any = KEY) -> Any:
    return verify_logout_token(value, key, issuer=ISSUER, client_id=CLIENT, now=NOW, leeway=30)


def test_a_valid_logout_token() -> None:
    claims = verify(token())
    assert (claims.jti, claims.sid, claims.sub) == ("lt-1", "sid-1", "alice")
    assert logout_token_header(token()).kid == "k1"


@pytest.mark.parametrize(
    "claims",
    [{"sid": None}, {"sub": None}, {"aud": [CLIENT, "other"]}, {"exp": int(NOW) + 60}],
    ids=["sub-only", "sid-only", "aud-list", "with-exp"],
)
def test_accepted_variants(claims: dict[str, Any]) -> None:
    assert verify(token(**claims)).jti == "lt-1"


def test_untyped_tokens_are_accepted() -> None:
    # Many providers (oidc-provider among them) send "JWT" or no typ at all.
    assert verify(token(typ=None)).jti == "lt-1"
    assert verify(token(typ="JWT")).jti == "lt-1"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": None}, "audience"),
        ({"iat": int(NOW) - 400}, "iat"),
        ({"iat": int(NOW) + 400}, "iat"),
        ({"iat": None}, "iat"),
        ({"exp": int(NOW) - 100}, "expired"),
        ({"jti": None}, "jti"),
        ({"events": None}, "events"),
        ({"events": {"http://schemas.openid.net/event/other": {}}}, "events"),
        ({"events": {BACKCHANNEL_EVENT: "yes"}}, "events"),
        ({"nonce": "n-1"}, "nonce"),
        ({"sid": None, "sub": None}, "neither"),
        ({"sid": "", "sub": 7}, "neither"),
    ],
)
def test_claims_are_checked(claims: dict[str, Any], reason: str) -> None:
    """A token for another client, another issuer, a stale one, or an ID token in disguise: refused."""
    with pytest.raises(LogoutTokenError, match=reason):
        verify(token(**claims))


def test_signed_by_another_key() -> None:
    """Anyone can POST to the endpoint: only the provider's key makes a logout token."""
    with pytest.raises(LogoutTokenError, match="signature"):
        verify(token(RSAKey.generate_key(2048)))


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_hs256_with_the_public_key_as_secret() -> None:
    """The classic key-confusion attack: an HMAC made with the RSA public key's bytes (joserfc itself
    refuses to make such a key, so the attacker's token is assembled by hand)."""
    signing_input = f"{_part({'alg': 'HS256', 'kid': 'k1'})}.{_part({'iss': ISSUER, 'aud': CLIENT})}"
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(LogoutTokenError, match="algorithm"):
        verify(f"{signing_input}.{_part(mac)}")


def test_alg_none() -> None:
    part = _part
    unsigned = f"{part({'alg': 'none'})}.{part({'iss': ISSUER, 'aud': CLIENT})}."
    with pytest.raises(LogoutTokenError):
        verify(unsigned)


@pytest.mark.parametrize("typ", ["at+jwt", "dpop+jwt", "secevent+jwt"])
def test_other_token_types(typ: str) -> None:
    with pytest.raises(LogoutTokenError, match="typ"):
        verify(token(typ=typ))


def test_encrypted_tokens_are_refused() -> None:
    with pytest.raises(LogoutTokenError, match="JWE"):
        verify("a.b.c.d.e")


def test_an_ec_key_works_too() -> None:
    ec = ECKey.generate_key("P-256")
    assert verify(token(ec, alg="ES256"), ec).sid == "sid-1"


@given(st.text(max_size=400))
def test_any_form_value_is_refused_cleanly(value: str) -> None:
    """Whatever is POSTed as logout_token, the answer is a LogoutTokenError, never another exception."""
    with pytest.raises(LogoutTokenError):
        verify(value)


def test_a_nan_iat_is_malformed() -> None:
    """NaN is not JSON: an iat of NaN would pass the 5-minute window check whatever the time."""
    with pytest.raises(LogoutTokenError, match="malformed claims"):
        verify(token(iat=float("nan")))
