"""Host names in the config (DESIGN §8, several hosts): DNS-name checks, the dot-boundary match of
``cookie_domain`` and ``allowed_redirect_hosts``, and the rule that session routes live on hosts the
session cookie reaches. Pure: no I/O, no web framework."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.errors import ConfigProblem

if TYPE_CHECKING:
    from gateway.config.rules import ConfigParts

# Lower-case LDH labels (RFC 1123 §2.1), at least two of them: a cookie Domain or a redirect host
# is a registered-style name, never an IP address (a cookie on an IP host cannot carry Domain).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_SINGLE = re.compile(rf"^{_LABEL}$")


def is_dns_name(host: str) -> bool:
    """``b.example.com`` yes; ``localhost``, ``127.0.0.1``, ``EXAMPLE.com``, ``a..b``, ``x.`` no."""
    return bool(_DNS_NAME.match(host)) and not host.rsplit(".", 1)[1].isdigit()


def is_host_name(host: str) -> bool:
    """A single-label name (``localhost``) or a DNS name, lower case."""
    return bool(_SINGLE.match(host)) or is_dns_name(host)


def check_cookie_domain(value: str) -> str:
    domain = value.strip().lower().removeprefix(".")  # RFC 6265 §5.2.3: a leading dot is ignored
    if not is_dns_name(domain):
        raise ValueError(f"expected a DNS name such as example.com (no IP, port or scheme), got {value!r}")
    return domain


def check_redirect_host(value: str) -> str:
    host = value.strip().lower()
    name = host[2:] if host.startswith("*.") else host
    if not is_host_name(name):
        raise ValueError(f"expected a host name such as app.example.com or *.example.com, got {value!r}")
    return host


def host_within(host: str, domain: str) -> bool:
    """``domain`` itself or a name under it, on a dot boundary: ``b.example.com`` is within
    ``example.com``; ``badexample.com`` is not (RFC 6265 §5.1.3 domain-match)."""
    return host == domain or host.endswith("." + domain)


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """``host`` equals a pattern, or a ``*.d`` pattern covers a name strictly under ``d``."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def public_host(public_url: str | None) -> str | None:
    return (urlsplit(public_url).hostname or None) if public_url else None


def host_problems(parts: ConfigParts) -> list[ConfigProblem]:
    """Session routes must be on a host that receives the session cookie: public_url's host, or one
    within ``cookie_domain``; and ``cookie_domain`` must cover public_url's host (where the cookie is
    set, by the callback)."""
    sessions, server = parts.sessions, parts.server
    if sessions is None or server is None or server.public_url is None:
        return []
    home = public_host(server.public_url) or ""
    domain = sessions.cookie_domain
    problems: list[ConfigProblem] = []
    if domain is not None and not host_within(home, domain):
        problems.append(
            ConfigProblem(
                "sessions.cookie_domain",
                f"must be server.public_url's host {home!r} or a parent domain of it",
            )
        )
    for i, route in parts.routes:
        host = route.match.host.lower().rstrip(".") if route.match.host else None
        if host is None or not route.auth.uses_session or host == home:
            continue
        if domain is None or not host_within(host, domain):
            where = f"within sessions.cookie_domain {domain!r}" if domain else "(no sessions.cookie_domain)"
            problems.append(
                ConfigProblem(
                    f"routes[{i}].match.host",
                    f"a session route on {host!r} never receives the session cookie: the host is "
                    f"neither server.public_url's host {home!r} nor {where}",
                )
            )
    return problems
