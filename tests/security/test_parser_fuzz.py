"""Fuzzing the request parsers an attacker feeds first (issue 9, defence 3): `Authorization`, the query's
`access_token`, `Cookie` (aiohttp's parsing, the session id, the gateway's cookie stripping) and `rd`.
They never raise anything but the 400 they are meant to, and their outputs keep their promises."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any, Literal

from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.authn.credentials import extract_bearer, header_token
from gateway.authn.session import session_id_from
from gateway.errors import InvalidRequest
from gateway.routing import safe_redirect_path
from gateway.upstream.headers import request_headers_for_upstream, strip_cookies
from tests.security.redirects import model_stays_on_origin

B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
SESSION = "tokengate_session"
LOGIN_PREFIX = SESSION + "_login_"  # lower case: _names_left compares lower-cased names
NAMES = frozenset({SESSION})
RT: Any = SimpleNamespace(cookies=SimpleNamespace(name=SESSION))

# Header values as they can arrive on the wire: any character but CR, LF and NUL (aiohttp's parser
# refuses those), with the characters that matter to these parsers made frequent.
#: Unicode category "Cs" (lone surrogates) cannot be encoded: no HTTP client could send them.
NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_wire_char = st.one_of(
    st.sampled_from([*' \t;=,"\\/+~._-$%', "Bearer", "bearer ", "Basic ", SESSION, LOGIN_PREFIX]),
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=NO_SURROGATES),
)
wire_text = st.lists(_wire_char, max_size=40).map("".join)
cookie_names = st.sampled_from(
    [SESSION, LOGIN_PREFIX + "ab", "__Host-" + SESSION, SESSION.upper(), "x", "$Version", " " + SESSION, ""]
)
cookie_pairs = st.lists(
    st.tuples(st.one_of(cookie_names, wire_text), st.one_of(wire_text, st.just('"quoted"'))), max_size=8
)


def cookie_header(pairs: list[tuple[str, str]], sep: str) -> str:
    return sep.join(f"{k}={v}" for k, v in pairs)


@given(st.lists(st.one_of(wire_text, wire_text.map(lambda t: "Bearer " + t)), max_size=3))
@example(["Bearer  "])
@example(["Bearer a b"])
@example(["Bearer ===="])
@example(["bearer\tabc"])
def test_fuzz_authorization_header(values: list[str]) -> None:
    """Malformed Authorization headers: only 400 invalid_request, and a token returned is an RFC 6750 one."""
    try:
        token = header_token(values)
    except InvalidRequest:
        return
    assert token is None or B64TOKEN.match(token)


@given(
    query=st.lists(
        st.tuples(st.sampled_from(["access_token", "x", "access_token ", "ACCESS_TOKEN"]), wire_text),
        max_size=4,
    ).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv)),
    authorization=st.one_of(st.none(), wire_text.map(lambda t: "Bearer " + t)),
    allow_query=st.booleans(),
)
@example(query="access_token=a&access_token=b", authorization=None, allow_query=True)
@example(query="access_token=%ZZ&x=%", authorization="Bearer abc", allow_query=True)
def test_fuzz_bearer_extraction(query: str, authorization: str | None, allow_query: bool) -> None:
    """Tokens smuggled through the query string: one token at most, or 400; never any other error."""
    headers = CIMultiDict({"Authorization": authorization} if authorization is not None else {})
    request = make_mocked_request("GET", "/api", headers=headers)
    try:
        found = asyncio.run(extract_bearer(request, query, allow_query=allow_query, allow_form=False))
    except InvalidRequest:
        return
    assert found.token is None or B64TOKEN.match(found.token)
    if found.carrier == "query":
        assert allow_query
        assert "access_token=" not in found.query


@given(cookie_pairs, st.sampled_from(["; ", ";", ", ", "&", " ;  "]))
@example([(SESSION, "a"), (SESSION, "b")], "; ")
@example([(SESSION, '"quoted"'), (" " + SESSION, '"quoted"')], "&")
@example([(SESSION, '"' + "x" * 200 + '"')], "; ")
@example([(SESSION, " Bearer")], "; ")
def test_fuzz_cookie_header_and_session_id(pairs: list[tuple[str, str]], sep: str) -> None:
    """Hostile Cookie headers: aiohttp's parsing and the session id lookup never raise; ids stay bounded."""
    header = cookie_header(pairs, sep)
    request = make_mocked_request("GET", "/", headers=CIMultiDict({"Cookie": header}))
    assert isinstance(dict(request.cookies), dict)
    session_id = session_id_from(request, RT)
    assert session_id is None or 0 < len(session_id) <= 128
    if session_id is not None:
        # Never a choice between two sessions: every value given under the name is this one.
        assert re.match(r"^[A-Za-z0-9_-]+$", session_id), (header, session_id)
        # Every value under the name, as the loosest parser splits them (';' and ','); whitespace around
        # a value is no part of it (RFC 6265 §5.2), and a space ends it.
        tokens = [t.strip().partition("=") for t in re.split(r"[;,]", header)]
        given = {
            (value.split() or [""])[0].strip('"') for name, sep, value in tokens if sep and name == SESSION
        }
        assert given == {session_id}, (header, session_id)


