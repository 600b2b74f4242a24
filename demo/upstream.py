"""The demo upstream: a page showing what tokengate told it about the user (identity headers)."""

from __future__ import annotations

import html

from aiohttp import web

_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em;color:#1d2733}"
    "h1{color:#0b5cad}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccd;padding:.35em .6em;"
    "text-align:left}th{background:#eef3fa;width:40%}code{background:#f2f2f2;padding:0 .3em}"
    "nav a{margin-right:1em}button{font:inherit;padding:.4em 1.2em}"
)


def _token_summary(value: str | None) -> str:
    # The demo never shows the token itself: it reaches the upstream, not the browser.
    if not value or not value.startswith("Bearer "):
        return "none"
    return f"Bearer token received ({len(value) - 7} characters, not shown)"


async def page(request: web.Request) -> web.Response:
    h = request.headers
    user = h.get("X-Auth-Request-User")
    rows = [
        ("X-Auth-Request-User", user or "(none: public route)"),
        ("X-Auth-Request-Email", h.get("X-Auth-Request-Email", "")),
        ("X-Auth-Request-Scopes", h.get("X-Auth-Request-Scopes", "")),
        ("Authorization", _token_summary(h.get("Authorization"))),
        ("X-Forwarded-For", h.get("X-Forwarded-For", "")),
        ("X-Request-Id", h.get("X-Request-Id", "")),
        ("Cookies received", ", ".join(request.cookies) or "(none: the session cookie stays at the gateway)"),
        ("Path", request.path_qs),
    ]
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in rows
    )
    who = f"Hello, {html.escape(user)}" if user else "Hello"
    body = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>tokengate demo</title>"
        f"<style>{_STYLE}</style></head><body><h1>{who}</h1>"
        "<p>This page is served by the demo upstream. tokengate signed you in with the authorization "
        "code grant, keeps your tokens server-side, and passed these headers along:</p>"
        f"<table>{table}</table>"
        "<nav><p><a href=/>Home</a><a href=/admin>Admins only</a><a href=/api/whoami>API (JSON)</a>"
        "<a href=/public/>Public page</a><a href=/oauth2/session>Session info</a></p></nav>"
        "<form method=post action=/oauth2/logout><button type=submit>Sign out</button></form>"
        "</body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def whoami(request: web.Request) -> web.Response:
    h = request.headers
    return web.json_response(
        {
            "user": h.get("X-Auth-Request-User"),
            "email": h.get("X-Auth-Request-Email"),
            "scopes": (h.get("X-Auth-Request-Scopes") or "").split(),
            "token_received": (h.get("Authorization") or "").startswith("Bearer "),
        }
    )


def demo_upstream_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/whoami", whoami)
    app.router.add_route("*", "/{tail:.*}", page)
    return app
