"""``python -m bench.otlp_sink PORT``: the tests' loopback OTLP/HTTP receiver as a process, the collector
the traced scenario exports to (it decodes every span, as a collector would; ``GET /`` gives counts)."""

from __future__ import annotations

import asyncio
import signal
import sys

from devtools.otlp import start_receiver, stop_receiver


async def _serve(port: int) -> None:
    receiver = await start_receiver(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(f"otlp sink: {receiver.requests} export requests, {len(receiver.spans)} spans", flush=True)
    await stop_receiver(receiver)


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
