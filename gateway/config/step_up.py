"""Config rules of RFC 9470 step-up (``require.acr``, ``require.max_age``): the shape of an acr value,
whole-second ages, and the rule that a browser's acr / auth_time can only come from an ID token.
Pure: no I/O, no web framework."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from gateway.errors import ConfigProblem

if TYPE_CHECKING:
    from gateway.config.rules import ConfigParts


def check_acr(value: str) -> str:
    # RFC 9470 §3 / OIDC Core §3.1.2.1: acr_values is a space-separated list, sent in a quoted-string.
    if not value or not (value.isascii() and value.isprintable()) or any(c in value for c in ' "\\'):
        raise ValueError(
            f"an acr value is printable ASCII without spaces, quotes or backslashes, got {value!r}"
        )
    return value


def check_max_age(value: timedelta) -> timedelta:
    seconds = value.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError("must be a whole number of seconds, at least 1s (max_age is sent in seconds)")
    return value


def step_up_problems(parts: ConfigParts) -> list[ConfigProblem]:
    """Session routes read acr and auth_time from the login's ID token: they need OpenID Connect."""
    problems: list[ConfigProblem] = []
    for i, route in parts.routes:
        auth = route.auth
        provider = parts.providers.get(auth.provider or "")
        wanted = auth.require.acr or auth.require.max_age is not None
        browser = auth.uses_session
        if wanted and browser and provider is not None and not provider.is_oidc:
            problems.append(
                ConfigProblem(
                    f"routes[{i}].auth.require",
                    f"acr / max_age on a session route need OpenID Connect ('openid' in "
                    f"providers.{auth.provider}.scopes): they are read from the ID token",
                )
            )
    return problems
