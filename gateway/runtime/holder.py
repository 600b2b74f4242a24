"""The holder of the runtime in force: a reload replaces it in one assignment, shutdown marks it unready."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.runtime.build import Runtime


@dataclass(slots=True)
class RuntimeHolder:
    """The runtime in force; reload replaces it in one assignment (atomic for the event loop)."""

    runtime: Runtime | None = None
    ready: bool = True  # False while shutting down: /readyz answers 503

    @property
    def current(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the gateway has not started")
        return self.runtime

    def begin_shutdown(self) -> None:
        """From now on /readyz answers 503, so load balancers stop sending before the listeners close."""
        self.ready = False
