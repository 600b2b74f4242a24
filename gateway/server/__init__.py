"""Process-level serving: one ``Gateway`` process (listeners, signals, reload), the ``Supervisor`` of
several, and the public listener's connection limits."""

from gateway.server.gateway import Gateway, serve
from gateway.server.supervisor import Supervisor, supervise

__all__ = ["Gateway", "Supervisor", "serve", "supervise"]
