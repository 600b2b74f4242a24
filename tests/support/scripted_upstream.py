"""A keep-alive loopback upstream at the byte level whose answers a test scripts: each request gets the
next bytes from ``answers`` (or the default 200), and the connection stays open unless told otherwise.
For what an HTTP library would never send: framing conflicts, bad headers, closes at chosen moments.

An answer is bytes to write, or one of the actions ``CLOSE`` (close without a byte after reading the
request), ``RESET`` (a TCP reset instead of an answer) and ``HOLD`` (read the request, answer nothing);
bytes ending in ``RESET`` are sent, then the reset."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from dataclasses import dataclass, field

from devtools.net import free_port

CLOSE = b"<close>"
RESET = b"<reset>"
HOLD = b"<hold>"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    connection: int  # 1 for the first connection accepted, 2 for the next, ...
    method: str
    target: str
    head: str
    body: bytes
    complete: bool  # the whole body arrived (by Content-Length or the last chunk)


@dataclass
class ScriptedUpstream:
    port: int = field(default_factory=free_port)
    answers: deque[bytes] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    accepted: int = 0
    closed: int = 0  # connections that ended (either side)
    heads: int = 0  # request heads read (a request is in ``seen`` once its body was read too)
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def until(self, predicate: object, what: str, rounds: int = 500) -> None:
        """Wait (in loop turns and short sleeps, no wall-clock bound of ours) until ``predicate()``."""
        for _ in range(rounds):
            if predicate():  # type: ignore[operator]
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never happened: {what}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                self.heads += 1
                body, complete = await _read_body(head, reader)
                method, target = head.split(" ", 2)[:2]
                self.seen.append(Seen(number, method, target, head, body, complete))
                self.requested.set()
                answer = self.answers.popleft() if self.answers else OK
                if answer == CLOSE:
                    return
                if answer == RESET:
                    _reset(writer)
                    return
                if answer == HOLD:
                    await reader.read()  # until the client gives up
                    return
                if answer.endswith(RESET):  # part of an answer, then a reset
                    writer.write(answer[: -len(RESET)])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(answer)
                await writer.drain()
                if not complete or b"connection: close" in answer.lower():
                    return
        except OSError:
            return
        finally:
            self.closed += 1
            self._writers.discard(writer)
            writer.close()


async def _read_body(head: str, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    lowered = head.lower()
    length = None
    for line in lowered.split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    try:
        if length is not None:
            return await reader.readexactly(length), True
        if "transfer-encoding: chunked" not in lowered:
            return b"", True
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return body, True
            body += data[:-2]
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError) as exc:
        partial = exc.partial if isinstance(exc, asyncio.IncompleteReadError) else b""
        return partial, False


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
