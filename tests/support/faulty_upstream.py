"""A loopback upstream that misbehaves on purpose, at the byte level (no HTTP library in the way): the
request path picks the fault. Every answer closes its connection, so one fault never leaks into the next.

    /ok                 200, a short body
    /slow-head          waits ``?s=`` seconds (default 5) before sending anything
    /hang-after-head    headers with Content-Length ``?n=``, a tenth of the body, then silence
    /reset-mid-body     headers with Content-Length ``?n=``, a tenth of the body, then a TCP reset
    /reset-mid-chunked  chunked, three chunks, then a TCP reset (no last chunk)
    /huge-headers       a header line of ``?n=`` bytes (default 100 000)
    /close-before-head  reads the request, closes without a byte
    /upload             reads the body (Content-Length or chunked) and records whether it was whole
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from devtools.net import free_port


class FaultyUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.hits: Counter[str] = Counter()
        self.uploads: list[tuple[str, int]] = []  # ("complete" | "aborted", bytes received)
        self.open = 0  # connections being served right now
        self._server: asyncio.Server | None = None
        self._hanging: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        for writer in list(self._hanging):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.hits[parts.path] += 1
            await self._answer(parts.path, query, head, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _answer(
        self,
        path: str,
        query: dict[str, str],
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        size = int(query.get("n", "200000"))
        if path == "/slow-head":
            await _wait_or_eof(reader, float(query.get("s", "5")))
            writer.write(_head(200, [("Content-Length", "4")]) + b"late")
        elif path in ("/hang-after-head", "/reset-mid-body"):
            writer.write(_head(200, [("Content-Length", str(size))]) + b"x" * (size // 10))
            await writer.drain()
            if path == "/reset-mid-body":
                _reset(writer)
                return
            self._hanging.add(writer)
            await _wait_or_eof(reader, 30)  # until the gateway gives up and closes
            self._hanging.discard(writer)
        elif path == "/reset-mid-chunked":
            writer.write(_head(200, [("Transfer-Encoding", "chunked")]))
            for _ in range(3):
                writer.write(b"4000\r\n" + b"y" * 0x4000 + b"\r\n")
            await writer.drain()
            _reset(writer)
            return
        elif path == "/huge-headers":
            writer.write(_head(200, [("X-Huge", "h" * size), ("Content-Length", "2")]) + b"no")
        elif path == "/close-before-head":
            pass
        elif path == "/upload":
            await self._upload(head, reader, writer)
        else:
            writer.write(_head(200, [("Content-Length", "2"), ("Content-Type", "text/plain")]) + b"ok")
        with contextlib.suppress(OSError):
            await writer.drain()

    async def _upload(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = head.decode("latin-1").lower().split("\r\n")
        length = next(
            (int(line.split(":", 1)[1]) for line in lines if line.startswith("content-length:")), None
        )
        received = 0
        tail = b""
        while length is None or received < length:
            chunk = await reader.read(65536)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-5:]
            if length is None and tail == b"0\r\n\r\n":  # the last chunk of a chunked body
                length = received
        whole = length is not None and received >= length
        self.uploads.append(("complete" if whole else "aborted", received))
        if whole:
            body = str(received).encode()
            writer.write(_head(200, [("Content-Length", str(len(body)))]) + body)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} OK", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not an orderly end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _wait_or_eof(reader: asyncio.StreamReader, seconds: float) -> None:
    """Sleep up to ``seconds``, ending early when the peer closes (it gave up on us)."""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
