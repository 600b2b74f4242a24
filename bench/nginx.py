"""nginx on loopback: the upstream (a small static body) and a plain pass-through proxy in front of it.

Each instance gets its own directory with nginx.conf, pid file, error log and temp paths; it runs in the
foreground (``daemon off``) so the harness owns the master process and stops it with SIGQUIT (graceful)
or SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from bench.procs import Proc, tail
from devtools.net import wait_for_http

#: What the upstream answers on /whoami: the identity headers the gateway added (preflight checks).
WHOAMI_LOCATION = r"""
        location ~ /whoami$ {
            default_type text/plain;
            return 200 "user=$http_x_auth_request_user scopes=$http_x_auth_request_scopes\n";
        }
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light, or `make bench`)")
    return found


def _common(directory: Path, workers: int) -> str:
    tmp = directory / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process on;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
{temp_paths}
    keepalive_timeout 75s;
    keepalive_requests 1000000;   # wrk's and the gateway's connections are never recycled mid-run
    server_tokens off;
"""


def upstream_conf(directory: Path, port: int, body_file: Path, workers: int) -> str:
    return (
        _common(directory, workers)
        + f"""    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {body_file.parent};
        default_type application/octet-stream;
{WHOAMI_LOCATION}
        location / {{ try_files /{body_file.name} =404; }}
    }}
}}
"""
    )


def proxy_conf(directory: Path, port: int, upstream_port: int, workers: int) -> str:
    return (
        _common(directory, workers)
        + f"""    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
    )


def start_nginx(name: str, directory: Path, conf: str, port: int, probe_path: str = "/") -> Proc:
    """Write ``conf`` to ``directory/nginx.conf``, start nginx in the foreground, wait for ``probe_path``."""
    directory.mkdir(parents=True, exist_ok=True)
    conf_file = directory / "nginx.conf"
    conf_file.write_text(conf)
    argv = [nginx_binary(), "-p", str(directory), "-c", str(conf_file), "-e", str(directory / "error.log")]
    proc = Proc(name, argv, directory / "stdout.log", term_signal=signal.SIGQUIT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}{probe_path}", timeout=10)
    except TimeoutError:
        proc.stop(2)
        errors = tail(directory / "error.log", 2000)
        raise RuntimeError(
            f"{name} did not start; error.log:\n{errors}\noutput:\n{proc.log_tail(1000)}"
        ) from None
    if not proc.alive():
        raise RuntimeError(f"{name} exited at start:\n{proc.log_tail()}")
    return proc
