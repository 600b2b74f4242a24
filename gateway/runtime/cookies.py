"""The gateway's cookies: their names (session, and one login cookie per attempt) and the attributes
every Set-Cookie of them carries, written in this one place (RFC 6265bis)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

LOGIN_COOKIE_INFIX = "_login_"


class CookieTarget(Protocol):
    """What an answer offers to set and expire cookies (aiohttp's ``web.StreamResponse``)."""

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        domain: str | None = ...,
        max_age: int | str | None = ...,
        path: str = ...,
        secure: bool | None = ...,
        httponly: bool | None = ...,
        samesite: str | None = ...,
    ) -> None: ...

    def del_cookie(
        self,
        name: str,
        *,
        domain: str | None = ...,
        path: str = ...,
        secure: bool | None = ...,
        httponly: bool | None = ...,
        samesite: str | None = ...,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CookieSettings:
    name: str
    secure: bool
    login_prefix: str
    domain: str | None = None  # sessions.cookie_domain: the session cookie's Domain (several hosts)
    names: frozenset[str] = frozenset()  # the cookies never forwarded upstream; built once

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset({self.name}))

    def set(self, response: CookieTarget, value: str, *, max_age: int, name: str | None = None) -> None:
        """Set the session cookie (``name`` None: with ``cookie_domain``) or a login cookie (host-only).
        HttpOnly always; SameSite=Lax so the provider's redirect back (a top-level GET) carries it."""
        response.set_cookie(
            name or self.name,
            value,
            max_age=max_age,
            domain=self.domain if name is None else None,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: CookieTarget, name: str | None = None) -> None:
        """Expire the session cookie (``name`` None) or one login cookie, with the same attributes."""
        response.del_cookie(
            name or self.name,
            domain=self.domain if name is None else None,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
