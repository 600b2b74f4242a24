"""``GET /oauth2/jwks.json``: the keys that verify X-Tokengate-Assertion (DESIGN §8)."""

from __future__ import annotations

from aiohttp import web

from gateway.runtime.identity import Identity


def jwks_response(identity: Identity | None) -> web.Response:
    """``GET /oauth2/jwks.json``: the keys that verify X-Tokengate-Assertion; 404 without a key."""
    if identity is None or identity.jwks is None:
        return web.json_response(
            {"error": "not_found", "error_description": "this gateway has no server.signing_key"},
            status=404,
        )
    # Short enough that a rollover reaches upstreams within one assertion lifetime (5 min).
    return web.json_response(
        identity.jwks,
        headers={"Cache-Control": "public, max-age=300"},
        content_type="application/jwk-set+json",
    )
