"""Hypothesis strategies for request paths an attacker writes, and a model of the most lenient upstream
reading of a forwarded path; shared by the routing properties and the functional path property."""

from __future__ import annotations

import posixpath
import unicodedata
from urllib.parse import unquote

from hypothesis import strategies as st

from gateway.routing import prefix_segments

# Pieces an attacker puts together: segments, dots in every spelling, encoded separators, path
# parameters, case variants, double and overlong encodings, fullwidth look-alikes, controls.
_ACCEPTABLE = [
    "admin",
    "ADMIN",
    "Admin",
    "aDmin",
    "public",
    "Public",
    "api",
    "private",
    "x",
    "/",
    "//",
    ".",
    "..",
    "%61",
    "%41",
    "%64min",
    "%7E",
    "~",
    "%20",
    "%C3%A9",
    "-",
    "_",
    "%3F",
    "%23",
    "@",
    ":",
    "!",
    "$",
    "&",
    "'",
    "(",
    ")",
    "*",
    "+",
    ",",
    "=",
    "%2D",
    "%5f",
]
_HOSTILE = [
    ";",
    ";jsessionid=1",
    "%3B",
    "%3b",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "%2F",
    "%2f",
    "%5C",
    "\\",
    "%25",
    "%252e",
    "%252F",
    "%00",
    "%0a",
    "%0D",
    "%7F",
    "%C0%AE",
    "%C0%AF",
    "%EF%BC%8F",
    "%EF%BC%8E",
    "%E2%80%A8",
    "%C2%85",
    "%zz",
    "%",
    "#",
    "?",
    "é",
    "\t",
    "%FF",
    "%C3",
]
_SAFE_PIECES = st.sampled_from(_ACCEPTABLE)
_ANY_PIECES = st.sampled_from(_ACCEPTABLE + _HOSTILE)
# Segment-shaped input too: protected names next to dot segments in every spelling, joined by every
# spelling of a separator, so that "/public/..;/admin"-like sequences come up often.
_NAMES = st.sampled_from(["admin", "ADMIN", "aDmIn", "api", "private", "Secure", "secure", "public", "x", ""])
_DOTS = st.sampled_from(
    [
        ".",
        "..",
        "%2e",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "..;",
        "..;x=1",
        "..%3B",
        "%252e%252e",
        "%C0%AE%C0%AE",
        "%EF%BC%8E%EF%BC%8E",
        "..%00",
        "..%09",
        "..\t",
    ]
)
_SEPARATORS = st.sampled_from(["/", "/", "/", "//", "%2F", "%2f", "\\", "%5C", "%252F", "%EF%BC%8F", ";/"])
_SEGMENT = st.one_of(
    _NAMES, _DOTS, st.tuples(_NAMES, st.sampled_from([";", "%3B", ";jsessionid=1", "%00", "."])).map("".join)
)
_SEGMENTED = st.lists(st.tuples(_SEPARATORS, _SEGMENT), max_size=8).map(
    lambda pairs: "".join(a + b for a, b in pairs)
)
# A third of the paths from acceptable pieces only (so the accepted side is explored), a third from
# anything, a third segment-shaped.
_TAILS = st.one_of(
    st.lists(_SAFE_PIECES, max_size=14).map("".join),
    st.lists(_ANY_PIECES, max_size=14).map("".join),
    _SEGMENTED,
)
# The shape of a traversal: up through dot segments in some spelling, then a protected segment in
# some spelling, then anything.
_CLIMB = st.lists(
    st.tuples(st.sampled_from(["/", "/", "/", "//", "%2F", "\\", "%5C", "%252F"]), _DOTS),
    min_size=1,
    max_size=3,
)
_TARGET = st.tuples(
    st.sampled_from(["/", "/", "//", "%2F", "\\", "%5C", "%252F", "%EF%BC%8F"]),
    st.sampled_from(
        ["admin", "ADMIN", "Admin", "%61dmin", "api/private", "api%2Fprivate", "Secure", "secure"]
    ),
    st.sampled_from(["", "", "/x", ";", "%3B", ";jsessionid=1/x", "%00", ".", "%2e", "/..", "%3F/x"]),
)
_TRAVERSAL = st.tuples(_CLIMB, _TARGET).map(lambda ct: "".join(a + b for a, b in ct[0]) + "".join(ct[1]))
RAW_PATHS = _TAILS.map(lambda tail: "/" + tail)
UNDER_PUBLIC = st.one_of(_TAILS, _TRAVERSAL, _TRAVERSAL).map(lambda tail: "/public/" + tail.lstrip("/"))


def lenient_upstream_view(path: str) -> str:
    """How the most forgiving upstream reads a forwarded path: decoded until nothing changes, `;params`
    dropped (Tomcat), `\\` as `/` (IIS), NFKC (best-fit mappings), case folded, dot segments resolved."""
    seen = None
    while seen != path:
        seen, path = path, unquote(path)
    path = "/".join(seg.split(";", 1)[0] for seg in path.replace("\\", "/").split("/"))
    path = unicodedata.normalize("NFKC", path).lower()
    resolved = posixpath.normpath("/" + path.split("?", 1)[0].split("#", 1)[0])
    return "/" + resolved.lstrip("/")


def under(path: str, prefix: str) -> bool:
    want = prefix_segments(prefix)
    return tuple(s for s in path.split("/") if s)[: len(want)] == want
