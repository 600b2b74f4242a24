"""Route-rule bypass (DESIGN §1, §7): no spelling of a path reaches a protected route's upstream
through a public route, and the upstream receives exactly the path that was matched and authorised.

Spellings that Tomcat, Jetty, Spring, IIS or Node resolve differently from the gateway (`;` path
parameters, encoded dots and percents, overlong UTF-8, control bytes) are refused with 400 before routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import PathRejected
from gateway.routing import normalise_path
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.clients import Client
from tests.support.configs import CLIENT_ID, CLIENT_SECRET
from tests.support.oidc_fakes import FakeProvider, running
from tests.support.paths import RAW_PATHS, UNDER_PUBLIC, lenient_upstream_view, under
from tests.support.rawhttp import raw_request
from tests.support.upstream import Upstream


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider()) as provider:
        yield provider


def config(fake: FakeProvider, upstream: Upstream, **server: Any) -> dict[str, Any]:
    admin = {
        "name": "admin",
        "match": {"path_prefix": "/admin"},
        "upstream": upstream.url,
        "auth": {"mode": "bearer", "provider": "main", "validate": "jwt", "audience": "api"},
    }
    return {
        "server": server,
        "providers": {
            "main": {"issuer": fake.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        },
        "routes": [
            admin,
            public_route("public", "/public", upstream.url),
            public_route("site", "/", upstream.url),
        ],
    }


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream) -> Client:
    return await make_gateway(config(fake, upstream))


# (attack, target): each one is resolved to /admin/x by some upstream framework.
REFUSED = [
    ("Tomcat/Spring path parameter after ..", "/public/..;/admin/x"),
    ("Tomcat/Jetty path parameter in the protected segment", "/admin;jsessionid=1/x"),
    ("path parameter on the prefix itself", "/admin;/x"),
    ("encoded semicolon", "/public/..%3B/admin/x"),
    ("encoded semicolon, lower case", "/admin%3bx/x"),
    ("double-encoded dots", "/public/%252e%252e/admin/x"),
    ("double-encoded slash", "/public/..%252Fadmin/x"),
    ("encoded dot segment", "/public/%2e%2e/admin/x"),
    ("encoded dot segment, upper case", "/public/%2E%2E/admin/x"),
    ("half-encoded dot segment", "/public/.%2e/admin/x"),
    ("half-encoded dot segment, other half", "/public/%2e./admin/x"),
    ("encoded single dot", "/public/%2e/../admin/x"),
    ("overlong UTF-8 dots (IIS)", "/public/%c0%ae%c0%ae/admin/x"),
    ("overlong UTF-8 slash", "/public/..%c0%afadmin/x"),
    ("fullwidth dots and solidus (NFKC)", "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin/x"),
    ("encoded slash", "/public/..%2Fadmin/x"),
    ("encoded backslash", "/public/..%5Cadmin/x"),
    ("raw backslash (IIS reads it as /)", "/public/..\\admin/x"),
    ("encoded NUL", "/admin%00/x"),
    ("encoded CR LF", "/public%0d%0a/admin/x"),
    ("encoded C1 control (NEL)", "/public%C2%85/admin/x"),
    ("raw fragment", "/public#/../admin/x"),
    ("encoded '?' that cuts the path short (Apache mod_rewrite, CVE-2024-38474)", "/admin%3F/x"),
    ("encoded '#' that cuts the path short", "/admin%23.css"),
    ("encoded '?' after a case variant", "/ADMIN%3Fx"),
    ("raw tab", "/public/\t/../admin/x"),
]


@pytest.mark.parametrize(("attack", "target"), REFUSED, ids=[a for a, _ in REFUSED])
async def test_spelling_refused_before_routing(
    gateway: Client,
    upstream: Upstream,
    attack: str,
    target: str,
) -> None:
    """A path spelling that an upstream framework resolves to /admin/x, sent through a public prefix."""
    answer = await raw_request(gateway.port, target)
    assert answer.status == 400, attack
    assert upstream.seen == []


@pytest.mark.parametrize(
    "raw",
    [b"/public/\xc3\xa9/../../admin/x", b"/public/\x01/../../admin/x", b"/admin\x7f/x", b"/\xff/admin/x"],
    ids=["raw-utf8", "raw-control", "raw-del", "raw-high-byte"],
)
async def test_raw_non_ascii_and_control_bytes_refused(
    gateway: Client,
    upstream: Upstream,
    raw: bytes,
) -> None:
    """Raw control or non-ASCII bytes in the request target, which servers decode each their own way."""
    answer = await raw_request(gateway.port, raw)
    assert answer.status == 400
    assert upstream.seen == []


# (attack, target): resolved by the gateway itself to a path under /admin, so the protected route decides.
RESOLVED_TO_ADMIN = [
    ("dot-dot out of the public prefix", "/public/../admin/x"),
    ("repeated slashes", "//admin//x"),
    ("single-dot segments", "/./admin/./x"),
    ("encoded unreserved letter", "/%61dmin/x"),
    ("dot-dot at the end", "/admin/x/y/.."),
]


@pytest.mark.parametrize(("attack", "target"), RESOLVED_TO_ADMIN, ids=[a for a, _ in RESOLVED_TO_ADMIN])
async def test_resolved_spelling_is_judged_by_the_protected_route(
    gateway: Client,
    upstream: Upstream,
    attack: str,
    target: str,
) -> None:
    """A spelling the gateway can resolve lands on the protected route, which demands a token."""
    answer = await raw_request(gateway.port, target)
    assert answer.status == 401, attack
    assert upstream.seen == []


async def test_query_cannot_change_the_route(
    gateway: Client,
    upstream: Upstream,
) -> None:
    """`/public?/../admin/x`: a query that looks like a path is a query; the public upstream gets /public."""
    answer = await raw_request(gateway.port, "/public?/../admin/x")
    assert answer.status == 200
    assert upstream.last.path == "/public"
    assert upstream.last.query == "/../admin/x"


async def test_encoded_question_mark_kept_when_it_changes_nothing(
    gateway: Client,
    upstream: Upstream,
) -> None:
    """Control: `%3F` that no prefix could be cut to (`/wiki/What%3F`) is forwarded as spelled."""
    answer = await raw_request(gateway.port, "/public/What%3F/x%23y")
    assert answer.status == 200
    assert upstream.last.raw_path == "/public/What%3F/x%23y"


async def test_case_variant_of_protected_prefix_refused_by_default(
    gateway: Client,
    upstream: Upstream,
) -> None:
    """`/ADMIN/x` with case-sensitive matching: an IIS-style upstream behind `/` would serve /admin/x."""
    for target in ("/ADMIN/x", "/Admin", "/public/../aDmIn/x", "/PUBLIC/x"):
        answer = await raw_request(gateway.port, target)
        assert answer.status == 400, target
    assert upstream.seen == []
    # Upper case that no prefix could mistake is kept as spelled.
    assert (await raw_request(gateway.port, "/Other/X")).status == 200
    assert upstream.last.path == "/Other/X"
    assert (await raw_request(gateway.port, "/public/ADMIN")).status == 200
    assert upstream.last.path == "/public/ADMIN"


async def test_case_insensitive_paths_send_case_variants_to_the_protected_route(
    make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream
) -> None:
    """With server.case_insensitive_paths (IIS upstreams), `/ADMIN/x` must hit the protected route."""
    client = await make_gateway(config(fake, upstream, case_insensitive_paths=True))
    for target in ("/ADMIN/x", "/Admin", "/aDmIn/x"):
        answer = await raw_request(client.port, target)
        assert answer.status == 401, target
    assert upstream.seen == []
    assert (await raw_request(client.port, "/PUBLIC/x")).status == 200
    assert upstream.last.path == "/PUBLIC/x"  # the spelling is kept; only the matching ignores case


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
# Raw "?" and "#" end the path (their own tests above); here they stand for their encoded forms.
@given(target=st.one_of(RAW_PATHS, UNDER_PUBLIC).map(lambda t: t.replace("?", "%3F").replace("#", "%23")))
async def test_upstream_gets_exactly_the_authorised_path(
    gateway: Client,
    upstream: Upstream,
    target: str,
) -> None:
    """Generated spellings: the upstream receives exactly the normal form that chose a public route, and
    even the most lenient upstream reads no protected path in it."""
    before = len(upstream.seen)
    answer = await raw_request(gateway.port, target.encode("utf-8"))
    try:
        expected = normalise_path(target)
    except PathRejected:
        assert answer.status == 400, target
        assert len(upstream.seen) == before
        return
    if under(expected, "/admin"):
        assert answer.status == 401, target
        assert len(upstream.seen) == before
        return
    if answer.status == 400:  # refused as ambiguous, never forwarded: a case variant of another
        # route's prefix, or a path an encoded "?" would cut short to another route
        first = expected.split("%3F")[0].split("%23")[0].split("/")[1]
        assert first.lower() in ("admin", "public")
        assert first not in ("admin", "public") or "%" in expected
        assert len(upstream.seen) == before
        return
    assert answer.status == 200, target
    assert len(upstream.seen) == before + 1
    assert upstream.last.raw_path == expected
    assert not under(lenient_upstream_view(expected), "/admin"), (target, expected)
