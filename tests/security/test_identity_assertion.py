"""Attack class: forged or smuggled identity beyond X-Auth-Request-* (DESIGN §7, §8): spoofed
X-Tokengate-Assertion and claim headers from clients, and hostile claim values from a provider.

A loopback fake JWKS (tests/support/oidc_fakes.py) signs the claims no honest provider mints (CR/LF,
NUL, commas inside group names, objects); a real upstream verifies each assertion it receives with the
key set fetched from /oauth2/jwks.json, using the code of docs/identity-assertion.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet

from gateway.app import create_app
from gateway.config import parse_config
from gateway.logs import ACCESS_LOGGER
from tests.support.assertion import documented_example, new_signing_pem
from tests.support.bearer import ready
from tests.support.clients import Client
from tests.support.configs import bearer_route, issuer_config
from tests.support.logs import access_lines
from tests.support.oidc_fakes import Clock, FakeProvider, claims_for, mint, public_jwk, running, signing_key
from tests.support.upstream import Upstream

RSA = signing_key("RSA")
SIGNING_PEM = new_signing_pem()
CLAIM_HEADERS = {"X-Tenant": "tenant", "X-Auth-Request-Groups": "groups", "X-Roles": "realm_access.roles"}
ASSERTION = "X-Tokengate-Assertion"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(RSA)])) as provider:
        yield provider


def config(
    fake: FakeProvider, upstream: Upstream, *, signing_key: str | None = SIGNING_PEM
) -> dict[str, Any]:
    identity = {"claim_headers": CLAIM_HEADERS, "identity_jwt": signing_key is not None}
    cfg = issuer_config(
        fake.issuer,
        [
            {
                "name": "pub",
                "match": {"path_prefix": "/pub"},
                "upstream": upstream.url,
                "auth": {"mode": "public"},
            },
            bearer_route("api", "/api", upstream, audience="api", **identity),
            bearer_route("plain", "/plain", upstream, audience="api"),
            {
                "name": "verdict-only",
                "match": {"path_prefix": "/fa"},
                "auth": {"mode": "bearer", "provider": "main", "audience": "api", **identity},
            },
        ],
    )
    cfg["server"].update(public_url="https://gw.example.com", trusted_proxies=["127.0.0.1/32"])
    if signing_key is not None:
        cfg["server"]["signing_key"] = signing_key
    return cfg


@pytest.fixture
async def gateway(aiohttp_client: Any, fake: FakeProvider, upstream: Upstream) -> Client:
    app = create_app(parse_config(yaml.safe_dump(config(fake, upstream)), env={}))
    return await ready(await aiohttp_client(app))


def token(fake: FakeProvider, **claims: Any) -> str:
    return mint(RSA, claims_for(fake.issuer, Clock(), **claims))


async def published_keys(gateway: Client) -> KeySet:
    resp = await gateway.get("/oauth2/jwks.json")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    return KeySet.import_key_set(await resp.json(content_type=None))


async def verifying(gateway: Client, upstream: Upstream) -> None:
    """The upstream verifies like the documented example, with the keys fetched from the gateway."""
    example = documented_example()
    keys = await published_keys(gateway)
    upstream.verifier = lambda a: example["verify"](a, keys, "https://gw.example.com", upstream.url)


SPOOFS = [
    (ASSERTION, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
    ("x_tokengate_assertion", "forged"),
    ("X-TOKENGATE-ASSERTION", "forged"),
    ("X-Tenant", "victim-tenant"),
    ("x_tenant", "victim-tenant"),
    ("X-ROLES", "root"),
    ("X-Auth-Request-Groups", "admins"),
]


async def test_a_real_upstream_verifies_the_assertion_with_the_published_keys(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
) -> None:
    await verifying(gateway, upstream)
    resp = await gateway.get(
        "/api/x", headers={"Authorization": f"Bearer {token(fake, groups=['admins', 'staff'])}"}
    )
    assert resp.status == 200, await resp.text()
    (claims,) = upstream.verified
    assert isinstance(claims, dict), claims
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["admins", "staff"]
    assert claims["aud"] == upstream.url
    assert claims["exp"] - claims["iat"] == 300
    assert upstream.last.header("X-Auth-Request-Groups") == "admins,staff"


@pytest.mark.parametrize("path", ["/pub/x", "/plain/x", "/api/x"])
async def test_spoofed_assertion_and_claim_headers_never_reach_the_upstream(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
    path: str,
) -> None:
    """A client-sent X-Tokengate-Assertion or claim header (any spelling) is removed on every route."""
    await verifying(gateway, upstream)
    headers = [("Authorization", f"Bearer {token(fake)}"), *SPOOFS]  # the token has none of these claims
    resp = await gateway.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    seen = {name.lower().replace("_", "-") for name, _ in upstream.last.headers}
    for name in ("x-tenant", "x-roles", "x-auth-request-groups"):
        assert name not in seen, upstream.last.headers
    assertions = upstream.last.all(ASSERTION) + upstream.last.all("x_tokengate_assertion")
    if path == "/api/x":
        assert len(assertions) == 1
        assert all(isinstance(c, dict) for c in upstream.verified)
    else:
        assert assertions == []


async def test_an_assertion_signed_by_another_key_fails_the_upstreams_check(
    gateway: Client,
) -> None:
    """An attacker's own ES256 assertion (right claims, wrong key) is not the gateway's."""
    keys = await published_keys(gateway)
    forged = jwt.encode(
        {"alg": "ES256", "kid": keys.keys[0].kid},
        {"iss": "https://gw.example.com", "aud": "http://x", "sub": "admin", "exp": 9_999_999_999},
        ECKey.generate_key("P-256"),
    )
    with pytest.raises(BadSignatureError):
        documented_example()["verify"](forged, keys, "https://gw.example.com", "http://x")


async def test_cr_lf_and_nul_in_claims_cannot_split_or_add_headers(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
) -> None:
    """A provider-side claim with CR/LF or NUL never injects a header line at the upstream."""
    hostile = token(
        fake,
        tenant="acme\r\nX-Admin: true",
        groups=["staff\x00", "ops\nX-Evil: 1"],
        realm_access={"roles": ["a\x7fb"]},
    )
    resp = await gateway.get("/api/x", headers={"Authorization": f"Bearer {hostile}"})
    assert resp.status == 200, await resp.text()
    last = upstream.last
    assert last.all("X-Tenant") == ["acmeX-Admin: true"]
    assert last.all("X-Auth-Request-Groups") == ["staff,opsX-Evil: 1"]
    assert last.all("X-Roles") == ["ab"]
    assert last.header("X-Admin") is None
    assert last.header("X-Evil") is None


@pytest.mark.parametrize(
    "claims",
    [{"groups": ["staff,admins"]}, {"tenant": {"id": "acme"}}, {"realm_access": {"roles": [["x"]]}}],
    ids=["comma-in-group", "object", "nested-list"],
)
async def test_claims_no_header_can_carry_are_refused_not_mangled(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
    claims: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A group named "staff,admins" must not read as membership of admins upstream: 403, never 500."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    resp = await gateway.get("/api/x", headers={"Authorization": f"Bearer {token(fake, **claims)}"})
    assert resp.status == 403, await resp.text()
    assert (await resp.json())["error"] == "access_denied"
    assert upstream.seen == []
    (line,) = [entry for entry in access_lines(caplog) if entry["path"] == "/api/x"]
    assert (line["decision"], line["reasons"]) == ("deny", ["unsafe_claim_header"])


async def test_absent_claims_send_no_header(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
) -> None:
    resp = await gateway.get("/api/x", headers={"Authorization": f"Bearer {token(fake, tenant=None)}"})
    assert resp.status == 200
    assert [n for n, _ in upstream.last.headers if n in CLAIM_HEADERS] == []


async def test_forward_auth_answers_carry_claim_headers_and_the_assertion(
    gateway: Client,
    upstream: Upstream,
    fake: FakeProvider,
) -> None:
    """aud: the route's upstream origin, or public_url's origin on a verdict-only route."""
    keys = await published_keys(gateway)
    verify = documented_example()["verify"]
    auth = f"Bearer {token(fake, tenant='acme', groups=['staff'])}"
    for uri, audience in (("/fa/orders", "https://gw.example.com"), ("/api/orders", upstream.url)):
        resp = await gateway.get(
            "/oauth2/auth",
            headers={
                "X-Original-URI": uri,
                "X-Original-Method": "GET",
                "X-Forwarded-Host": "gw.example.com",
                "Authorization": auth,
                ASSERTION: "forged",
                "X-Tenant": "victim",
            },
        )
        assert resp.status == 200, await resp.text()
        assert resp.headers.getall("X-Tenant") == ["acme"]
        assert resp.headers["X-Auth-Request-Groups"] == "staff"
        claims = verify(resp.headers[ASSERTION], keys, "https://gw.example.com", audience)
        assert claims["sub"] == "alice"


async def test_forward_auth_refuses_an_unsafe_claim_with_403(
    gateway: Client,
    fake: FakeProvider,
) -> None:
    """forward-auth answers only 200/401/403: an unsafe claim is 403 there too, never a 500."""
    resp = await gateway.get(
        "/oauth2/auth",
        headers={
            "X-Original-URI": "/fa/x",
            "X-Original-Method": "GET",
            "X-Forwarded-Host": "gw.example.com",
            "Authorization": f"Bearer {token(fake, groups=['a,b'])}",
        },
    )
    assert resp.status == 403
    assert ASSERTION not in resp.headers


async def test_no_signing_key_no_key_set(
    aiohttp_client: Any,
    fake: FakeProvider,
    upstream: Upstream,
) -> None:
    app = create_app(parse_config(yaml.safe_dump(config(fake, upstream, signing_key=None)), env={}))
    client = await aiohttp_client(app)
    resp = await client.get("/oauth2/jwks.json")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
