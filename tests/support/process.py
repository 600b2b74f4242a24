"""Running the real ``tokengate`` command as a subprocess, for tests that need a whole process
(memory use, signals, reload, workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.net import free_port, wait_for_http
from devtools.procs import Proc


@dataclass
class GatewayProcess:
    process: Proc
    port: int
    admin_port: int
    config: Path
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The child itself, for tests that signal it or wait for its exit code."""
        return self.process.popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def rss_kib(self, pid: int | None = None) -> int:
        """Current resident set size of the process (KiB), from /proc."""
        status = Path(f"/proc/{pid or self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        code = self.process.stop(timeout, sig=sig)
        assert code is not None  # stop() waits until the child is reaped
        return code

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_gateway(
    config_text: str,
    tmp: Path,
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
    wait_ready: bool = False,
) -> GatewayProcess:
    """Write the config (``{port}`` and ``{admin_port}`` are filled in) and start ``python -m gateway``."""
    port, admin_port = ports or (free_port(), free_port())
    config = tmp / "gateway.yaml"
    config.write_text(config_text.replace("{port}", str(port)).replace("{admin_port}", str(admin_port)))
    log = tmp / "gateway.log"
    argv = [sys.executable, "-m", "gateway", "run", "--config", str(config)]
    proc = Proc("gateway", argv, log, env={**os.environ, **(env or {})})
    handle = GatewayProcess(proc, port, admin_port, config, log)
    try:
        wait_for_http(f"{handle.admin_url}/healthz", timeout=20)
        if wait_ready:
            wait_for_http(f"{handle.admin_url}/readyz", timeout=30)
    except TimeoutError:
        handle.stop(signal.SIGKILL)
        raise RuntimeError(f"gateway did not start:\n{handle.logs()}") from None
    return handle


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False
