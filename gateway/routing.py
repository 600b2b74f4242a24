"""Path normalisation and route choice (DESIGN §1, §7): pure functions, no I/O and no web framework.

Normalisation happens before matching, and the upstream receives exactly the path that was matched, so
no spelling of a path can reach a route other than the one its normal form selects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from gateway.config.resource import is_reserved_path
from gateway.errors import MethodNotAllowed, NotFound, PathRejected

T = TypeVar("T")

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3986 §3.3 pchar plus "/" and "%", minus ";" (DESIGN §7): anything else must arrive
# percent-encoded, and raw control or non-ASCII bytes never match.
_ALLOWED = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,=:@/%]*$")
# Escapes refused outright (DESIGN §1, §7; Spring's StrictHttpFirewall): an encoded "/" or "\" and NUL
# mean different things to the gateway and to upstream frameworks; "%3B" is a Tomcat/Jetty path
# parameter once decoded; "%25" is double encoding (a second decoder finds new escapes); "%2E" is an
# encoded dot, the spelling of dot segments that only some servers resolve.
_FORBIDDEN_ESCAPES = {
    "2F": "an encoded '/'",
    "5C": "an encoded '\\'",
    "00": "an encoded NUL",
    "3B": "an encoded ';'",
    "25": "an encoded '%' (double encoding)",
    "2E": "an encoded '.'",
}


def normalise_path(raw: str) -> str:
    """Normalise a request path (no query) per RFC 3986 §6.2.2, or raise PathRejected (400).

    Unreserved characters are percent-decoded, other escapes upper-cased, repeated slashes folded and
    raw dot segments resolved (§5.2.4). Refused rather than guessed at: ``;`` and the escapes above, a
    raw ``\\``, control and non-ASCII bytes (raw, or encoded as controls, invalid or overlong UTF-8, or
    characters that compatibility-normalise to ASCII such as U+FF0F, the fullwidth solidus), invalid
    escapes and ``..`` above the root. The result is its own normal form (idempotent).
    """
    if not raw.startswith("/"):
        raise PathRejected(detail="path must start with '/'")
    if not _ALLOWED.match(raw):
        if ";" in raw:
            raise PathRejected(detail="';' (a path parameter) in the path")
        raise PathRejected(detail="path holds a character that must be percent-encoded")
    if "%" in raw:
        raw = _decode_unreserved(raw)
    segments: list[str] = []
    parts = raw.split("/")
    for part in parts[1:-1]:
        if part in ("", "."):
            continue
        if part == "..":
            if not segments:
                raise PathRejected(detail="'..' above the root")
            segments.pop()
        else:
            segments.append(part)
    last = parts[-1]
    trailing = False
    if last in (".", ".."):
        if last == "..":
            if not segments:
                raise PathRejected(detail="'..' above the root")
            segments.pop()
        trailing = True
    elif last:
        segments.append(last)
    else:
        trailing = True
    path = "/" + "/".join(segments)
    if trailing and segments:
        path += "/"
    return path


def _decode_unreserved(raw: str) -> str:
    out: list[str] = []
    high = bytearray()  # a run of escapes >= %80: one UTF-8 sequence or more, checked as a whole
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch != "%":
            if high:
                out.append(_check_utf8(high))
                high.clear()
            out.append(ch)
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise PathRejected(detail="invalid percent-encoding")
        pair = pair.upper()
        i += 3
        code = int(pair, 16)
        if code >= 0x80:
            high.append(code)
            continue
        if high:
            out.append(_check_utf8(high))
            high.clear()
        forbidden = _FORBIDDEN_ESCAPES.get(pair)
        if forbidden is not None:
            raise PathRejected(detail=f"{forbidden} in the path")
        if code < 0x20 or code == 0x7F:
            raise PathRejected(detail="encoded control character in the path")
        out.append(chr(code) if code in _UNRESERVED else "%" + pair)
    if high:
        out.append(_check_utf8(high))
    return "".join(out)


def _check_utf8(data: bytearray) -> str:
    """Encoded non-ASCII must be well-formed UTF-8 (no overlong ``%C0%AE`` dot), hold no control or
    line-separator character, and no character that NFKC maps to ASCII (``%EF%BC%8F`` fullwidth
    solidus; Windows best-fit and NFKC-normalising upstreams read it as ``/``). Kept encoded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRejected(detail="encoded bytes that are not UTF-8 (overlong or invalid)") from None
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise PathRejected(detail="encoded control character in the path")
        if any(ord(c) < 0x80 for c in unicodedata.normalize("NFKC", char)):
            raise PathRejected(detail="encoded character that compatibility-normalises to ASCII")
    return "".join(f"%{b:02X}" for b in data)


