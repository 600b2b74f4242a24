"""One HTTP/1.1 request written byte for byte over a loopback socket, for request targets that an HTTP
client library would normalise, re-encode or refuse to send (dot segments, ``%2e``, raw control bytes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


async def raw_request(
    port: int | None,
    target: bytes | str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    host: str = "127.0.0.1",
) -> RawAnswer:
    """Send ``METHOD target HTTP/1.1`` exactly as given, with ``Connection: close``; read the answer."""
    assert port is not None, "the server under test is not listening yet"
    if isinstance(target, str):
        target = target.encode("latin-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode()]
        head += [f"{k}: {v}".encode("latin-1") for k, v in headers or []]
        head.append(b"Connection: close")
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        await writer.drain()
        head_bytes = await reader.readuntil(b"\r\n\r\n")
        # 101: the connection now speaks another protocol and stays open; otherwise read to the close.
        body = b"" if head_bytes.split(b" ", 2)[1] == b"101" else await reader.read()
    finally:
        writer.close()
    status_line, _, head_block = head_bytes[:-4].partition(b"\r\n")
    parsed = []
    for line in head_block.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        if name:
            parsed.append((name.strip(), value.strip()))
    return RawAnswer(int(status_line.split()[1]), parsed, body)
