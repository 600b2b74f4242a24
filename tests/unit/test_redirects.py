"""Absolute ``rd`` across several hosts (DESIGN §8): which URLs a login may return to, host patterns on a
dot boundary, and the login URL of a session route on another host. Pure functions; hypothesis tries
to find an rd that leads off the allowed hosts."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.config.hosts import host_allowed, host_within
from gateway.redirects import absolute_redirect, login_location, original_url

PUBLIC = "https://login.example.test"
ALLOWED = ("app.example.test", "*.apps.example.test")


def check(rd: str | None) -> str | None:
    return absolute_redirect(rd, public_url=PUBLIC, allowed_hosts=ALLOWED)


@pytest.mark.parametrize(
    "rd",
    [
        "https://app.example.test/",
        "https://app.example.test",
        "https://APP.example.test:8443/a/b?c=d&e=f#frag",
        "https://x.apps.example.test/deep/path",
        "https://a.b.apps.example.test:1/",
        "https://login.example.test/home",  # public_url's own host is always allowed
        "HTTPS://app.example.test/",
    ],
)
def test_allowed_absolute_targets(rd: str) -> None:
    assert check(rd) == rd


@pytest.mark.parametrize(
    "rd",
    [
        "http://app.example.test/",  # another scheme than public_url's
        "https://evil.test/",
        "https://apps.example.test/",  # "*.apps.example.test" does not cover the parent itself
        "https://evilapps.example.test/",  # no dot boundary
        "https://app.example.test.evil.test/",
        "https://app.example.test@evil.test/",  # userinfo
        "https://evil.test#@app.example.test/",
        "https://evil.test?@app.example.test/",
        "https://evil.test\\@app.example.test/",
        "https://app.example.test\\evil.test/",
        "https://app.example.test:443\\@evil.test/",
        "https://app.example.test./",  # trailing dot
        "https://app.example.test:99999/",
        "https://app.example.test:/",
        "https://app.example.test:x/",
        "https://[::1]/",
        "https://127.0.0.1/",
        "https://app%2eexample.test/",
        "https://app.example.test/\tpath",
        "https://ev\til.test/",
        "https://app.example.test/\npath",
        "https://app.example.test//evil.test/",
        "https://app.example.test/\\evil.test",
        "https://app.exämple.test/",
        "//app.example.test/",
        "https:app.example.test/",
        "https:/app.example.test/",
        "javascript:alert(1)//https://app.example.test/",
        "",
        None,
        "https://app.example.test/" + "a" * 2100,
    ],
)
def test_refused_absolute_targets(rd: str | None) -> None:
    """Open redirect: every spelling that leaves the allowed hosts (or could, in some parser) is refused."""
    assert check(rd) is None


def test_plain_http_public_url_allows_http_only() -> None:
    assert absolute_redirect(
        "http://b.example.test:8080/x", public_url="http://a.example.test", allowed_hosts=["*.example.test"]
    )
    assert not absolute_redirect(
        "https://b.example.test/x", public_url="http://a.example.test", allowed_hosts=["*.example.test"]
    )


def test_no_allowed_hosts_means_public_url_host_only() -> None:
    assert check("https://login.example.test/x") is not None
    assert absolute_redirect("https://app.example.test/", public_url=PUBLIC, allowed_hosts=()) is None


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("badexample.com", ["*.example.com"], False),
        ("a.example.com", ["example.com"], False),
        ("example.com", ["example.com"], True),
        (".example.com", ["*.example.com"], False),  # an empty label is no name under it
    ],
)
def test_host_patterns_on_a_dot_boundary(host: str, patterns: list[str], expected: bool) -> None:
    assert host_allowed(host, patterns) is expected


def test_cookie_domain_match() -> None:
    assert host_within("b.example.com", "example.com")
    assert host_within("example.com", "example.com")
    assert not host_within("badexample.com", "example.com")
    assert not host_within("example.com.evil", "example.com")


def test_original_url_and_login_location() -> None:
    assert original_url(PUBLIC, "login.example.test:443", "/a?b=1") == "/a?b=1"
    assert original_url(PUBLIC, "b.example.test:8443", "/a?b=1") == "https://b.example.test:8443/a?b=1"
    assert original_url(PUBLIC, "B.example.test", "/", proto="http") == "http://b.example.test/"
    assert login_location(PUBLIC, "/a?b=1&c") == "/oauth2/login?rd=%2Fa%3Fb%3D1%26c"
    assert login_location(PUBLIC, "https://b.example.test/x") == (
        "https://login.example.test/oauth2/login?rd=https%3A%2F%2Fb.example.test%2Fx"
    )


# ---- hypothesis: no rd leads off the allowed hosts -------------------------------------------------------

PIECES = [
    "https://",
    "http://",
    "//",
    "/",
    "\\",
    "@",
    ":",
    "#",
    "?",
    ".",
    "%2e",
    "%40",
    "%2f",
    "\t",
    " ",
    "\n",
    "app.example.test",
    "x.apps.example.test",
    "apps.example.test",
    "evil.test",
    "login.example.test",
    "example.test",
    "443",
    "8080",
    "[",
    "]",
    "a",
    "é",
    "..",
    ";",
]


def hosts_seen(url: str) -> set[str]:
    """The host as two different parsers read the URL (RFC 3986 urllib, and yarl), tabs and newlines
    removed first as WHATWG browsers do."""
    cleaned = url.replace("\t", "").replace("\n", "").replace("\r", "")
    seen = {(urlsplit(cleaned).hostname or "").lower()}
    try:
        seen.add((URL(cleaned).host or "").lower())
    except ValueError:
        seen.add("<unparseable>")
    return seen


def on_allowed_host(host: str) -> bool:
    return host == "login.example.test" or host_allowed(host, ALLOWED)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map("".join))
def test_random_rd_never_leaves_the_allowed_hosts(rd: str) -> None:
    """Open redirect, fuzzed: whatever the rd, an accepted one is on an allowed host for every parser."""
    result = check(rd)
    if result is not None:
        assert result == rd
        assert result.lower().startswith("https://")
        assert all(on_allowed_host(h) for h in hosts_seen(result)), hosts_seen(result)


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_arbitrary_text_rd_never_leaves_the_allowed_hosts(tail: str) -> None:
    for rd in (tail, "https://" + tail, "https://app.example.test" + tail):
        result = check(rd)
        if result is not None:
            assert all(on_allowed_host(h) for h in hosts_seen(result)), (rd, hosts_seen(result))
