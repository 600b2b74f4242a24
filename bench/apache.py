"""Apache httpd as a benchmark peer: mod_auth_openidc (JWT via JWKS, or introspection with its shm cache)
and mod_oauth2 (JWT), each a resource server in front of the nginx upstream (PEERS.md has the pitfalls).

One instance per scenario: ``apache2 -f <conf> -D FOREGROUND``, event MPM, every path in its directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from pathlib import Path
from typing import Literal

from bench.procs import Proc, tail
from devtools.net import wait_for_http

Kind = Literal["openidc-jwt", "openidc-introspection", "oauth2-jwt"]
MODULES = Path("/usr/lib/apache2/modules")
#: ``Require claim scope:api:read`` compares the whole claim; this matches one scope in a list.
SCOPE_RE = "(^| )api:read( |$)"


def apache_binary() -> str:
    found = shutil.which("apache2") or (
        "/usr/sbin/apache2" if os.access("/usr/sbin/apache2", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError("apache2 is not installed (`make bench` installs it: .ci/system-deps apache2)")
    return found


def _module(name: str, so: str) -> str:
    path = MODULES / so
    if not path.exists():
        raise RuntimeError(f"{path} is missing (Debian package for {name}; `make bench` installs it)")
    return f"LoadModule {name} {path}"


def _auth(kind: Kind, front: str, audience: str) -> tuple[list[str], str]:
    """(server-level lines, the <Location> body) for one kind of resource server."""
    if kind == "oauth2-jwt":
        server = [_module("oauth2_module", "mod_oauth2.so")]
        location = f"""        AuthType oauth2
        OAuth2TokenVerify jwks_uri {front}/jwks jwks_uri.ssl_verify=false&verify.exp=required
        OAuth2AcceptTokenIn header
        OAuth2TargetPass envvars=On&headers=Off
        <RequireAll>
            Require oauth2_claim aud:{audience}
            Require expr "%{{REMOTE_USER}} != '' && %{{ENV:OAUTH2_CLAIM_scope}} =~ /{SCOPE_RE}/"
        </RequireAll>"""
        return server, location
    server = [
        _module("auth_openidc_module", "mod_auth_openidc.so"),
        "OIDCOAuthSSLValidateServer Off",
        # Without encryption the shm cache silently refuses keys over 512 bytes (PEERS.md).
        "OIDCCacheType shm",
        "OIDCCacheEncrypt On",
        f"OIDCCryptoPassphrase {secrets.token_urlsafe(24)}",
    ]
    if kind == "openidc-jwt":
        server.append(f"OIDCOAuthVerifyJwksUri {front}/jwks")
    else:
        server += [
            f"OIDCOAuthIntrospectionEndpoint {front}/token/introspection",
            "OIDCOAuthIntrospectionEndpointAuth client_secret_basic",
            "OIDCOAuthClientID introspector",
            "OIDCOAuthClientSecret introspector-secret",
        ]
    location = f"""        AuthType oauth20
        <RequireAll>
            Require valid-user
            Require claim "scope~{SCOPE_RE}"
            Require claim aud:{audience}
        </RequireAll>"""
    return server, location


def apache_conf(directory: Path, port: int, upstream_port: int, kind: Kind, front: str, audience: str) -> str:
    run = directory / "run"
    run.mkdir(parents=True, exist_ok=True)
    server, location = _auth(kind, front, audience)
    user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
    lines = [
        _module("mpm_event_module", "mod_mpm_event.so"),
        _module("authn_core_module", "mod_authn_core.so"),
        _module("authz_core_module", "mod_authz_core.so"),
        _module("authz_user_module", "mod_authz_user.so"),  # Require valid-user
        _module("proxy_module", "mod_proxy.so"),
        _module("proxy_http_module", "mod_proxy_http.so"),
        *server,
    ]
    return (
        "\n".join(lines)
        + f"""
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{user}PidFile {directory}/apache.pid
DefaultRuntimeDir {run}
ErrorLog {directory}/error.log
LogLevel warn
# no access log: nginx and tokengate-less peers are measured without one as well

StartServers 2
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 32
# never reap a child mid-run (its keep-alive connections would drop)
MaxSpareThreads 128
# wrk's connections must not be recycled every 100 requests (PEERS.md)
KeepAlive On
KeepAliveTimeout 75
MaxKeepAliveRequests 0

ProxyRequests Off
ProxyPass /bench http://127.0.0.1:{upstream_port}/bench
<Location /up>
    Require all granted
</Location>
ProxyPass /up http://127.0.0.1:{upstream_port}/up
<Location /bench>
    # scope failures answer 403, not 401 (PEERS.md)
    AuthzSendForbiddenOnFailure On
{location}
</Location>
"""
    )


def start_apache(
    directory: Path, *, port: int, upstream_port: int, kind: Kind, front: str, audience: str
) -> Proc:
    """Write the config, start ``apache2 -D FOREGROUND`` and wait until it proxies an open path."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    conf = directory / "apache2.conf"
    conf.write_text(apache_conf(directory, port, upstream_port, kind, front, audience))
    # SIGWINCH is Apache's graceful stop; SIGTERM stops at once (both end the children).
    proc = Proc(
        f"apache-{kind}",
        [apache_binary(), "-f", str(conf), "-D", "FOREGROUND"],
        directory / "stdout.log",
        term_signal=signal.SIGTERM,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/up", timeout=15)
    except TimeoutError:
        proc.stop(2)
        raise RuntimeError(
            f"apache {kind} did not start; error.log:\n{tail(directory / 'error.log', 2000)}\n"
            f"output:\n{proc.log_tail(1000)}"
        ) from None
    return proc
