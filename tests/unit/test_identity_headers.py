"""Claim headers and the identity assertion, without a network: value hygiene, the config rules with their
YAML paths, the signing key's offline checks, and the assertion cache under an injected clock."""

from __future__ import annotations

import json
import unicodedata
from typing import Any, cast

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, KeySetSerialization

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.models import Principal
from gateway.runtime.identity import Identity, UnsafeClaim, claim_header_value, claim_headers

NOW = 1_800_000_000.0


def pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


EC_PEM = pem(ec.generate_private_key(ec.SECP256R1()))


def config(
    auth: dict[str, Any] | None = None, server: dict[str, Any] | None = None, **route: Any
) -> dict[str, Any]:
    return {
        "server": {"public_url": "https://gw.example.com", "signing_key": EC_PEM, **(server or {})},
        "providers": {"main": {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "s"}},
        "routes": [
            {
                "name": "api",
                "upstream": "http://orders:8080/base",
                "auth": {"mode": "bearer", "provider": "main", "audience": "api", **(auth or {})},
                **route,
            }
        ],
    }


def problems(cfg: dict[str, Any]) -> dict[str, str]:
    try:
        parse_config(yaml.safe_dump(cfg), env={})
    except ConfigError as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


# ---- values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme", "acme"),
        (["admins", "staff"], "admins,staff"),
        ([1, True], "1,true"),
        (7, "7"),
        (False, "false"),
        ([], None),
        (None, None),
        ("ev\r\nX-Admin: 1", "evX-Admin: 1"),
        ("a\x00b\x7fc", "abc"),
        (["ok", "bad\nline"], "ok,badline"),
        ("a\x85b\u2028c\u2029d", "abcd"),  # NEL, line and paragraph separators: line breaks too
        (" admin ", "admin"),  # edge whitespace header parsers would trim anyway
    ],
)
def test_claim_values(value: object, expected: str | None) -> None:
    assert claim_header_value(value, "X-H") == expected


@pytest.mark.parametrize("value", [["staff,admins"], {"a": 1}, [{"a": 1}], [["x"]]])
def test_values_that_cannot_be_made_safe_are_refused(value: object) -> None:
    """A list element with ',' or an object would be misread upstream: 403, never a 500."""
    with pytest.raises(UnsafeClaim) as caught:
        claim_header_value(value, "X-H")
    assert caught.value.status == 403


@given(st.recursive(st.text() | st.integers() | st.booleans(), lambda inner: st.lists(inner, max_size=4)))
def test_no_control_character_ever_reaches_a_header(value: object) -> None:
    try:
        out = claim_header_value(value, "X-H")
    except UnsafeClaim:
        return
    assert out is None or all(unicodedata.category(c) not in ("Cc", "Zl", "Zp") for c in out)
    assert out is None or out == out.strip()


def test_dotted_nested_and_absent_claims() -> None:
    principal = Principal(
        "alice",
        "jwt",
        claims={"realm_access": {"roles": ["ops", "dev"]}, "https://x.example/tenant": "acme"},
    )
    mapping = (
        ("X-Roles", "realm_access.roles"),
        ("X-Tenant", "https://x.example/tenant"),
        ("X-None", "nope"),
    )
    assert claim_headers(principal, mapping) == [("X-Roles", "ops,dev"), ("X-Tenant", "acme")]


# ---- config ---------------------------------------------------------------------------------------------


def test_a_good_config_parses() -> None:
    assert (
        problems(config({"identity_jwt": True, "claim_headers": {"X-Auth-Request-Groups": "groups"}})) == {}
    )


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "authorization",
        "Cookie",
        "Connection",
        "Transfer-Encoding",
        "X-Forwarded-For",
        "x_forwarded_host",
        "X-Request-Id",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "x-auth-request_scopes",
        "X-Tokengate-Assertion",
        "Bad Name",
        "X-Tenant:",
    ],
)
def test_claim_header_names_that_would_override_the_gateway(name: str) -> None:
    """A claim header may not replace Host, credentials, proxy or the gateway's identity headers."""
    found = problems(config({"claim_headers": {name: "tenant"}}))
    assert f"routes[0].auth.claim_headers.{name}" in found, found


def test_two_spellings_of_one_header() -> None:
    found = problems(config({"claim_headers": {"X-Tenant": "tenant", "x_tenant": "org"}}))
    assert "routes[0].auth.claim_headers.x_tenant" in found


