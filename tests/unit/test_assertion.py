"""Identity assertions (DESIGN §8): ES256 JWTs an upstream verifies with the published key set."""

from __future__ import annotations

import json
from typing import cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, KeySetSerialization

from gateway.oidc.assertion import AssertionSigner, SigningKeyError, load_signing_key

NOW = 1_800_000_000.0


def pem(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> str:
    return private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def signer() -> AssertionSigner:
    return AssertionSigner(
        load_signing_key(pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8))
    )


def test_an_upstream_verifies_with_the_published_keys() -> None:
    s = signer()
    token = s.sign(
        issuer="https://gw.example.com",
        audience="http://orders:8080",
        subject="alice",
        email="alice@example.com",
        groups=["admins"],
        now=NOW,
    )
    keys = KeySet.import_key_set(json.loads(json.dumps(s.jwks)))  # as fetched over HTTP
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["kid"] == s.kid == keys.keys[0].kid
    assert decoded.claims["sub"] == "alice"
    assert decoded.claims["aud"] == "http://orders:8080"
    assert decoded.claims["groups"] == ["admins"]
    assert decoded.claims["exp"] - decoded.claims["iat"] == 300
    assert "d" not in s.jwks["keys"][0]  # the private part is never published


def test_each_assertion_has_its_own_jti() -> None:
    s = signer()
    keys = KeySet.import_key_set(cast("KeySetSerialization", s.jwks))
    jtis = {
        jwt.decode(s.sign(issuer="i", audience="a", subject="alice", now=NOW), keys).claims["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_another_gateways_key_does_not_verify() -> None:
    token = signer().sign(issuer="i", audience="a", subject="alice", now=NOW)
    with pytest.raises(JoseError):
        jwt.decode(token, KeySet.import_key_set(cast("KeySetSerialization", signer().jwks)))


def test_keys_in_every_accepted_form() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    sec1 = load_signing_key(pem(private, serialization.PrivateFormat.TraditionalOpenSSL))
    pkcs8 = load_signing_key(pem(private, serialization.PrivateFormat.PKCS8))
    as_jwk = load_signing_key(
        json.dumps(ECKey.import_key(pem(private, serialization.PrivateFormat.PKCS8)).as_dict(private=True))
    )
    assert sec1.thumbprint() == pkcs8.thumbprint() == as_jwk.thumbprint()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a key",
        "{}",
        "{not json",
        pem(rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.PKCS8),
        pem(ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.PKCS8),
        json.dumps(ECKey.generate_key("P-256").as_dict(private=False)),
    ],
    ids=["empty", "text", "empty-jwk", "bad-json", "rsa", "p384", "public-only"],
)
def test_wrong_keys_are_refused(text: str) -> None:
    with pytest.raises(SigningKeyError):
        load_signing_key(text)
