"""The configuration rules behind DESIGN §7's trust rules: every bearer route names its audience, a
memory store serves one process only, and plain HTTP goes to a provider only on loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from gateway.config.rules import ConfigParts
from gateway.config.schema import ProviderEndpoints
from gateway.errors import ConfigProblem

#: ``auth.audience: "*"``: the operator accepts tokens for any audience (and is warned at start).
ANY_AUDIENCE = "*"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is loopback: 127.0.0.0/8, ::1 (or IPv4-mapped 127/8), ``localhost``.
    Names are not resolved (validation does no I/O): ``localhost`` is the one name trusted, as in
    RFC 8252 §8.3's advice to prefer literal addresses."""
    try:
        host = urlsplit(url).hostname  # lower-cased, IPv6 brackets and userinfo removed
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_plain_http_off_loopback(url: str) -> bool:
    """An ``http://`` URL whose host is not loopback: refused for providers unless allowed."""
    return url[:7].lower() == "http://" and not is_loopback_url(url)


def trust_problems(parts: ConfigParts) -> list[ConfigProblem]:
    """The §7 rules, each problem with its YAML path."""
    problems: list[ConfigProblem] = []
    for i, route in parts.routes:
        auth = route.auth
        if auth.uses_bearer and auth.audience is None:
            # With auth.resource both must be in aud (config/resource.py): usually the same value.
            hint = f"; with auth.resource usually {auth.resource!r} (aud holds both)" if auth.resource else ""
            problems.append(
                ConfigProblem(
                    f"routes[{i}].auth.audience",
                    f"required on {auth.mode} routes: the value the provider puts in this API's tokens' "
                    "`aud`, so that ID tokens, refresh tokens and other APIs' tokens are refused; "
                    f'"{ANY_AUDIENCE}" accepts any audience{hint}',
                )
            )
    server, sessions = parts.server, parts.sessions
    if server is not None and sessions is not None and server.workers > 1 and sessions.store == "memory":
        problems.append(
            ConfigProblem(
                "sessions.store",
                f"memory keeps sessions inside one process, but server.workers is {server.workers}: "
                "use redis, or one worker",
            )
        )
    for name, provider in parts.providers.items():
        if provider.allow_insecure_http:
            continue
        urls = [("issuer", provider.issuer)] + [
            (f"endpoints.{field}", url)
            for field in ProviderEndpoints.model_fields
            if (url := getattr(provider.endpoints, field)) is not None
        ]
        for where, url in urls:
            if is_plain_http_off_loopback(url):
                problems.append(
                    ConfigProblem(
                        f"providers.{name}.{where}",
                        "plain http:// off loopback sends tokens and client secrets in clear text: use "
                        f"https://, or set providers.{name}.allow_insecure_http: true for a network you "
                        "trust",
                    )
                )
    return problems
