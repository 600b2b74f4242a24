"""A private nginx for tests where nginx is the peer (Debian nginx-light, which has auth_request): its
own prefix, config, error log, temp dirs and pid file under a temp dir, on a free loopback port; one
process (``master_process off``), stopped by ``stop()``. ``bash .ci/system-deps nginx`` installs it.

Also the forward-auth server block that docs/forward-auth.md recommends, so tests and docs agree.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.net import free_port, wait_for_port
from devtools.procs import Proc

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{http}
}}
"""


@dataclass
class Nginx:
    proc: Proc
    port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.proc.stop(timeout=10)  # SIGTERM: nginx's fast shutdown


def nginx_available() -> bool:
    return os.access(NGINX, os.X_OK)


def start_nginx(tmp: Path, http_block: str, port: int | None = None) -> Nginx:
    """Start nginx with ``http_block`` inside ``http {}`` (``{port}`` is filled in); waits for the port."""
    if not nginx_available():
        raise RuntimeError(f"{NGINX} is missing: `bash .ci/system-deps nginx` installs Debian's nginx-light")
    port = port or free_port()
    prefix = tmp / f"nginx-{port}"
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(_MAIN.format(prefix=prefix, http=http_block.replace("{port}", str(port))))
    # -e: the error log before the config is read (otherwise /var/log/nginx/error.log).
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    proc = Proc("nginx", argv, prefix / "stdout.log")
    handle = Nginx(proc, port, prefix)
    try:
        wait_for_port(port, timeout=10)
    except TimeoutError:
        handle.stop()
        raise RuntimeError(f"nginx did not start:\n{handle.error_log()[-3000:]}") from None
    return handle


@contextmanager
def running_nginx(tmp: Path, http_block: str) -> Iterator[Nginx]:
    handle = start_nginx(tmp, http_block)
    try:
        yield handle
    finally:
        handle.stop()


def forward_auth_server(
    *,
    gateway: str,
    upstream: str,
    auth_bind: str | None = None,
    listen_host: str = "127.0.0.1",
    server_name: str = "_",
    cookie_name: str = "tokengate_session",
) -> str:
    """One nginx server in front of ``upstream``, asking tokengate (``gateway``: host:port) for a
    verdict on every request (docs/forward-auth.md, "nginx"). ``auth_bind`` makes nginx connect to the
    gateway from that loopback address, so that tests can tell nginx apart from a direct client."""
    bind = f"proxy_bind {auth_bind};" if auth_bind else ""
    return f"""
    upstream tokengate {{ server {gateway}; keepalive 16; }}
    # The upstream never gets the gateway's session cookie (DESIGN §4): the Cookie header minus it.
    map $http_cookie $tg_upstream_cookie {{
        default $http_cookie;
        "~^(?<tg_a>|.*;\\s*)(?:__Host-|__Secure-)?{cookie_name}=[^;]*;?\\s*(?<tg_b>.*)$" "$tg_a$tg_b";
    }}
    server {{
        listen {listen_host}:{{port}};
        server_name {server_name};
        location = /_tokengate {{
            internal;
            {bind}
            proxy_pass http://tokengate/oauth2/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Clear the other spellings, so a client cannot add one (tokengate refuses two).
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Original-URL "";
        }}
        # The verdict is for the subrequest above only: from a browser it would hand a script on this
        # origin the identity headers (and, with forward_token, the session's access token).
        location /oauth2/auth {{
            return 404;
        }}
        location /oauth2/ {{
            {bind}
            proxy_pass http://tokengate;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        location @tokengate_401 {{
            if ($tg_login) {{ return 302 $tg_login; }}
            add_header WWW-Authenticate $tg_challenge always;
            return 401;
        }}
        location @tokengate_error {{
            if ($tg_status = 503) {{ add_header Retry-After 5 always; return 503; }}
            return 500;
        }}
        location / {{
            auth_request /_tokengate;
            auth_request_set $tg_status $upstream_status;
            auth_request_set $tg_login $upstream_http_x_auth_request_login;
            auth_request_set $tg_challenge $upstream_http_www_authenticate;
            auth_request_set $tg_user $upstream_http_x_auth_request_user;
            auth_request_set $tg_email $upstream_http_x_auth_request_email;
            auth_request_set $tg_scopes $upstream_http_x_auth_request_scopes;
            auth_request_set $tg_assertion $upstream_http_x_tokengate_assertion;
            error_page 401 = @tokengate_401;
            error_page 500 = @tokengate_error;
            add_header WWW-Authenticate $tg_challenge always;
            # Set every identity header: an empty value removes a copy the client sent.
            proxy_set_header X-Auth-Request-User $tg_user;
            proxy_set_header X-Auth-Request-Email $tg_email;
            proxy_set_header X-Auth-Request-Scopes $tg_scopes;
            proxy_set_header X-Tokengate-Assertion $tg_assertion;
            proxy_set_header Cookie $tg_upstream_cookie;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass {upstream};
        }}
    }}
"""