def _names_left(header: str | None) -> list[str]:
    """Cookie names as a lenient upstream may read them: letter case and __Host-/__Secure- ignored."""
    if header is None:
        return []
    names = [part.split("=", 1)[0].strip().lower() for part in header.split(";")]
    return [n.removeprefix("__host-").removeprefix("__secure-") for n in names]


@given(cookie_pairs, st.sampled_from(["; ", ";", " ;  "]))
def test_fuzz_strip_cookies_never_forwards_gateway_cookies(pairs: list[tuple[str, str]], sep: str) -> None:
    """Gateway cookies hidden among hostile ones: strip_cookies never raises and none survives."""
    left = strip_cookies(cookie_header(pairs, sep), NAMES, LOGIN_PREFIX)
    for name in _names_left(left):
        assert name not in NAMES, (pairs, left)
        assert not name.startswith(LOGIN_PREFIX), (pairs, left)
    assert left is None or left.strip()


@given(st.lists(cookie_pairs, min_size=1, max_size=3), st.lists(wire_text, max_size=3))
def test_fuzz_upstream_headers_carry_no_gateway_cookie(
    headers_pairs: list[list[tuple[str, str]]], identity_values: list[str]
) -> None:
    """Several Cookie headers plus spoofed identity headers: the upstream copy has neither kind."""
    incoming: CIMultiDict[str] = CIMultiDict()
    for pairs in headers_pairs:
        incoming.add("Cookie", cookie_header(pairs, "; "))
    for i, value in enumerate(identity_values):
        incoming.add(["X-Auth-Request-User", "x_auth_request_email", "X-AUTH-REQUEST-Groups"][i], value)
    out = request_headers_for_upstream(
        CIMultiDictProxy(incoming),
        gateway_cookies=NAMES,
        login_cookie_prefix=LOGIN_PREFIX,
        drop_authorization=True,
    )
    for name, value in out.items():
        assert not name.lower().replace("_", "-").startswith("x-auth-request")
        if name.lower() == "cookie":
            for left in _names_left(value):
                assert left not in NAMES
                assert not left.startswith(LOGIN_PREFIX)


_RD_PIECES = [*"/\\:%.@?#\t\r\n ", "%2F", "%2f", "%5C", "%25", "%09", "%0a", "%00", "//", "/\\", "http:"]
_RD_PIECES += ["javascript:", "evil.example", "\uff0f", "\u2044", "\u2215", "\uff3c", "\u3002", "\u00a0"]
_RD_PIECES += ["\u2028", "\x85", "\x7f"]
_rd_char = st.one_of(st.sampled_from(_RD_PIECES), st.characters(blacklist_categories=NO_SURROGATES))
rd_text = st.lists(_rd_char, max_size=30).map("".join)


@given(st.one_of(rd_text, st.text(), rd_text.map(lambda t: "/" + t)))
@example("/.//evil.example")
@example("/%2e%2e//evil.example")
@example("/%25252F%25252Fevil.example")
def test_fuzz_rd_always_a_same_origin_path(rd: str) -> None:
    """Open redirect via any rd: safe_redirect_path never raises and gives an ASCII path on this origin."""
    out = safe_redirect_path(rd)
    assert model_stays_on_origin(out), (rd, out)
    assert out.startswith("/")
    assert out[1:2] not in ("/", "\\")
    assert all(0x20 < ord(c) < 0x7F for c in out), (rd, out)
    assert safe_redirect_path(out) == out  # a fixed point: stored once, judged alike when read back


_segment = st.text(alphabet="abcXYZ019-._~!$&'()*+,=@", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


_query = st.lists(st.sampled_from(["a", "b", "=", "&", "%20", "%2F", "/", ":", "?", "+"]), max_size=8)


@given(st.lists(_segment, max_size=5), _query.map("".join), st.booleans())
def test_fuzz_rd_keeps_ordinary_paths(segments: list[str], query: str, slash: bool) -> None:
    """The rd filter is not a denial of service: ordinary paths and queries come back unchanged."""
    path = "/" + "/".join(segments) + ("/" if slash and segments else "")
    if segments and ":" in segments[0]:
        return
    rd = path + ("?" + query if query else "")
    assert safe_redirect_path(rd) == rd
