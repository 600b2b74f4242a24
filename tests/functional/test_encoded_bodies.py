"""Request bodies with a Content-Encoding, behind the production listener: forwarded byte for byte
(never inflated and still labelled gzip, which no upstream can read), and never searched for a token the
gateway cannot see (RFC 9110 §8.4; RFC 6750 §2.2 form tokens)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.functional.conftest import Serve
from tests.support.configs import bearer_route, gateway, provider, public_route
from tests.support.oidc_fakes import FakeProvider, running
from tests.support.upstream import Upstream

PLAIN = b"name=alice&note=" + b"x" * 2000
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider()) as provider_:
        yield provider_


async def test_a_gzip_body_reaches_the_upstream_as_it_was_sent(serve: Serve, upstream: Upstream) -> None:
    port = await serve(gateway([public_route("all", "/", upstream.url)], {}))
    packed = gzip.compress(PLAIN)
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        answer = await http.post(
            f"http://127.0.0.1:{port}/upload",
            data=packed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )
        assert answer.status == 200
    (seen,) = upstream.seen
    assert seen.header("Content-Encoding") == "gzip"
    assert seen.header("Content-Length") == str(len(packed))  # the compressed bytes, not the inflated ones
    assert seen.body == PLAIN  # the test upstream's own server inflates what it got: one layer, intact


@pytest.mark.parametrize(
    ("allow_form", "codings"),
    [
        (True, ["gzip"]),
        (False, ["gzip"]),
        (True, ["identity", "gzip"]),  # a second header line (RFC 9110 §5.3: one list)
        (True, ["identity, GZIP"]),
    ],
)
async def test_a_compressed_form_is_refused_where_a_form_token_would_be_looked_for(
    serve: Serve, upstream: Upstream, fake: FakeProvider, allow_form: bool, codings: list[str]
) -> None:
    route = bearer_route("api", "/api", upstream, audience="api", allow_form_token=allow_form)
    port = await serve(gateway([route], {"main": provider(fake.issuer)}))
    hidden = gzip.compress(b"access_token=" + b"t" * 40 + b"&a=1")
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        answer = await http.post(
            f"http://127.0.0.1:{port}/api/items",
            data=hidden,
            headers=[*(("Content-Encoding", c) for c in codings), ("Content-Type", FORM)],
        )
        assert answer.status == 400
        assert (await answer.json())["error"] == "invalid_request"
    assert upstream.seen == []
