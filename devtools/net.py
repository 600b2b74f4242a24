"""Loopback helpers shared by the fixtures: free ports and waiting for a server to answer."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request

_HANDED: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close).

    Under pytest-xdist each worker only takes ports of its own residue ((port // 2) % workers), and no port
    twice, so two tests starting servers at the same moment never race for one port."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    held: list[socket.socket] = []  # kept bound while searching, so every bind gets another port
    try:
        for _ in range(512):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            # port // 2: Linux hands bind(0) odd ports first (even ones are kept for connect()).
            if (port // 2) % workers == index % workers and port not in _HANDED:
                _HANDED.add(port)
                return port
    finally:
        for sock in held:
            sock.close()
    raise RuntimeError("no free loopback port of this worker's residue")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_for_http(url: str, timeout: float = 15.0, status: int = 200) -> None:
    """Block until GET url answers with the given status, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == status:
                    return
                last = resp.status
        except urllib.error.HTTPError as exc:
            if exc.code == status:
                return
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {status} after {timeout}s (last: {last!r})")
