"""``python -m gateway.healthcheck``: the container HEALTHCHECK, probing /healthz on the admin port that
the config file names (``server.admin_listen``), so changing that port needs no image rebuild."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = "/etc/tokengate/gateway.yaml"
DEFAULT_ADMIN = "127.0.0.1:9090"


def admin_address(config_text: str | None) -> str:
    """``host:port`` to probe: the config's admin_listen with a wildcard host made loopback.

    Only a literal value is read (no ``${VAR}`` expansion, no validation): a config that fails to load
    must not make a healthy process look dead, and the running process may hold an older config.
    """
    listen = DEFAULT_ADMIN
    try:
        data: Any = yaml.safe_load(config_text) if config_text else None
    except yaml.YAMLError:
        data = None
    server = data.get("server") if isinstance(data, dict) else None
    value = server.get("admin_listen") if isinstance(server, dict) else None
    if isinstance(value, str) and "${" not in value and ":" in value:
        listen = value.strip()
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "localhost"):  # noqa: S104 - a wildcard bind is probed on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else os.environ.get("TOKENGATE_CONFIG", DEFAULT_CONFIG)
    try:
        text: str | None = Path(path).read_text(encoding="utf-8")
    except OSError:
        text = None
    url = f"http://{admin_address(text)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
