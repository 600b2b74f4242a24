"""``routes[].auth.resource``: the resource identifier of RFC 9728 (Protected Resource Metadata) and
RFC 8707 (resource indicators): its form, which routes may carry it, and how it relates to ``audience``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.config.trust import ANY_AUDIENCE, is_loopback_url
from gateway.errors import ConfigProblem

if TYPE_CHECKING:
    from gateway.config.rules import ConfigParts

#: RFC 9728 §3: the well-known suffix inserted between the host and the path of a resource identifier.
WELL_KNOWN_PREFIX = "/.well-known/oauth-protected-resource"


def check_resource_url(value: str) -> str:
    """RFC 9728 §1.2 / RFC 8707 §2: an absolute https URL without fragment (and, here, without query
    or userinfo, so the metadata URL of §3.1 is unambiguous); plain http only on loopback (tests)."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"expected an absolute https:// URL, got {value!r}") from None
    del port
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"expected an absolute https:// URL (RFC 9728 §1.2), got {value!r}")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError("must be https:// (plain http:// only on loopback)")
    if "#" in value:
        raise ValueError("must not have a fragment (RFC 8707 §2)")
    if parts.query or "?" in value:
        raise ValueError("must not have a query (RFC 9728 §3.1: the metadata URL is built from the path)")
    if "@" in parts.netloc:
        raise ValueError("must not carry userinfo")
    if any(c.isspace() for c in value) or "%" in parts.path or "\\" in value:
        raise ValueError("must be a plain URL: no whitespace, percent-encoding or backslash")
    segments = parts.path.split("/")[1:]
    if any(seg in (".", "..") for seg in segments) or "//" in parts.path:
        raise ValueError("its path must be normalised (no '.', '..' or '//')")
    return value


def metadata_path(resource: str) -> str:
    """The path of the resource's metadata (RFC 9728 §3.1): the well-known prefix, then the resource's
    path without a trailing slash (``https://h/mcp`` -> ``/.well-known/oauth-protected-resource/mcp``)."""
    path = urlsplit(resource).path.rstrip("/")
    return WELL_KNOWN_PREFIX + path


def metadata_url(resource: str) -> str:
    """The absolute URL of the metadata document, on the resource's own origin (RFC 9728 §3.1)."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{metadata_path(resource)}"


def is_reserved_path(path: str) -> bool:
    """The well-known metadata paths are answered by the gateway, never proxied."""
    return path == WELL_KNOWN_PREFIX or path.startswith(WELL_KNOWN_PREFIX + "/")


def resource_problems(parts: ConfigParts) -> list[ConfigProblem]:
    """The rules of ``auth.resource``, each problem with its YAML path."""
    problems: list[ConfigProblem] = []
    owners: dict[tuple[str, str], tuple[int, tuple[str, str | None]]] = {}
    for i, route in parts.routes:
        at = f"routes[{i}]"
        if is_reserved_path(route.match.path_prefix.rstrip("/") or "/"):
            problems.append(
                ConfigProblem(
                    f"{at}.match.path_prefix",
                    f"{WELL_KNOWN_PREFIX} is reserved for the gateway's RFC 9728 metadata: "
                    "set auth.resource on the route instead",
                )
            )
        auth = route.auth
        resource = auth.resource
        if resource is None:
            continue
        try:
            check_resource_url(resource)
        except ValueError as exc:
            problems.append(ConfigProblem(f"{at}.auth.resource", str(exc)))
            continue
        if not auth.uses_bearer:
            problems.append(
                ConfigProblem(
                    f"{at}.auth.resource",
                    f"applies to bearer and bearer_or_session routes only, not to mode {auth.mode!r}",
                )
            )
            continue
        if auth.audience == ANY_AUDIENCE:
            problems.append(
                ConfigProblem(
                    f"{at}.auth.audience",
                    f'"{ANY_AUDIENCE}" contradicts auth.resource, whose tokens must carry the resource in '
                    f"`aud` (RFC 8707): set audience to {resource!r}, or to a further value `aud` must hold",
                )
            )
        parsed = urlsplit(resource)
        key = (f"{parsed.hostname}:{parsed.port or ''}", metadata_path(resource))
        owner = (resource, auth.provider)
        if key in owners and owners[key][1] != owner:
            first = owners[key][0]
            problems.append(
                ConfigProblem(
                    f"{at}.auth.resource",
                    f"routes[{first}] publishes {owners[key][1][0]!r} with provider "
                    f"{owners[key][1][1]!r} at the same metadata URL: one URL, one resource and provider",
                )
            )
        owners.setdefault(key, (i, owner))
    return problems
