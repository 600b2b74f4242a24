"""Starts and stops the demo's three parts; also used by the test that takes the README screenshot."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools.idp import LAUNCHER, ensure_node_modules
from devtools.procs import Proc

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_CLAIMS = {"alice": {"groups": ["admins", "staff"]}, "bob": {"groups": ["staff"]}}


@dataclass
class Ports:
    gateway: int = 8080
    admin: int = 9091
    idp: int = 9400
    upstream: int = 9401


@dataclass
class DemoStack:
    ports: Ports
    redis_url: str | None = None
    access_token_ttl: int = 120
    procs: list[Proc] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tokengate-demo-")))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(name, args, self.workdir / f"{name}.log", env={**os.environ, **env}, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        ensure_node_modules()
        p = self.ports
        callback = f"http://127.0.0.1:{p.gateway}/oauth2/callback"
        self._spawn(
            ["node", str(LAUNCHER)],
            {
                "IDP_PORT": str(p.idp),
                "IDP_REDIRECT_URIS": callback,
                "IDP_POST_LOGOUT_REDIRECT_URIS": f"http://127.0.0.1:{p.gateway}/",
                "IDP_ACCESS_TOKEN_TTL": str(self.access_token_ttl),
                "IDP_ACCOUNT_CLAIMS": json.dumps(ACCOUNT_CLAIMS),
            },
            "idp",
        )
        self._spawn([sys.executable, "-m", "demo.upstream_server", str(p.upstream)], {}, "upstream")
        env = {
            "DEMO_PORT": str(p.gateway),
            "DEMO_ADMIN_PORT": str(p.admin),
            "DEMO_IDP_PORT": str(p.idp),
            "DEMO_UPSTREAM_PORT": str(p.upstream),
            "TOKENGATE_SESSION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
        if self.redis_url:
            env.update({"DEMO_SESSION_STORE": "redis", "REDIS_URL": self.redis_url})
        self._wait(f"http://127.0.0.1:{p.idp}/.well-known/openid-configuration", "idp")
        self._spawn(
            [sys.executable, "-m", "gateway", "run", "--config", str(ROOT / "config" / "demo.yaml")],
            env,
            "gateway",
        )
        self._wait(f"http://127.0.0.1:{p.admin}/readyz", "gateway")
        self._wait(f"http://127.0.0.1:{p.upstream}/public/", "upstream")

    def _wait(self, url: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not all(proc.alive() for proc in self.procs):
                break
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL built above
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        log = (self.workdir / f"{name}.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"the demo's {name} did not start:\n{log[-3000:]}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.signal(signal.SIGTERM)  # all at once, then each gets its grace period
        for proc in self.procs:
            proc.stop(timeout=15)
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
