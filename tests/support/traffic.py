"""Bounded request loops for the fault tier: a few concurrent workers send requests until the test stops
them (or a request/time budget runs out), and every answer is kept, labelled with the test's phase."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

REQUEST_TIMEOUT = 10.0  # per request: a hang shows up as an "error" outcome, never as a stuck test


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request of the loop: its phase, which caller sent it, and what came back."""

    phase: str
    key: str  # which session / token the request used
    path: str
    status: int | None  # None: no HTTP answer (see error)
    retry_after: str | None = None
    location: str | None = None
    error: str | None = None
    body: str = ""
    ended: str = ""  # the phase when the answer came back

    @property
    def within(self) -> bool:
        """Sent and answered in the same phase (nothing changed under this request)."""
        return self.ended == self.phase


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], str]:
    async with session.request(
        method, url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), **kwargs
    ) as resp:
        return resp.status, dict(resp.headers), await resp.text()


class Traffic:
    """``async with Traffic(request) as t``: ``workers`` loops call ``request(i)`` -> (key, method, url,
    kwargs) and record an Outcome each; ``t.phase`` labels what follows; the loops stop at exit, after
    ``limit`` requests or after ``seconds`` (so a test that forgets to stop them still ends)."""

    def __init__(
        self,
        request: Callable[[int], tuple[str, str, str, dict[str, object]]],
        *,
        workers: int = 4,
        limit: int = 20_000,
        seconds: float = 60.0,
        connector: Callable[[], aiohttp.BaseConnector] | None = None,
        pause: float = 0.0,
    ) -> None:
        self._request = request
        self._workers = workers
        self._limit = limit
        self._seconds = seconds
        self._connector = connector
        self._pause = pause
        self.phase = "before"
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._counter = 0

    async def __aenter__(self) -> Traffic:
        self._session = aiohttp.ClientSession(
            connector=self._connector() if self._connector else None, cookie_jar=aiohttp.DummyCookieJar()
        )
        self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self._workers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """End the loops (each finishes its request) and close their connections; idempotent."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()

    async def _worker(self) -> None:
        assert self._session is not None
        deadline = time.monotonic() + self._seconds
        while not self._stop.is_set() and self._counter < self._limit and time.monotonic() < deadline:
            index = self._counter
            self._counter += 1
            key, method, url, kwargs = self._request(index)
            phase = self.phase
            path = urlsplit(url).path
            try:
                status, headers, body = await fetch(self._session, method, url, **kwargs)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.outcomes.append(
                    Outcome(phase, key, path, None, error=type(exc).__name__, ended=self.phase)
                )
                await asyncio.sleep(0.01)  # a refused connection returns at once: don't spin
                continue
            self.outcomes.append(
                Outcome(
                    phase,
                    key,
                    path,
                    status,
                    retry_after=headers.get("Retry-After"),
                    location=headers.get("Location"),
                    body=body[:300],
                    ended=self.phase,
                )
            )
            await asyncio.sleep(self._pause)

    # ---- reading what happened ----------------------------------------------------------------------

    def of(self, phase: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if phase is None or o.phase == phase]

    def statuses(self, phase: str | None = None) -> Counter[int | None]:
        return Counter(o.status for o in self.of(phase))

    def keys_with(self, status: int, phase: str) -> set[str]:
        return {o.key for o in self.of(phase) if o.status == status}

    async def until(self, predicate: Callable[[], bool], what: str, within: float = 20.0) -> None:
        """Poll the outcomes until ``predicate()``; fail with ``what`` and the statuses seen otherwise."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline or all(task.done() for task in self._tasks):
                raise AssertionError(f"{what}: not seen after {within}s; statuses {self.summary()}")
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter[str]] = {}
        for o in self.outcomes:
            table.setdefault(o.phase, Counter())[str(o.status if o.status is not None else o.error)] += 1
        return {phase: dict(counts) for phase, counts in table.items()}

    def assert_only(self, allowed: Iterable[int], phase: str | None = None) -> None:
        """Every answer (of the phase) had one of the allowed statuses; a 503 always with Retry-After."""
        allowed = set(allowed)
        odd = [o for o in self.of(phase) if o.status not in allowed]
        assert not odd, f"unexpected answers {odd[:5]}; all: {self.summary()}"
        no_retry = [o for o in self.of(phase) if o.status == 503 and not (o.retry_after or "").isdigit()]
        assert not no_retry, f"503 without Retry-After: {no_retry[:3]}"
