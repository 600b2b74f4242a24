"""Properties of path normalisation and route choice (DESIGN §1, §7), over generated paths and tables.

Example counts come from the hypothesis profile (tests/conftest.py): 300 in `make test`,
20000 with HYPOTHESIS_PROFILE=fuzz.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import MethodNotAllowed, NotFound, PathRejected
from gateway.routing import RouteSpec, RouteTable, normalise_path, prefix_segments
from tests.support.paths import RAW_PATHS, UNDER_PUBLIC, lenient_upstream_view, under

PROTECTED = ("/admin", "/api/private", "/Secure")
TABLE_SPECS = [
    RouteSpec("public", "/public"),
    RouteSpec("public", "/api"),
    RouteSpec("public", "/"),
    RouteSpec("protected", "/admin", methods=["GET", "POST"]),
    RouteSpec("protected", "/api/private"),
    RouteSpec("protected", "/Secure"),
]
SENSITIVE = RouteTable(TABLE_SPECS)
INSENSITIVE = RouteTable(TABLE_SPECS, case_insensitive=True)


def accepted(raw: str) -> str | None:
    try:
        return normalise_path(raw)
    except PathRejected:
        return None


@given(RAW_PATHS)
def test_normaliser_is_idempotent(raw: str) -> None:
    """Whatever the normaliser accepts, its output is already normal: the upstream sees what was matched."""
    path = accepted(raw)
    if path is None:
        return
    assert normalise_path(path) == path
    assert path.startswith("/")
    assert "//" not in path
    assert ";" not in path
    for escape in ("%2E", "%25", "%3B", "%2F", "%5C", "%00"):
        assert escape not in path.upper()
    assert all(0x20 < ord(c) < 0x7F for c in path)
    assert all(seg not in (".", "..") for seg in path.split("/"))


@given(UNDER_PUBLIC)
def test_no_public_spelling_reaches_a_protected_upstream_path(raw: str) -> None:
    """A path built under /public that the gateway sends to a public route is, even to the most lenient
    upstream, never a path under a protected prefix (in any letter case)."""
    for table in (SENSITIVE, INSENSITIVE):
        path = accepted(raw)
        if path is None:
            return
        try:
            found = table.resolve(None, path, "GET")
        except (PathRejected, NotFound, MethodNotAllowed):
            continue
        if found.value == "public":
            view = lenient_upstream_view(path)
            assert not any(under(view, p.lower()) for p in PROTECTED), (raw, path, view)


@given(RAW_PATHS, st.sampled_from(["GET", "HEAD", "OPTIONS", "DELETE", "POST"]))
def test_protected_prefixes_never_fall_through(raw: str, method: str) -> None:
    """Any path and method: if a protected prefix covers the normalised path, a public route never answers."""
    path = accepted(raw)
    if path is None:
        return
    for table, fold in ((SENSITIVE, False), (INSENSITIVE, True)):
        try:
            found = table.resolve(None, path, method)
        except (PathRejected, NotFound, MethodNotAllowed):
            continue
        probe = path.lower() if fold else path
        if any(under(probe, p.lower() if fold else p) for p in PROTECTED):
            assert found.value == "protected", (path, method)
        if found.value == "public":
            assert not any(under(path.lower(), p.lower()) for p in PROTECTED), (path, method)


_PREFIXES = st.sampled_from(["/", "/a", "/a/b", "/b", "/a/b/c", "/A"])
_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE"])
_ROUTES = st.lists(
    st.tuples(
        _PREFIXES,
        st.none() | st.sampled_from(["h.example", "H.example"]),
        st.none() | st.lists(_METHODS, min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=8,
)
_LOOKUP_PATHS = st.lists(st.sampled_from(["a", "b", "c", "A", "B", "x"]), max_size=4).map(
    lambda segs: "/" + "/".join(segs)
)


Routes = list[tuple[str, str | None, list[str] | None]]


def locate(routes: Routes, host: str | None, path: str) -> tuple[str | None, int, list[int]] | None:
    """Brute force over every route (DESIGN §1, §7): the host's routes if one covers the path, else the
    hostless ones; of those, the routes of the longest covering prefix."""

    def covering(want_host: str | None) -> list[int]:
        return [
            i
            for i, (prefix, h, _) in enumerate(routes)
            if (h.lower() if h else None) == want_host and under(path, prefix)
        ]

    table = host if host is not None and covering(host) else None
    candidates = covering(table)
    if not candidates:
        return None
    longest = max(len(prefix_segments(routes[i][0])) for i in candidates)
    return table, longest, [i for i in candidates if len(prefix_segments(routes[i][0])) == longest]


def oracle(routes: Routes, host: str | None, path: str, method: str) -> tuple[str, object]:
    """The answer by brute force: a route, 404, or 405 with the longest prefix's methods."""
    found = locate(routes, host, path)
    if found is None:
        return ("404", None)
    best = found[2]
    for i in best:
        methods = routes[i][2]
        if methods is None or method in methods:
            return ("route", i)
    return ("405", tuple(sorted({m for i in best for m in routes[i][2] or ()})))


def folded(routes: Routes) -> Routes:
    return [(p.lower(), h, m) for p, h, m in routes]


def where(found: tuple[str | None, int, list[int]] | None) -> tuple[str | None, int] | None:
    return None if found is None else found[:2]


@given(
    _ROUTES,
    st.none() | st.sampled_from(["h.example", "other.example"]),
    _LOOKUP_PATHS,
    _METHODS,
    st.booleans(),
)
def test_route_choice_matches_brute_force(
    routes: Routes, host: str | None, path: str, method: str, case_insensitive: bool
) -> None:
    """The trie gives the brute-force answer: longest prefix only, 405 rather than a shorter prefix;
    case-sensitively, a path that case-folding would send elsewhere is refused."""
    table = RouteTable(
        (RouteSpec(i, p, h, m) for i, (p, h, m) in enumerate(routes)), case_insensitive=case_insensitive
    )
    if case_insensitive:
        expected = oracle(folded(routes), host, path.lower(), method)
    else:
        expected = oracle(routes, host, path, method)
    try:
        got: tuple[str, object] = ("route", table.resolve(host, path, method).value)
    except NotFound:
        got = ("404", None)
    except MethodNotAllowed as exc:
        got = ("405", exc.allowed)
    except PathRejected:
        assert not case_insensitive
        assert where(locate(folded(routes), host, path.lower())) != where(locate(routes, host, path))
        return
    assert got == expected
    if not case_insensitive:  # accepted: case-folding would have chosen the same place
        assert where(locate(folded(routes), host, path.lower())) == where(locate(routes, host, path))
