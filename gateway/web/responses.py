"""The one place where a GatewayError becomes an HTTP answer: JSON for APIs, small HTML pages for
browsers, a 302 to login for a browser navigation without a session (DESIGN §5)."""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from aiohttp import web

from gateway.errors import (
    AccessDenied,
    AuthError,
    DependencyUnavailable,
    GatewayError,
    LoginFailed,
    LoginRequired,
    MethodNotAllowed,
    StepUpNotMet,
)

_JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store"}


def is_navigation(request: web.Request) -> bool:
    """A top-level browser navigation: GET/HEAD with Sec-Fetch-Mode navigate, or Accept text/html
    from a browser that sends no Fetch Metadata."""
    if request.method not in ("GET", "HEAD"):
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def www_authenticate(error: AuthError) -> str:
    """RFC 6750 §3: the challenge, with error and scope attributes when there is an error code; on a
    route that accepts DPoP, RFC 9449 §7.1's DPoP challenge too, the error in the scheme used."""
    attrs: list[str] = []
    if error.code:
        attrs.append(f'error="{error.code}"')
        attrs.append(f'error_description="{error.public_message}"')
    if error.scope:
        attrs.append(f'scope="{" ".join(error.scope)}"')
    attrs.extend(error.challenge_params)  # RFC 9470 §3: acr_values, max_age
    if error.resource_metadata:
        attrs.append(f'resource_metadata="{error.resource_metadata}"')  # RFC 9728 §5.1
    dpop = error.dpop
    if dpop is None:
        return ", ".join([f'Bearer realm="{error.realm}"', *attrs])
    in_dpop = attrs if dpop.error_in_dpop or not dpop.bearer else []
    offered = ", ".join([f'DPoP realm="{error.realm}"', *in_dpop, f'algs="{" ".join(dpop.algs)}"'])
    if not dpop.bearer:
        return offered
    bearer = ", ".join([f'Bearer realm="{error.realm}"', *([] if in_dpop else attrs)])
    return f"{bearer}, {offered}"


def json_error(
    status: int, code: str, description: str, headers: dict[str, str] | None = None, **extra: str
) -> web.Response:
    body = {"error": code, "error_description": description, **extra}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=_JSON,
        headers={**_NO_STORE, **(headers or {})},
    )


def html_page(status: int, title: str, body_html: str, headers: dict[str, str] | None = None) -> web.Response:
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}"
        "code{background:#eee;padding:0 .3em}button,a.button{font:inherit;padding:.4em 1em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return web.Response(
        status=status, text=page, content_type="text/html", headers={**_NO_STORE, **(headers or {})}
    )


def login_redirect(path_qs: str) -> web.Response:
    location = "/oauth2/login?rd=" + quote(path_qs, safe="")
    return web.Response(status=302, headers={"Location": location, **_NO_STORE})


def error_response(request: web.Request, error: GatewayError, path_qs: str) -> web.Response:
    """Translate a GatewayError; never includes the private detail."""
    if isinstance(error, AuthError):
        return json_error(
            error.status,
            error.code or "unauthorized",
            error.public_message,
            {"WWW-Authenticate": www_authenticate(error)},
        )
    if isinstance(error, LoginRequired):
        if is_navigation(request):
            if error.login_url:  # another host: log in on public_url (DESIGN §8 several hosts)
                return web.Response(status=302, headers={"Location": error.login_url, **_NO_STORE})
            return login_redirect(path_qs)
        # A bearer_or_session route with auth.resource tells API clients where to get a token.
        pointer = f'Bearer realm="tokengate", resource_metadata="{error.resource_metadata}"'
        challenge = {"WWW-Authenticate": pointer} if error.resource_metadata else None
        return json_error(401, error.code, error.public_message, challenge)
    if isinstance(error, AccessDenied) and is_navigation(request):
        return html_page(
            403,
            "Access denied",
            "<p>You are signed in, but this account may not use this page.</p>"
            "<form method=post action=/oauth2/logout><button type=submit>Sign out</button></form>",
        )
    if isinstance(error, StepUpNotMet):
        # No automatic retry: the provider ignored what was asked, and another round would end the same.
        back = html.escape(error.rd, quote=True)
        return html_page(
            error.status,
            "Stronger sign-in required",
            f"<p>{html.escape(error.public_message)}</p><p>Your current session is unchanged.</p>"
            f"<p><a class=button href='{back}'>Back</a></p>",
        )
    if isinstance(error, LoginFailed):
        retry = "/oauth2/login?rd=" + quote(request.query.get("rd", "/"), safe="")
        return html_page(
            error.status,
            "Sign-in failed",
            f"<p>{html.escape(error.public_message)}</p>"
            f"<p><a class=button href='{html.escape(retry)}'>Try again</a></p>",
        )
    headers: dict[str, str] = {}
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    if isinstance(error, DependencyUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    return json_error(error.status, error.code, error.public_message, headers)


def internal_error(request_id: str) -> web.Response:
    return json_error(500, "server_error", "internal error", request_id=request_id)
