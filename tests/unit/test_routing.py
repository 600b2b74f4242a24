"""Path normalisation, route choice and the rd rule (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import MethodNotAllowed, NotFound, PathRejected
from gateway.routing import (
    RouteSpec,
    RouteTable,
    normalise_path,
    safe_redirect_path,
    split_host,
    strip_segments,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("//private", "/private"),
        ("/a/./b/../c", "/a/c"),
        ("/%7euser", "/~user"),
        ("/%41%42", "/AB"),
        ("/a%20b", "/a%20b"),
        ("/a%3fb", "/a%3Fb"),
        ("/a/b/", "/a/b/"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "/public/..%2Fadmin",
        "/public/..%2fadmin",
        "/a%5Cb",
        "/a\\b",
        "/a%00b",
        "/public/%2e%2e/private",  # encoded dots, %25, ; and %3B: DESIGN §7 (StrictHttpFirewall)
        "/public/%2E%2e/private",
        "/a%2eb",
        "/a%252e",
        "/a;b",
        "/a%3Bb",
        "/a%c0%ae",
        "/a%EF%BC%8F",
        "/a%C2%85",
        "/a%0Ab",
        "/a%zz",
        "/a%4",
        "/..",
        "/a/../..",
        "relative",
        "/a b",
        "/a\x00",
        "/é",
    ],
)
def test_normalise_rejects(raw: str) -> None:
    with pytest.raises(PathRejected):
        normalise_path(raw)


_path_chars = st.sampled_from([*list("ab/.%25eE2fF5cC0~-_"), "%2e", "%2E", "%2F", "%5C", "..", "//", "%41"])


@settings(max_examples=400)
@given(st.lists(_path_chars, max_size=20).map(lambda parts: "/" + "".join(parts)))
def test_normalised_paths_are_canonical(raw: str) -> None:
    try:
        path = normalise_path(raw)
    except PathRejected:
        return
    assert path.startswith("/")
    assert "//" not in path
    assert "/./" not in path + "/"
    assert "/../" not in path + "/"
    assert "%2F" not in path.upper()
    assert "%5C" not in path.upper()
    assert "%2E" not in path.upper()
    assert normalise_path(path) == path  # idempotent: the upstream sees exactly what was matched


TABLE = RouteTable(
    [
        RouteSpec("public", "/public"),
        RouteSpec("private", "/private"),
        RouteSpec("root", "/"),
    ]
)


@settings(max_examples=400)
@given(st.lists(_path_chars, max_size=20).map(lambda parts: "/public/" + "".join(parts)))
def test_no_public_spelling_reaches_a_protected_route(raw: str) -> None:
    """Whatever follows /public/, its normal form is served by the route that form selects: if that
    is 'public', the forwarded path is under /public; it never selects 'private' by trickery."""
    try:
        path = normalise_path(raw)
    except PathRejected:
        return
    found = TABLE.match(None, path, "GET")
    assert found is not None
    if found.value == "public":
        assert path == "/public" or path.startswith("/public/")
    if found.value == "private":
        assert path == "/private" or path.startswith("/private/")


def test_longest_prefix_is_segment_aware() -> None:
    table = RouteTable(
        [
            RouteSpec("root", "/"),
            RouteSpec("api", "/api"),
            RouteSpec("v2", "/api/v2/"),
            RouteSpec("apix", "/apix"),
        ]
    )
    assert table.match(None, "/api", "GET").value == "api"  # type: ignore[union-attr]
    assert table.match(None, "/api/x", "GET").value == "api"  # type: ignore[union-attr]
    assert table.match(None, "/apiary", "GET").value == "root"  # type: ignore[union-attr]
    assert table.match(None, "/apix/1", "GET").value == "apix"  # type: ignore[union-attr]
    assert table.match(None, "/api/v2", "GET").value == "v2"  # type: ignore[union-attr]
    assert table.match(None, "/api/v2/z", "GET").value == "v2"  # type: ignore[union-attr]
    assert table.match(None, "/api/v20", "GET").value == "api"  # type: ignore[union-attr]


def test_methods_and_hosts() -> None:
    table = RouteTable(
        [
            RouteSpec("read", "/api", methods=["GET"]),
            RouteSpec("write", "/api", methods=["POST", "PUT"]),
            RouteSpec("host", "/api", host="Api.Example.com"),
        ]
    )
    assert table.match(None, "/api", "GET").value == "read"  # type: ignore[union-attr]
    assert table.match(None, "/api", "PUT").value == "write"  # type: ignore[union-attr]
    assert table.match(None, "/api", "DELETE") is None
    assert table.match("api.example.com", "/api", "DELETE").value == "host"  # type: ignore[union-attr]
    assert table.match("other.example.com", "/api", "GET").value == "read"  # type: ignore[union-attr]
    assert table.match(None, "/nothing", "GET") is None


def test_many_routes_stay_a_trie_walk() -> None:
    table = RouteTable([RouteSpec(i, f"/svc{i}/v1") for i in range(5000)])
    assert table.match(None, "/svc4321/v1/items", "GET").value == 4321  # type: ignore[union-attr]
    assert table.match(None, "/svc4321/v2", "GET") is None


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("Example.COM:8443", "example.com"),
        ("[::1]:80", "::1"),
        ("example.com.", "example.com"),
        ("example.com", "example.com"),
        (None, None),
        ("", None),
    ],
)
def test_split_host(header: str | None, host: str | None) -> None:
    assert split_host(header) == host


def test_strip_segments() -> None:
    assert strip_segments("/api/x/y", 1) == "/x/y"
    assert strip_segments("/api", 1) == "/"
    assert strip_segments("/api/", 1) == "/"
    assert strip_segments("/a/b/c", 2) == "/c"
    assert strip_segments("/a", 0) == "/a"


@pytest.mark.parametrize(
    "rd",
    [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "http:/evil",
        "/%2F%2Fevil.com",
        "/%5Cevil",
        "/a%0d%0aSet-Cookie:x",
        "evil.com",
        "/\tevil",
        "/%252F%252Fevil.com",
        "",
        None,
        "/x:y@evil",
    ],
)
def test_unsafe_redirects_fall_back_to_root(rd: str | None) -> None:
    assert safe_redirect_path(rd) == "/"


@pytest.mark.parametrize("rd", ["/", "/app?x=1&y=2", "/a/b#frag", "/search?q=a%20b"])
def test_safe_redirects_kept(rd: str) -> None:
    assert safe_redirect_path(rd) == rd


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("/\\:%2F5Cc.aevil@?#\t\r\n")), max_size=24))
def test_redirects_never_leave_the_origin(rd: str) -> None:
    out = safe_redirect_path(rd)
    assert out.startswith("/")
    assert not out.startswith("//")
    assert "\\" not in out
    assert not any(ord(c) < 0x20 for c in out)


def test_method_miss_is_405_with_the_longest_prefix_methods() -> None:
    table = RouteTable(
        [
            RouteSpec("admin-read", "/admin", methods=["GET"]),
            RouteSpec("admin-write", "/admin/", methods=["post"]),
            RouteSpec("root", "/"),
        ]
    )
    with pytest.raises(MethodNotAllowed) as caught:
        table.resolve(None, "/admin/x", "DELETE")
    assert caught.value.allowed == ("GET", "POST")
    assert table.match(None, "/admin/x", "DELETE") is None  # never the shorter "/"
    assert table.resolve(None, "/admin/x", "POST").value == "admin-write"
    assert table.resolve(None, "/adminx", "DELETE").value == "root"


def test_host_table_decides_when_it_covers_the_path() -> None:
    table = RouteTable(
        [
            RouteSpec("host-api", "/api", host="api.example.com", methods=["GET"]),
            RouteSpec("default-root", "/"),
            RouteSpec("default-api", "/api/v2"),
        ]
    )
    with pytest.raises(MethodNotAllowed):
        table.resolve("api.example.com", "/api/x", "PUT")
    # A host's routes win over a longer hostless prefix (host first, DESIGN §1).
    assert table.resolve("api.example.com", "/api/v2/x", "GET").value == "host-api"
    assert table.resolve("api.example.com", "/docs", "PUT").value == "default-root"
    assert table.resolve("www.example.com", "/api/x", "PUT").value == "default-root"
    with pytest.raises(NotFound):
        RouteTable([RouteSpec("a", "/a")]).resolve(None, "/b", "GET")


def test_case_ambiguous_paths_refused_when_case_sensitive() -> None:
    specs = [RouteSpec("admin", "/admin"), RouteSpec("Docs", "/Docs"), RouteSpec("root", "/")]
    table = RouteTable(specs)
    for path in ("/ADMIN/x", "/Admin", "/docs/a", "/DOCS"):
        with pytest.raises(PathRejected):
            table.resolve(None, path, "GET")
    assert table.resolve(None, "/admin/X", "GET").value == "admin"
    assert table.resolve(None, "/Docs/a", "GET").value == "Docs"
    assert table.resolve(None, "/Other/%C3%A9", "GET").value == "root"
    folded = RouteTable(specs, case_insensitive=True)
    assert folded.resolve(None, "/ADMIN/x", "GET").value == "admin"
    assert folded.resolve(None, "/docs/a", "GET").value == "Docs"
    assert folded.resolve(None, "/Other", "GET").value == "root"


def test_encoded_query_or_fragment_mark_must_not_change_the_route() -> None:
    table = RouteTable([RouteSpec("admin", "/admin"), RouteSpec("root", "/")])
    for path in ("/admin%3F/x", "/admin%23", "/admin%3Fa%23b"):
        with pytest.raises(PathRejected):
            table.resolve(None, path, "GET")
    assert table.resolve(None, "/admin/a%3F", "GET").value == "admin"
    assert table.resolve(None, "/docs%3F/admin", "GET").value == "root"
