"""RFC 9728 Protected Resource Metadata: the answer at ``/.well-known/oauth-protected-resource/<resource
path>`` (the gateway's own, never proxied); the documents are compiled by gateway.runtime.metadata.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import MethodNotAllowed, NotFound
from gateway.runtime.metadata import MetadataDocument, choose_document

# Public, and changed only by a config reload: cacheable, but not for long (RFC 9111 §5.2.2.1).
_CACHE_CONTROL = "public, max-age=300"
_METHODS = ("GET", "HEAD", "OPTIONS")

__all__ = ["metadata_answer"]


def metadata_answer(
    request: web.Request, path: str, published: dict[str, tuple[MetadataDocument, ...]]
) -> web.Response:
    """The answer at a reserved well-known path (``path`` is normalised); 404 for unknown resources."""
    key = path.rstrip("/") if path != "/" else path
    doc = choose_document(published.get(key, ()), request.headers.get("Host"))
    if doc is None:
        raise NotFound("no protected resource metadata at this URL")
    cors = {"Access-Control-Allow-Origin": "*"}
    if request.method == "OPTIONS":
        # A CORS preflight (browser-based MCP clients send MCP-Protocol-Version): no credentials needed.
        return web.Response(
            status=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": ", ".join(_METHODS),
                "Access-Control-Allow-Headers": "*",
                "Access-Control-Max-Age": "86400",
            },
        )
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(allowed=_METHODS)
    headers = {
        **cors,
        "Cache-Control": _CACHE_CONTROL,
        "ETag": doc.etag,
        "X-Content-Type-Options": "nosniff",
    }
    if doc.etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(status=200, body=doc.body, content_type="application/json", headers=headers)
