"""tokengate under test: one process (or one supervisor and its workers) per scenario.

The gateway writes one JSON access-log line per request to stderr; stdout and stderr go to a file in
the run's directory, never to a pipe, so logging cannot block the gateway and its cost is the cost of a
plain file write.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Proc, tail
from devtools.net import free_port

REPO = Path(__file__).resolve().parents[1]
ROUTE_PREFIX = "/bench"


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    issuer: str
    introspection: bool = False
    #: Scopes asked for at login (session routes): the upstream then sees api:read for the session too.
    scopes: tuple[str, ...] = ()


def gateway_config(
    *,
    port: int,
    admin_port: int,
    upstream_port: int,
    auth: dict[str, Any],
    provider: ProviderSpec | None,
    workers: int = 1,
    sessions: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config with exactly one route, ``/bench``, in front of the nginx upstream (and, with
    ``sessions``, the public URL the login flow needs)."""
    cfg: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "admin_listen": f"127.0.0.1:{admin_port}",
            "workers": workers,
            "shutdown_grace": "2s",
            **(server or {}),
        },
        "routes": [
            {
                "name": "bench",
                "match": {"path_prefix": ROUTE_PREFIX},
                "upstream": f"http://127.0.0.1:{upstream_port}",
                "auth": auth,
            }
        ],
    }
    if provider is not None:
        pcfg: dict[str, Any] = {
            "issuer": provider.issuer,
            "client_id": "gw",
            "client_secret": "gw-secret",
        }
        if provider.scopes:
            pcfg["scopes"] = list(provider.scopes)
        if provider.introspection:
            pcfg["introspection_client_id"] = "introspector"
            pcfg["introspection_client_secret"] = "introspector-secret"
            pcfg["introspection_cache"] = "60s"
        cfg["providers"] = {provider.name: pcfg}
    if sessions is not None:
        cfg["server"]["public_url"] = f"http://127.0.0.1:{port}"
        cfg["sessions"] = sessions
    return cfg


class Gateway:
    """A running ``python -m gateway run --config FILE`` started from the repository root."""

    def __init__(self, name: str, directory: Path, cfg: dict[str, Any]) -> None:
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.port = int(cfg["server"]["listen"].rsplit(":", 1)[1])
        self.admin_port = int(cfg["server"]["admin_listen"].rsplit(":", 1)[1])
        self.log = directory / "gateway.log"
        metrics_dir = directory / "prometheus"
        metrics_dir.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            # multi-worker mode keeps its metrics here (default: a directory under /tmp never removed)
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        if cfg["server"].get("workers", 1) <= 1:
            env.pop("PROMETHEUS_MULTIPROC_DIR")
        argv = [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)]
        self.proc = Proc(name, argv, self.log, env=env, cwd=REPO)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROUTE_PREFIX}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the admin listener's /readyz answers 200 (providers loaded), or RuntimeError."""
        from bench.http import get

        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.popen.returncode} at start; log tail:\n"
                    f"{self.log_tail()}"
                )
            try:
                status, _headers, body = get(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=1)
                if status == 200:
                    return
                last = f"{status} {body[:300]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not ready after {timeout}s (last /readyz: {last}); log tail:\n{self.log_tail()}"
        )

    def log_offset(self) -> int:
        with contextlib.suppress(OSError):
            return self.log.stat().st_size
        return 0

    def log_tail(self, chars: int = 4000) -> str:
        return tail(self.log, chars)

    def access_statuses(self, since: int) -> tuple[Counter[int], list[str]]:
        """Statuses of the access-log lines written after byte ``since``, and the non-access lines."""
        statuses: Counter[int] = Counter()
        other: list[str] = []
        with self.log.open("rb") as f:
            f.seek(since)
            for raw in f:
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    other.append(line)
                    continue
                if isinstance(record, dict) and "status" in record and "route" in record:
                    statuses[int(record["status"])] += 1
                else:
                    other.append(line)
        return statuses, other

    def stop(self) -> int | None:
        return self.proc.stop(timeout=10)


def start_gateway(
    name: str,
    directory: Path,
    *,
    upstream_port: int,
    auth: dict[str, Any],
    provider: ProviderSpec | None,
    workers: int = 1,
    sessions: dict[str, Any] | None = None,
    port: int | None = None,
    server: dict[str, Any] | None = None,
) -> Gateway:
    cfg = gateway_config(
        port=port or free_port(),
        admin_port=free_port(),
        upstream_port=upstream_port,
        auth=auth,
        provider=provider,
        workers=workers,
        sessions=sessions,
        server=server,
    )
    gw = Gateway(name, directory, cfg)
    try:
        gw.wait_ready()
    except BaseException:
        gw.stop()
        raise
    return gw
