"""Path normalisation and route choice (DESIGN §1): pure functions, no I/O and no web framework.

Normalisation happens before matching, and the upstream receives exactly the path that was matched, so
no spelling of a path can reach a route other than the one its normal form selects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from gateway.errors import PathRejected

T = TypeVar("T")

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3986 §3.3 pchar plus "/" and "%": anything else must arrive percent-encoded.
_ALLOWED = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
# Encoded separators and NUL: their meaning differs between the gateway and upstream frameworks.
_FORBIDDEN_ESCAPES = frozenset({"2F", "5C", "00"})


def normalise_path(raw: str) -> str:
    """Normalise a request path (no query) per RFC 3986 §6.2.2, or raise PathRejected (400).

    Unreserved characters are percent-decoded, other escapes upper-cased, repeated slashes folded and
    dot segments resolved (§5.2.4). Encoded ``/`` ``\\`` and NUL, a raw ``\\``, control characters,
    invalid escapes and ``..`` above the root are rejected rather than guessed at.
    """
    if not raw.startswith("/"):
        raise PathRejected(detail="path must start with '/'")
    if not _ALLOWED.match(raw):
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
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise PathRejected(detail="invalid percent-encoding")
        pair = pair.upper()
        if pair in _FORBIDDEN_ESCAPES:
            raise PathRejected(detail="encoded '/', '\\' or NUL in the path")
        code = int(pair, 16)
        if code < 0x20 or code == 0x7F:
            raise PathRejected(detail="encoded control character in the path")
        out.append(chr(code) if code in _UNRESERVED else "%" + pair)
        i += 3
    return "".join(out)


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


class RouteTable(Generic[T]):
    """Host, then longest segment-aware prefix, then method. A per-host segment trie: lookups cost
    one dict access per path segment, whatever the number of routes."""

    def __init__(self, specs: Iterable[RouteSpec[T]]) -> None:
        self._hosts: dict[str | None, _Node[T]] = {}
        for spec in specs:
            host = spec.host.lower() if spec.host else None
            node = self._hosts.setdefault(host, _Node())
            segments = prefix_segments(spec.path_prefix)
            for seg in segments:
                node = node.children.setdefault(seg, _Node())
            methods = frozenset(m.upper() for m in spec.methods) if spec.methods else None
            node.entries.append(_Entry(spec.value, methods, len(segments)))

    def match(self, host: str | None, path: str, method: str) -> Match[T] | None:
        """The route for a normalised path, or None (404)."""
        segments = path.split("/")[1:]
        if host is not None:
            tree = self._hosts.get(host)
            if tree is not None:
                found = self._walk(tree, segments, method)
                if found is not None:
                    return found
        default = self._hosts.get(None)
        return self._walk(default, segments, method) if default is not None else None

    @staticmethod
    def _walk(node: _Node[T], segments: list[str], method: str) -> Match[T] | None:
        best: _Entry[T] | None = None
        for entry in node.entries:
            if entry.methods is None or method in entry.methods:
                best = entry
                break
        for seg in segments:
            child = node.children.get(seg)
            if child is None:
                break
            node = child
            for entry in node.entries:
                if entry.methods is None or method in entry.methods:
                    best = entry
                    break
        return Match(best.value, best.depth) if best is not None else None


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
