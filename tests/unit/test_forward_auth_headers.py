"""The forward-auth header parser (DESIGN §8): the original request from nginx, Traefik/Envoy and
ingress-nginx spellings, and hypothesis hunting for headers that yield an ambiguous or non-normal one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.authn.facts import Original
from gateway.authn.forwarded import original_request
from gateway.errors import BadRequest
from gateway.routing import normalise_path


def parse(pairs: list[tuple[str, str]]) -> tuple[Original, str | None]:
    return original_request(CIMultiDictProxy(CIMultiDict(pairs)))


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (
            [
                ("X-Original-URI", "/a/b?c=1"),
                ("X-Original-Method", "get"),
                ("X-Forwarded-Host", "h.example:8"),
            ],
            (Original("GET", "h.example:8", "/a/b", "c=1"), None),
        ),
        (
            [
                ("X-Forwarded-Uri", "/x"),
                ("X-Forwarded-Method", "POST"),
                ("X-Forwarded-Host", "h.example"),
                ("X-Forwarded-Proto", "https"),
            ],
            (Original("POST", "h.example", "/x", "", "https"), "https"),
        ),
        (
            [("X-Original-URL", "https://h.example/p?q"), ("X-Original-Method", "PUT")],
            (Original("PUT", "h.example", "/p", "q", "https"), "https"),
        ),
        (
            [
                ("X-Original-URL", "http://h.example"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Host", "H.example"),
            ],
            (Original("GET", "h.example", "/", "", "http"), "http"),
        ),
        (
            [
                ("X-Original-URI", "/x"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Host", "h"),
            ],
            (Original("GET", "h", "/x", ""), None),
        ),
    ],
)
def test_spellings(pairs: list[tuple[str, str]], expected: tuple[Original, str | None]) -> None:
    assert parse(pairs) == expected


NAMES = [
    "X-Original-URI",
    "X-Forwarded-Uri",
    "X-Original-URL",
    "X-Original-Method",
    "X-Forwarded-Method",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "/",
            "/a",
            "/a/../b",
            "//a",
            "/a;b",
            "/%2e%2e/a",
            "/a%2Fb",
            "/%7E",
            "/a?b",
            "GET",
            "post",
            "G E T",
            "h.example",
            "a,b",
            "https",
            "http",
            "ftp",
            "https://h.example/a",
            "http://h.example",
            "h://x",
            "",
        ]
    ),
    st.text(alphabet="/.%;?#aA2Fe:,hH ", max_size=12),
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=6))
def test_parser_yields_one_normal_request_or_refuses(pairs: list[tuple[str, str]]) -> None:
    """Ambiguity and path confusion: any header mix gives one request in normal form, or 403 (BadRequest)."""
    try:
        found, proto = parse(pairs)
    except BadRequest:
        return
    names = [n.lower() for n, _ in pairs]
    uri_headers = {"x-original-uri", "x-forwarded-uri", "x-original-url"}
    assert sum(n in uri_headers for n in names) == 1
    assert all(names.count(n) == 1 for n in set(names))
    assert found.method.isalpha()
    assert found.method.isupper()
    assert normalise_path(found.raw_path) == found.raw_path
    assert ";" not in found.raw_path
    assert found.host
    assert "," not in found.host
    assert proto in (None, "http", "https")
