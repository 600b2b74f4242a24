"""Where a bearer token may come from (RFC 6750 §2): the Authorization header, and only where a route
opts in, the form body (§2.2) or the ``access_token`` query parameter (§2.3). Never two at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from gateway.authn.facts import Connection
from gateway.errors import InvalidRequest

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_FORM = "application/x-www-form-urlencoded"
FORM_PEEK_LIMIT = 64 * 1024
FORM_READ_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Credential:
    """A bearer token and the request parts to forward once it is removed from them."""

    token: str | None
    query: str
    body: bytes | None = None
    carrier: str = "header"


def header_token(values: list[str]) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when the header is absent or another scheme."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(detail="more than one Authorization header")
    scheme, _, rest = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or not _B64TOKEN.match(token):
        raise InvalidRequest(detail="malformed bearer token")
    return token


def _pop_token(pairs: list[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    found = [v for k, v in pairs if k == "access_token"]
    if len(found) > 1:
        raise InvalidRequest(detail="access_token given more than once")
    rest = [(k, v) for k, v in pairs if k != "access_token"]
    return (found[0] if found else None), rest


def _checked(token: str) -> str:
    if not token or not _B64TOKEN.match(token):
        raise InvalidRequest(detail="malformed bearer token")
    return token


def has_query_token(query: str) -> bool:
    """Does the query carry an ``access_token`` parameter, in any spelling parse_qsl decodes
    (``access%5Ftoken=``)? The cheap substring test first: the hot path pays nothing else."""
    if "access_token=" in query:
        return True
    if "%" not in query and "+" not in query:
        return False
    return any(name == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True))


async def extract_bearer(
    request: Connection, query: str, *, allow_query: bool, allow_form: bool
) -> Credential:
    """Find the one bearer token of a request, or none. Misplaced tokens are 400 invalid_request."""
    token = header_token(request.headers.getall("Authorization", []))
    carrier = "header"
    if has_query_token(query):
        if not allow_query:
            raise InvalidRequest("tokens are not accepted in the query string")
        from_query, rest = _pop_token(parse_qsl(query, keep_blank_values=True))
        if from_query is not None:
            if token is not None:
                raise InvalidRequest(detail="token in both the header and the query")
            token, carrier = _checked(from_query), "query"
            query = urlencode(rest)
    body: bytes | None = None
    if token is None and request.method in ("POST", "PUT", "PATCH") and request.content_type == _FORM:
        length = request.content_length
        limit = FORM_READ_LIMIT if allow_form else FORM_PEEK_LIMIT
        if length is not None and length <= limit:
            codings = ",".join(request.headers.getall("Content-Encoding", ())).lower().split(",")
            if any(coding.strip() not in ("", "identity") for coding in codings):  # every line, every item
                # The gateway forwards request bodies as they came (no decompression), so it cannot see
                # a token inside a compressed form; browsers never compress forms (RFC 9110 §8.4).
                raise InvalidRequest("a form body with a Content-Encoding cannot be checked for a token")
            body = await request.read()
            from_form, rest = _pop_token(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
            if from_form is not None:
                if not allow_form:
                    raise InvalidRequest("tokens are not accepted in the request body")
                token, carrier = _checked(from_form), "form"
                body = urlencode(rest).encode("latin-1")
    return Credential(token, query, body, carrier)
