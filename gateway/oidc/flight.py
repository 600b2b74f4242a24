"""Single flight: concurrent callers asking for the same key share one in-progress call.

Used for introspection calls and JWKS downloads, so a burst of first uses makes one provider request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """One task per key; every caller awaits it through a shield, so one caller's cancellation
    (a client that went away) does not cancel the work the others are waiting for."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def in_flight(self, key: K) -> bool:
        return key in self._tasks

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        # Every waiter may have been cancelled: mark the outcome retrieved so asyncio does not
        # report "exception was never retrieved" for a failure nobody is left to see.
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
