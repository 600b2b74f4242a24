"""DPoP proof checks (RFC 9449 §4.3) on proofs made here with real keys: every rule has a negative."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, RSAKey

from gateway.oidc.dpop import DPoPError, access_token_hash, normalise_htu, verify_proof

NOW = 1_800_000_000.0
URL = "https://api.example.com/orders/7"
TOKEN = "opaque-access-token-value"
EC = ECKey.generate_key("P-256")
RSA = RSAKey.generate_key(2048)


def proof(
    key: Any = EC,
    *,
    alg: str = "ES256",
    typ: str | None = "dpop+jwt",
    jwk: Any = "public",
    **claims: Any,
) -> str:
    body = {"htm": "GET", "htu": URL, "iat": int(NOW), "jti": "j-1", "ath": access_token_hash(TOKEN)}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header: dict[str, Any] = {"alg": alg}
    if typ is not None:
        header["typ"] = typ
    if jwk == "public":
        header["jwk"] = key.as_dict(private=False)
    elif jwk is not None:
        header["jwk"] = jwk
    return jws.serialize_compact(header, json.dumps(body), key, algorithms=[alg])


def check(
    value: str, *, method: str = "GET", url: str = URL, token: str | None = TOKEN, jkt: Any = "ec"
) -> Any:
    bound = EC.thumbprint() if jkt == "ec" else jkt
    return verify_proof(value, method=method, url=url, access_token=token, jkt=bound, now=NOW)


def test_a_valid_proof() -> None:
    result = check(proof())
    assert (result.jti, result.iat, result.jkt) == ("j-1", NOW, EC.thumbprint())


def test_rsa_proofs_are_accepted() -> None:
    assert check(proof(RSA, alg="RS256"), jkt=RSA.thumbprint()).jkt == RSA.thumbprint()


def test_ath_matches_rfc_9449_example() -> None:
    # RFC 9449 §7.1's access token and its ath.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.mark.parametrize(
    ("kwargs", "request_kw", "reason"),
    [
        ({"htm": "POST"}, {}, "htm"),
        ({}, {"method": "POST"}, "htm"),
        ({"htu": "https://api.example.com/orders/8"}, {}, "htu"),
        ({"htu": "https://evil.example.com/orders/7"}, {}, "htu"),
        ({"htu": "http://api.example.com/orders/7"}, {}, "htu"),
        ({"iat": int(NOW) - 120}, {}, "iat"),
        ({"iat": int(NOW) + 120}, {}, "iat"),
        ({"iat": "now"}, {}, "iat"),
        ({"iat": True}, {}, "iat"),
        ({"jti": None}, {}, "jti"),
        ({"jti": ""}, {}, "jti"),
        ({"jti": "x" * 300}, {}, "jti"),
        ({"ath": access_token_hash("another token")}, {}, "ath"),
        ({"ath": None}, {}, "ath"),
    ],
)
def test_claims_are_checked(kwargs: dict[str, Any], request_kw: dict[str, Any], reason: str) -> None:
    """A proof made for another request, time or token is refused."""
    with pytest.raises(DPoPError, match=reason):
        check(proof(**kwargs), **request_kw)


def test_another_key_than_the_token_is_bound_to() -> None:
    """A thief's own key makes a valid proof, but not for a token bound to the victim's key."""
    thief = ECKey.generate_key("P-256")
    with pytest.raises(DPoPError, match="bound"):
        check(proof(thief))
    with pytest.raises(DPoPError, match="bound"):
        check(proof(), jkt=None)  # a bearer-only token has no cnf.jkt: no proof can bind it


def test_a_jwk_that_did_not_sign_the_proof() -> None:
    """The header names the victim's public key, the signature is the attacker's."""
    attacker = ECKey.generate_key("P-256")
    forged = proof(attacker, jwk=EC.as_dict(private=False))
    with pytest.raises(DPoPError, match="signature"):
        check(forged)


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "DPOP+JWT "])
def test_typ_must_be_dpop_jwt(typ: str | None) -> None:
    with pytest.raises(DPoPError, match="typ"):
        check(proof(typ=typ))


def test_symmetric_keys_and_mac_algorithms_are_refused() -> None:
    """HS256 with the key in the header proves nothing: anyone can make it."""
    secret = OctKey.generate_key(256)
    with pytest.raises(DPoPError):
        check(proof(secret, alg="HS256", jwk=secret.as_dict(private=True)))


def test_alg_none_is_refused() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "dpop+jwt"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"htm": "GET", "htu": URL}).encode()).rstrip(b"=")
    with pytest.raises(DPoPError):
        check(f"{header.decode()}.{body.decode()}.")


def test_a_private_key_in_the_header_is_refused() -> None:
    with pytest.raises(DPoPError, match="private"):
        check(proof(jwk=EC.as_dict(private=True)))


def test_a_missing_jwk_is_refused() -> None:
    with pytest.raises(DPoPError, match="jwk"):
        check(proof(jwk=None))


@pytest.mark.parametrize("value", ["", "a.b", "a.b.c.d.e", "x" * 9000, "ä.b.c", "e30.e30.e30"])
def test_malformed_proofs(value: str) -> None:
    with pytest.raises(DPoPError):
        check(value)


def test_no_token_binding_when_no_token_is_given() -> None:
    # Proofs sent to a token endpoint carry no ath; the resource server always passes the token.
    assert check(proof(ath=None), token=None, jkt=None).jti == "j-1"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://API.example.com:443/orders/7", URL),
        ("https://api.example.com/orders/7?x=1#f", URL),
        ("https://api.example.com/orders/%37", URL),
        ("https://api.example.com", "https://api.example.com/"),
        ("https://api.example.com/a%2fb", "https://api.example.com/a%2Fb"),
        ("http://[::1]:80/x", "http://[::1]/x"),
    ],
)
def test_htu_normalisation(a: str, b: str) -> None:
    assert normalise_htu(a) == normalise_htu(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://api.example.com/a%2Fb", "https://api.example.com/a/b"),
        ("https://api.example.com:8443/x", "https://api.example.com/x"),
        ("https://api.example.com/X", "https://api.example.com/x"),
    ],
)
def test_htu_differences_that_matter(a: str, b: str) -> None:
    assert normalise_htu(a) != normalise_htu(b)


@given(st.text(max_size=300))
def test_any_header_value_is_refused_cleanly(value: str) -> None:
    """Whatever a client puts in the DPoP header, the answer is a DPoPError, never another exception."""
    with pytest.raises(DPoPError):
        check(value)


@pytest.mark.parametrize("htu", ["https://[zz/x", "https://api.example.com:99999/x", "http://[::1"])
def test_a_malformed_htu_is_a_dpop_error(htu: str) -> None:
    """A proof whose htu cannot even be parsed is refused as a proof, never a 500."""
    with pytest.raises(DPoPError, match="htu"):
        check(proof(htu=htu))


@pytest.mark.parametrize("iat", [float("nan"), float("inf"), float("-inf")])
def test_non_numbers_in_iat_are_refused(iat: float) -> None:
    """A NaN iat passes every window comparison (all are false): such a proof could be replayed forever."""
    with pytest.raises(DPoPError, match="malformed claims"):
        verify_proof(
            proof(iat=iat), method="GET", url=URL, access_token=TOKEN, jkt=EC.thumbprint(), now=NOW + 1e7
        )
