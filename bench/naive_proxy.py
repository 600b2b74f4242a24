"""The naive aiohttp proxy the issue compares tokengate with: web.Application, one shared ClientSession,
streamed responses, uvloop when installed, one process, no auth, no logging, no metrics.

``python -m bench.naive_proxy --port P --upstream http://127.0.0.1:U`` runs it; ``start_naive_proxy``
starts it as a child of the harness. ``--client`` swaps the upstream client only, so the candidates for
tokengate's hot path are compared behind the same server: ``naive`` (as above), ``tuned`` (aiohttp's
ClientSession with auto_decompress off, DummyCookieJar, no per-request timeout, one read() for a small
body), ``pool`` (gateway.upstream's pooled keep-alive client on httptools) and ``aiosonic`` (when installed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from bench.procs import Proc
from devtools.net import wait_for_http

#: Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded, in either direction.
HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade")
)
SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)
CLIENTS = ("naive", "tuned", "pool", "aiosonic")
SMALL = 64 * 1024


async def proxy(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k.lower() != "host"}
    async with session.request(
        request.method,
        request.app[UPSTREAM] + request.path_qs,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status)
        for k, v in upstream.headers.items():
            if k.lower() not in HOP and k.lower() != "content-length":
                response.headers[k] = v
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def proxy_tuned(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k.lower() != "host"}
    async with session.request(
        request.method,
        request.app[UPSTREAM] + request.path_qs,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        out = [
            (k, v)
            for k, v in upstream.headers.items()
            if k.lower() not in HOP and k.lower() != "content-length"
        ]
        length = upstream.content_length
        if length is not None and length <= SMALL:
            return web.Response(status=upstream.status, headers=CIMultiDict(out), body=await upstream.read())
        response = web.StreamResponse(status=upstream.status, headers=CIMultiDict(out))
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _pool_proxy() -> _Handler:
    from gateway.upstream.options import upstream_options
    from gateway.upstream.pool import UpstreamPool

    pool = UpstreamPool()
    options = upstream_options(connect=5, headers=30, idle=0)

    async def proxy_pool(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP and k.lower() != "host"
        )
        url = URL(request.app[UPSTREAM] + request.path_qs, encoded=True)
        body = request.content.iter_chunked(SMALL) if request.body_exists else None
        upstream = await pool.request(request.method, url, headers, body, options)
        try:
            out = [
                (k, v)
                for k, v in upstream.headers.items()
                if k.lower() not in HOP and k.lower() != "content-length"
            ]
            length = upstream.content_length
            if length is not None and length <= SMALL:
                return web.Response(
                    status=upstream.status, headers=CIMultiDict(out), body=await upstream.read()
                )
            response = web.StreamResponse(status=upstream.status, headers=CIMultiDict(out))
            await response.prepare(request)
            async for chunk in upstream.iter_chunks():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()

    return proxy_pool


def _aiosonic_proxy() -> _Handler:
    """aiosonic (PyPI, not a dependency: ``pip install aiosonic`` to measure it); buffered bodies only."""
    import aiosonic  # type: ignore[import-not-found]

    http = aiosonic.HTTPClient()

    async def proxy_aiosonic(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        body = await request.read() if request.body_exists else None
        upstream = await http.request(
            request.app[UPSTREAM] + request.path_qs, request.method, headers, data=body
        )
        out = [
            (k, v) for k, v in upstream.raw_headers if k.lower() not in HOP and k.lower() != "content-length"
        ]
        return web.Response(
            status=upstream.status_code, headers=CIMultiDict(out), body=await upstream.content()
        )

    return proxy_aiosonic


def make_app(upstream: str, client: str = "naive") -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        if client == "tuned":
            app[SESSION] = ClientSession(
                connector=TCPConnector(limit=0),
                timeout=ClientTimeout(total=None),
                auto_decompress=False,
                cookie_jar=DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        else:
            app[SESSION] = ClientSession(
                connector=TCPConnector(limit=0), timeout=ClientTimeout(total=30), auto_decompress=False
            )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    handler = {"naive": proxy, "tuned": proxy_tuned}.get(client) or (
        _aiosonic_proxy() if client == "aiosonic" else _pool_proxy()
    )
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=CLIENTS, default="naive")
    args = parser.parse_args(argv)
    uv = True
    try:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        uv = False
    print(f"naive proxy ({args.client}) on 127.0.0.1:{args.port}, uvloop {'on' if uv else 'off'}", flush=True)
    web.run_app(
        make_app(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


def start_naive_proxy(directory: Path, port: int, upstream_port: int, client: str = "naive") -> Proc:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.naive_proxy",
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{upstream_port}",
        "--client",
        client,
    ]
    repo = Path(__file__).resolve().parents[1]
    proc = Proc(f"naive-proxy-{client}", argv, directory / f"naive-proxy-{client}.log", cwd=repo)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/bench/item", timeout=20)
    except TimeoutError:
        proc.stop(2)
        raise RuntimeError(f"the naive proxy did not start:\n{proc.log_tail(2000)}") from None
    return proc


if __name__ == "__main__":
    main(sys.argv[1:])