def test_identity_jwt_requires_a_signing_key() -> None:
    cfg = config({"identity_jwt": True})
    del cfg["server"]["signing_key"]
    assert problems(cfg) == {"routes[0].auth.identity_jwt": "requires server.signing_key"}


def test_identity_features_on_a_public_route() -> None:
    cfg = config()
    cfg["routes"][0]["auth"] = {"mode": "public", "identity_jwt": True, "claim_headers": {"X-T": "t"}}
    assert set(problems(cfg)) == {"routes[0].auth.identity_jwt", "routes[0].auth.claim_headers"}


def test_forward_auth_route_without_public_url_has_no_audience() -> None:
    cfg = config({"identity_jwt": True}, server={"public_url": None})
    del cfg["routes"][0]["upstream"]
    del cfg["server"]["public_url"]
    assert "routes[0].auth.identity_jwt" in problems(cfg)


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        pem(rsa.generate_private_key(65537, 2048)),
        pem(ec.generate_private_key(ec.SECP384R1())),
        json.dumps(ECKey.generate_key("P-256").as_dict(private=False)),
        json.dumps({**ECKey.generate_key("P-256").as_dict(private=True), "x": "AAAA"}),
        "{broken",
    ],
    ids=["text", "rsa", "p384", "public-jwk", "jwk-mismatch", "bad-json"],
)
def test_wrong_signing_keys_are_found_offline(key: str) -> None:
    found = problems(config(server={"signing_key": key}))
    assert list(found) == ["server.signing_key"], found
    assert "PRIVATE" not in found["server.signing_key"]  # never echo the key


def test_a_jwk_signing_key_is_accepted() -> None:
    key = json.dumps(ECKey.generate_key("P-256").as_dict(private=True))
    assert problems(config({"identity_jwt": True}, server={"signing_key": key})) == {}


# ---- the assertion and its cache --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def identity(clock: Clock, **server: Any) -> Identity:
    cfg = parse_config(yaml.safe_dump(config({"identity_jwt": True}, server=server)), env={})
    return Identity(cfg, clock)


ALICE = Principal("alice", "jwt", claims={"groups": ["admins"]}, email="alice@example.com")


def test_assertion_claims_and_audience_is_the_upstream_origin() -> None:
    ident = identity(Clock())
    assert ident.jwks is not None
    ((name, token),) = ident.headers("api", ALICE)
    assert name == "X-Tokengate-Assertion"
    claims = jwt.decode(
        token, KeySet.import_key_set(cast("KeySetSerialization", ident.jwks)), algorithms=["ES256"]
    ).claims
    assert claims["aud"] == "http://orders:8080"
    assert claims["iss"] == "https://gw.example.com"
    assert (claims["sub"], claims["email"], claims["groups"]) == ("alice", "alice@example.com", ["admins"])
    assert claims["exp"] - claims["iat"] == 300


def test_the_cache_keeps_at_least_four_minutes_of_validity() -> None:
    clock = Clock()
    ident = identity(clock)
    first = ident.headers("api", ALICE)
    clock.now += 60
    assert ident.headers("api", ALICE) == first  # 4 minutes left: reused
    clock.now += 1
    assert ident.headers("api", ALICE) != first  # less than 4 minutes left: signed again


def test_new_groups_are_a_new_assertion_at_once() -> None:
    """A group removed at the provider must not linger in a cached assertion."""
    ident = identity(Clock())
    before = ident.headers("api", ALICE)
    demoted = Principal("alice", "jwt", claims={"groups": []}, email="alice@example.com")
    after = ident.headers("api", demoted)
    assert before != after
    assert ident.jwks is not None
    claims = jwt.decode(after[0][1], KeySet.import_key_set(cast("KeySetSerialization", ident.jwks))).claims
    assert claims["groups"] == []


def test_previous_keys_are_published_but_never_sign() -> None:
    old = pem(ec.generate_private_key(ec.SECP256R1()))
    ident = identity(Clock(), previous_signing_keys=[old])
    assert ident.jwks is not None
    assert ident.signer is not None
    kids = [k["kid"] for k in ident.jwks["keys"]]
    assert len(kids) == 2
    assert kids[0] == ident.signer.kid
    token = ident.headers("api", ALICE)[0][1]
    assert (
        jwt.decode(token, KeySet.import_key_set(cast("KeySetSerialization", ident.jwks))).header["kid"]
        == ident.signer.kid
    )
    assert all("d" not in k for k in ident.jwks["keys"])
