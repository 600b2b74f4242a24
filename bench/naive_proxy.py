"""The naive aiohttp proxy the issue compares tokengate with: web.Application, one shared ClientSession,
streamed responses, uvloop when installed, one process, no auth, no logging, no metrics.

``python -m bench.naive_proxy --port P --upstream http://127.0.0.1:U`` runs it; ``start_naive_proxy``
starts it as a child of the harness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from bench.procs import Proc
from devtools.net import wait_for_http

#: Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded, in either direction.
HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade")
)
SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


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


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(total=30), auto_decompress=False
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    uv = True
    try:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        uv = False
    print(f"naive proxy on 127.0.0.1:{args.port}, uvloop {'on' if uv else 'off'}", flush=True)
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


def start_naive_proxy(directory: Path, port: int, upstream_port: int) -> Proc:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.naive_proxy",
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{upstream_port}",
    ]
    repo = Path(__file__).resolve().parents[1]
    proc = Proc("naive-proxy", argv, directory / "naive-proxy.log", cwd=repo)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/bench/item", timeout=20)
    except TimeoutError:
        proc.stop(2)
        raise RuntimeError(f"the naive proxy did not start:\n{proc.log_tail(2000)}") from None
    return proc


if __name__ == "__main__":
    main(sys.argv[1:])
