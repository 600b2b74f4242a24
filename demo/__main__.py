"""``make run``: start the demo and wait for Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys

from demo.stack import DemoStack, Ports


def main() -> int:
    stack = DemoStack(Ports(), redis_url=os.environ.get("REDIS_URL"))
    try:
        stack.start()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    store = f"Redis at {stack.redis_url}" if stack.redis_url else "in memory (set REDIS_URL to use Redis)"
    print(
        f"""
tokengate demo is running.

  Open:   {stack.url}/
  Sign in with any username and password ("alice" is an admin, anyone else is not).
  Try:    {stack.url}/admin   {stack.url}/api/whoami   {stack.url}/public/
  Admin:  http://127.0.0.1:{stack.ports.admin}/metrics
  Sessions are kept {store}.

Press Ctrl-C to stop everything.""",
        flush=True,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
