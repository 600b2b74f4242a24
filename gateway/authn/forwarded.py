"""The original request a forward-auth proxy describes in its headers (DESIGN §8): nginx ``auth_request``
recipes, Traefik ``forwardAuth`` and ingress-nginx ``auth-url`` spellings, each believed only when it is
one unambiguous value, and only a path already in normal form."""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

from gateway.authn.facts import Original
from gateway.errors import BadRequest, PathRejected
from gateway.routing import normalise_path

# nginx (auth_request recipes), Traefik (forwardAuth) and ingress-nginx (auth-url) spellings.
_URI_HEADERS = ("X-Original-URI", "X-Forwarded-Uri", "X-Original-URL")
_METHOD_HEADERS = ("X-Original-Method", "X-Forwarded-Method")
_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


class MalformedOriginal(BadRequest):
    message = "the forward-auth headers do not describe exactly one original request"


def _one(headers: CIMultiDictProxy[str], name: str) -> str | None:
    values = headers.getall(name, ())
    if len(values) > 1:
        raise MalformedOriginal(detail=f"{name} given {len(values)} times")
    return values[0] if values else None


def original_request(headers: CIMultiDictProxy[str]) -> tuple[Original, str | None]:
    """The original request (and its scheme, when the proxy says) from forward-auth headers.

    Exactly one URI header, one method (both spellings must agree), one host: a client header that
    the proxy forgot to overwrite can never be picked instead of the proxy's own."""
    uris = {name: value for name in _URI_HEADERS if (value := _one(headers, name)) is not None}
    if len(uris) != 1:
        raise MalformedOriginal(detail=f"URI headers present: {sorted(uris) or 'none'}")
    methods = {value for name in _METHOD_HEADERS if (value := _one(headers, name)) is not None}
    if len(methods) != 1 or not _METHOD.match(next(iter(methods))):
        raise MalformedOriginal(detail="original method missing, invalid or given twice differently")
    method = methods.pop().upper()
    host = _one(headers, "X-Forwarded-Host")
    proto = _one(headers, "X-Forwarded-Proto")
    ((name, uri),) = uris.items()
    if name == "X-Original-URL":  # ingress-nginx: "$scheme://$http_host$request_uri"
        scheme, sep, rest = uri.partition("://")
        end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
        authority, uri = rest[:end], rest[end:] or "/"
        if not sep or scheme not in ("http", "https") or not authority:
            raise MalformedOriginal(detail="X-Original-URL is not an absolute http(s) URL")
        other_host = host is not None and host.lower() != authority.lower()
        if other_host or (proto is not None and proto != scheme):
            raise MalformedOriginal(detail="X-Original-URL disagrees with X-Forwarded-Host/-Proto")
        host, proto = authority, scheme
    if not host or "," in host:
        raise MalformedOriginal(detail="X-Forwarded-Host missing or a list")
    if proto is not None and proto not in ("http", "https"):
        raise MalformedOriginal(detail="X-Forwarded-Proto is neither http nor https")
    raw_path, _, query = uri.partition("?")
    _check_canonical(raw_path)
    return Original(method, host, raw_path, query, proto), proto


def _check_canonical(raw_path: str) -> None:
    """Behind a forward-auth proxy the upstream receives the client's raw URI, not the gateway's
    normalised path: only a path already in normal form is judged, so no spelling ("//", "..",
    "%2F", ";" path parameters) can mean one route to the gateway and another to the upstream."""
    lowered = raw_path.lower()
    if ";" in raw_path or "%3b" in lowered or "%25" in lowered:
        raise PathRejected(detail="';', '%3B' or '%25' in a forward-auth original path")
    if normalise_path(raw_path) != raw_path:
        raise PathRejected(detail="forward-auth original path is not in normal form")
