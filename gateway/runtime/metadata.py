"""RFC 9728 Protected Resource Metadata documents, compiled once per runtime for the bearer routes with
``auth.resource`` (served at ``/.well-known/oauth-protected-resource/<resource path>`` by web)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config.resource import metadata_path
from gateway.config.schema import RouteConfig
from gateway.routing import split_host


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """One resource's metadata, serialised once per runtime."""

    resource: str
    host: str  # the resource's host, lower-case: picks a document when two hosts share a path
    body: bytes
    etag: str


def build_document(routes: Sequence[RouteConfig], issuer: str) -> dict[str, Any]:
    """RFC 9728 §2 members for the routes that publish one resource (usually one route; several when
    methods are split across routes with the same resource): scopes and carriers are their union."""
    resource = routes[0].auth.resource
    scopes: list[str] = []
    methods = ["header"]  # RFC 6750 §2.1, always accepted
    dpop_required = False
    for route in routes:
        auth = route.auth
        wanted = list(auth.scopes)
        for values in (auth.scopes_by_method or {}).values():
            wanted += values
        scopes += [s for s in dict.fromkeys(wanted) if s not in scopes]  # in order, each once
        if auth.allow_form_token and "body" not in methods:
            methods.append("body")  # RFC 6750 §2.2
        if auth.allow_query_token and "query" not in methods:
            methods.append("query")  # RFC 6750 §2.3
        # RFC 9728 §2 / RFC 9449 §5.3: set only when the route refuses plain bearer tokens. `auth.dpop`
        # comes with the DPoP work; until then the attribute is absent and the member is never set.
        dpop_required = dpop_required or getattr(auth, "dpop", None) == "required"
    document: dict[str, Any] = {"resource": resource, "authorization_servers": [issuer]}
    if scopes:
        document["scopes_supported"] = scopes
    document["bearer_methods_supported"] = methods
    if dpop_required:
        document["dpop_bound_access_tokens_required"] = True
    return document


def documents(
    routes: Iterable[RouteConfig], issuers: dict[str, str]
) -> dict[str, tuple[MetadataDocument, ...]]:
    """Metadata path -> the documents published there (one per host), for a validated config.
    ``issuers``: provider name -> issuer identifier."""
    grouped: dict[tuple[str, str], list[RouteConfig]] = {}
    for route in routes:
        resource = route.auth.resource
        if resource is None or not route.auth.uses_bearer:
            continue
        grouped.setdefault((metadata_path(resource), resource), []).append(route)
    out: dict[str, list[MetadataDocument]] = {}
    for (path, resource), members in grouped.items():
        provider = members[0].auth.provider
        if provider is None or provider not in issuers:
            continue  # config validation refuses this; never publish a document without its issuer
        body = json.dumps(build_document(members, issuers[provider]), separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        host = (urlsplit(resource).hostname or "").lower()
        out.setdefault(path, []).append(MetadataDocument(resource, host, body, etag))
    return {path: tuple(docs) for path, docs in out.items()}


def choose_document(
    candidates: Sequence[MetadataDocument], host_header: str | None
) -> MetadataDocument | None:
    """One document per path is the common case; several (one per host) are told apart by Host."""
    if len(candidates) == 1:
        return candidates[0]
    host = split_host(host_header)
    matching = [doc for doc in candidates if doc.host == host]
    return matching[0] if len(matching) == 1 else None
