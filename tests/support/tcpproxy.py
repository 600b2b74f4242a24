"""A loopback TCP relay that can be switched to refuse connections: a dependency that is down without
losing its state (the test provider keeps its grants in memory, so it cannot simply be restarted), or a
slow one: ``hold_answers()`` lets requests through but keeps the answers until ``release_answers()``."""

from __future__ import annotations

import asyncio
import contextlib

from devtools.net import free_port


class TcpRelay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._answers_open = asyncio.Event()
        self._answers_open.set()
        self.answer_held = asyncio.Event()  # set when an answer arrived and is being held back

    def hold_answers(self) -> None:
        """From now on, bytes coming back from the target wait (the target has done its work)."""
        self.answer_held.clear()
        self._answers_open.clear()

    def release_answers(self) -> None:
        self._answers_open.set()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def refuse(self) -> None:
        """From now on, accepted connections are reset; the open ones are cut."""
        self.refusing = True
        for writer in list(self._writers):
            writer.transport.abort()

    def allow(self) -> None:
        self.refusing = False

    async def close(self) -> None:
        self.refuse()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, answers=True))
        finally:
            self._writers.difference_update({writer, up_writer})
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool = False
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if answers and not self._answers_open.is_set():
                    self.answer_held.set()
                    await self._answers_open.wait()
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
