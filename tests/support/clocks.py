"""The gateway's injected clock for tests (``create_app(cfg, clock=...)``): token and session expiry become a
step of the clock, never a wall-clock sleep. The real provider keeps its own (wall) clock."""

from __future__ import annotations

import time


class ShiftedClock:
    """Real time plus an offset the test moves forward (the gateway's injected clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the gateway's time forward (e.g. past an access token's expiry)."""
        self.offset += seconds