OWN_PREFIX = "/oauth2"  # DESIGN §3: the gateway's own endpoints


def is_reserved(path: str) -> bool:
    """A normalised path the gateway answers itself and never proxies: ``/oauth2`` and everything under
    it (DESIGN §3), and the RFC 9728 protected-resource metadata paths (§3.1)."""
    return path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/") or is_reserved_path(path)


def split_host(host_header: str | None) -> str | None:
    """``Example.COM:8443`` -> ``example.com``; ``[::1]:80`` -> ``::1``; port ignored (DESIGN §1)."""
    if not host_header:
        return None
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, _, port = host.rpartition(":")
    if name and port.isdigit():
        return name.rstrip(".")
    return host.rstrip(".")


def prefix_segments(prefix: str) -> tuple[str, ...]:
    """``/api/`` -> ('api',): a trailing slash is insignificant; matching is per whole segment."""
    return tuple(s for s in prefix.split("/") if s)


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    entries: list[_Entry[T]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    methods: frozenset[str] | None
    depth: int


@dataclass(frozen=True, slots=True)
class RouteSpec(Generic[T]):
    """What the table needs to know of a route; ``value`` is whatever the caller wants back."""

    value: T
    path_prefix: str
    host: str | None = None
    methods: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    value: T
    depth: int  # how many leading path segments the prefix covered (for strip_prefix)


_Trees = dict[str | None, _Node[T]]
_Found = tuple[str | None, _Node[T]] | None  # (table, node of the longest prefix with routes)


class RouteTable(Generic[T]):
    """Host, then longest segment-aware prefix, then method (DESIGN §1, §7). A per-host segment trie:
    lookups cost one dict access per path segment, whatever the number of routes.

    - Only the routes of the longest matching prefix are candidates: a method none of them takes is
      405, never a route with a shorter prefix (no method fall-through).
    - A host's own routes take the request when one of their prefixes covers the path (whatever the
      method: a miss there is 405 too, not the hostless routes); otherwise the hostless routes do.
    - Prefixes compare case-sensitively unless ``case_insensitive``. Case-sensitively, a path that a
      case-insensitive comparison would send elsewhere (``/ADMIN/x`` beside ``/admin`` and ``/``) is
      refused (400): an upstream that ignores case would serve the protected resource unprotected.
    """

    def __init__(self, specs: Iterable[RouteSpec[T]], *, case_insensitive: bool = False) -> None:
        self._case_insensitive = case_insensitive
        self._exact: _Trees[T] = {}
        self._folded: _Trees[T] = {}  # prefixes lower-cased: the table itself, or the ambiguity check
        self._upper_prefix = False
        for spec in specs:
            host = spec.host.lower() if spec.host else None
            segments = prefix_segments(spec.path_prefix)
            methods = frozenset(m.upper() for m in spec.methods) if spec.methods else None
            entry = _Entry(spec.value, methods, len(segments))
            _insert(self._folded, host, [seg.lower() for seg in segments], entry)
            if not case_insensitive:
                _insert(self._exact, host, segments, entry)
                self._upper_prefix = self._upper_prefix or spec.path_prefix != spec.path_prefix.lower()

    def resolve(self, host: str | None, path: str, method: str) -> Match[T]:
        """The route for a normalised path; raises NotFound (404), MethodNotAllowed (405, with the
        methods of the longest prefix) or PathRejected (400, a spelling that could choose another
        route: letter case, or an encoded ``?`` / ``#``)."""
        found = self._place(host, path)
        if "%3F" in path or "%23" in path:
            # An upstream that decodes the path and splits it again reads "/admin%3F/x" as "/admin"
            # plus a query (Apache mod_rewrite, CVE-2024-38474): the part before an encoded "?" or "#"
            # must choose the same place as the whole path.
            cut = min(i for i in (path.find("%3F"), path.find("%23")) if i >= 0)
            if _where(self._place(host, path[:cut])) != _where(found):
                raise PathRejected(detail="an encoded '?' or '#' would change the route for some upstreams")
        if found is None:
            raise NotFound()
        entries = found[1].entries
        for entry in entries:
            if entry.methods is None or method in entry.methods:
                return Match(entry.value, entry.depth)
        allowed = sorted({m for entry in entries for m in entry.methods or ()})
        raise MethodNotAllowed(allowed=allowed, detail=f"{method} not in {', '.join(allowed)}")

    def _place(self, host: str | None, path: str) -> _Found[T]:
        segments = path.split("/")[1:]
        if self._case_insensitive:
            return _locate(self._folded, host, [seg.lower() for seg in segments])
        found = _locate(self._exact, host, segments)
        if self._upper_prefix or path != path.lower():
            folded = _locate(self._folded, host, [seg.lower() for seg in segments])
            if _where(folded) != _where(found):
                raise PathRejected(detail="path differs only in letter case from a route prefix")
        return found

    def match(self, host: str | None, path: str, method: str) -> Match[T] | None:
        """``resolve`` for callers that only ask "which route, if any" (None for 400, 404 and 405)."""
        try:
            return self.resolve(host, path, method)
        except (NotFound, MethodNotAllowed, PathRejected):
            return None


def _insert(trees: _Trees[T], host: str | None, segments: Sequence[str], entry: _Entry[T]) -> None:
    node = trees.setdefault(host, _Node())
    for seg in segments:
        node = node.children.setdefault(seg, _Node())
    node.entries.append(entry)


def _locate(trees: _Trees[T], host: str | None, segments: list[str]) -> _Found[T]:
    """(table, node) of the longest prefix with routes: the host's table first, then the hostless one."""
    if host is not None:
        tree = trees.get(host)
        if tree is not None:
            node = _deepest(tree, segments)
            if node is not None:
                return host, node
    default = trees.get(None)
    if default is not None:
        node = _deepest(default, segments)
        if node is not None:
            return None, node
    return None


def _deepest(node: _Node[T], segments: list[str]) -> _Node[T] | None:
    best = node if node.entries else None
    for seg in segments:
        child = node.children.get(seg)
        if child is None:
            break
        node = child
        if node.entries:
            best = node
    return best


def _where(found: _Found[T]) -> tuple[str | None, int] | None:
    return None if found is None else (found[0], found[1].entries[0].depth)


def strip_segments(path: str, depth: int) -> str:
    """Remove the first ``depth`` segments: strip_prefix of /api on /api/x/ -> /x/."""
    if depth == 0:
        return path
    parts = path.split("/")
    rest = parts[depth + 1 :]
    return "/" + "/".join(rest)


# What a browser does to a Location value before resolving it (WHATWG URL §4.4, "basic URL parser"):
# strips leading C0 controls and spaces, removes every tab and newline, and reads "\\" as "/" in http(s)
# URLs. So "/\\evil", "/\t/evil" and "\\/evil" are all "//evil": a host. A value that starts with "/"
# and then neither "/" nor "\\", and holds no control character, stays a path on this origin.
_REDIRECT_LIMIT = 2048
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def _unsafe_redirect(candidate: str) -> bool:
    if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return True
    if "\\" in candidate or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in candidate):
        return True  # C1 controls too: some clients decode the header as Latin-1
    path = candidate.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/")
    if ":" in segments[1]:
        return True  # "/javascript:..." is harmless as a path, but nothing legitimate needs it
    # Dot segments: "/.//evil" and "/a/..//evil" resolve to the path "//evil", which is a host again
    # for anything that re-reads the path as a URL; the gateway's own paths never hold them.
    return any(seg in (".", "..") for seg in segments)


def safe_redirect_path(rd: str | None) -> str:
    """``rd`` only as a path on this origin (DESIGN §3): no scheme, no ``//host``, no ``\\``, no
    control characters and no dot segments, also after one and two percent-decodings; anything else
    becomes ``/``. Spaces and non-ASCII are percent-encoded (UTF-8, as browsers do), so the Location
    header is plain ASCII that every client reads alike."""
    if not rd or len(rd) > _REDIRECT_LIMIT:
        return "/"
    once = unquote(rd)
    for candidate in (rd, once, unquote(once)):
        if _unsafe_redirect(candidate):
            return "/"
    if not rd.isascii() or " " in rd:
        rd = quote(rd, safe=_PRINTABLE_ASCII)
    return rd
