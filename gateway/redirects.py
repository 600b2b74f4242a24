"""Absolute redirect targets across several hosts (DESIGN §8): which absolute ``rd`` a login may return
to, and the login URL a session route on another host sends its browser to. Pure functions.

Same-origin paths stay with ``routing.safe_redirect_path``; this module only ever says yes to an
absolute URL whose scheme is public_url's and whose host is public_url's or an allowed one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from gateway.config.hosts import host_allowed, is_host_name

_MAX = 2048
# What may follow the authority: a path, query or fragment of visible ASCII only (no "\", which
# browsers read as "/", no spaces, no controls; WHATWG URL parsing strips tabs and newlines, so a
# tab inside "ev\til.com" would join what this check saw as two parts).
_REST = re.compile(r"^[/?#][\x21-\x5b\x5d-\x7e]*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def absolute_redirect(rd: str | None, *, public_url: str, allowed_hosts: Sequence[str]) -> str | None:
    """``rd`` when it is an absolute URL to public_url's host or an allowed host, with public_url's
    scheme and any port; otherwise None (the caller falls back to a same-origin path or ``/``)."""
    if not rd or len(rd) > _MAX:
        return None
    scheme = public_url.split("://", 1)[0].lower()
    head = scheme + "://"
    if rd[: len(head)].lower() != head:
        return None
    rest = rd[len(head) :]
    end = len(rest)
    for sep in "/?#":
        at = rest.find(sep)
        if at != -1:
            end = min(end, at)
    authority, tail = rest[:end], rest[end:]
    host, colon, port = authority.partition(":")
    host = host.lower()
    # The authority is nothing but host[:port]: no userinfo ("@"), no brackets, no escapes, no
    # trailing dot, so no parser can read another host out of it.
    if not is_host_name(host) or (colon and not (_PORT.match(port) and 0 < int(port) < 65536)):
        return None
    if tail and not _REST.match(tail):
        return None
    if tail.startswith("/") and tail[1:2] in ("/", "\\"):
        return None  # "https://a.example.com//evil" is a path, but nothing legitimate needs it
    home = (urlsplit(public_url).hostname or "").lower()
    if host != home and not host_allowed(host, allowed_hosts):
        return None
    return rd


def original_url(public_url: str, host_header: str, path_qs: str, proto: str | None = None) -> str:
    """Where the browser was going, as ``rd``: a path on public_url's own host, an absolute URL (in
    public_url's scheme unless a trusted proxy said otherwise) on any other."""
    home = (urlsplit(public_url).hostname or "").lower()
    host = host_header.strip().lower()
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    if not host or name == home:
        return path_qs
    scheme = proto or public_url.split("://", 1)[0].lower()
    return f"{scheme}://{host}{path_qs}"


def login_location(public_url: str | None, rd: str) -> str:
    """The gateway's login URL for ``rd``: absolute (on public_url) when rd is, so a browser on another
    host logs in where the login cookie and the callback live."""
    base = public_url if public_url and not rd.startswith("/") else ""
    return f"{base}/oauth2/login?rd={quote(rd, safe='')}"
