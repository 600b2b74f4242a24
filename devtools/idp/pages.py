"""The browserless side of the provider's flows: PKCE pairs, client_secret_basic, a cookie-keeping loopback
client session, and the parser of its devInteractions and logout pages (RFC 7636, RFC 6749 section 2.3.1)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote_plus, urlsplit

import aiohttp


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def basic_auth(client_id: str, client_secret: str) -> str:
    """RFC 6749 section 2.3.1 client_secret_basic header (form-encoded id and secret, then base64)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def loopback_session() -> aiohttp.ClientSession:
    """A client session whose cookie jar keeps cookies set by 127.0.0.1 (aiohttp drops them by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


# ---- the provider's HTML pages --------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


class PageParser(HTMLParser):
    """Finds the first form of a devInteractions / logout page, its inputs, and a 'logout' button."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: Form | None = None
        self.has_logout_button = False
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form" and self.form is None:
            self.form = Form(action=attr.get("action", ""), method=attr.get("method", "get").lower())
            self._in_form = True
        elif tag == "input" and self._in_form and self.form is not None and attr.get("name"):
            self.form.names.add(attr["name"])
            if attr.get("type", "text") == "hidden":
                self.form.fields[attr["name"]] = attr.get("value", "")
        elif tag == "button" and attr.get("name") == "logout":
            self.has_logout_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def error_text(resp: aiohttp.ClientResponse) -> str:
    return f"HTTP {resp.status} from {resp.method} {resp.url}: {(await resp.text())[:500]}"
