"""TLS material named by the config: the SSL contexts of the listener, the providers and the upstreams,
built by the same code that check-config runs to prove, offline, that every file exists and parses."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import ConfigProblem

if TYPE_CHECKING:
    from gateway.config.schema import GatewayConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)  # as schema's


PemFile = Annotated[str, Field(min_length=1)]


class ServerTlsConfig(_Model):
    cert_file: PemFile = Field(description="PEM certificate chain (leaf first); reloaded on SIGHUP.")
    key_file: PemFile = Field(description="PEM private key of the certificate (unencrypted).")


class ClientTlsConfig(_Model):
    ca_file: PemFile | None = Field(
        None, description="PEM bundle of the CAs to trust instead of the system's (private CA)."
    )
    cert_file: PemFile | None = Field(None, description="PEM client certificate (mTLS), leaf first.")
    key_file: PemFile | None = Field(
        None, description="PEM private key of cert_file; omit when cert_file holds it."
    )


class UpstreamTlsConfig(ClientTlsConfig):
    server_name: str | None = Field(
        None,
        min_length=1,
        description="Name sent as SNI and verified in the upstream's certificate (when connecting by IP).",
    )


def server_context(cfg: ServerTlsConfig) -> ssl.SSLContext:
    """The listener's context; ``load_server_cert`` swaps its certificate in place on a reload."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    load_server_cert(ctx, cfg)
    return ctx


def load_server_cert(ctx: ssl.SSLContext, cfg: ServerTlsConfig) -> None:
    # OpenSSL copies the context's certificate into each new connection: handshakes after this call
    # present the new certificate, connections already open keep theirs.
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)


def client_context(cfg: ClientTlsConfig | None) -> ssl.SSLContext | None:
    """A verifying client context: ``ca_file`` replaces the system CAs (a private CA, not one more
    CA trusted for every peer); ``cert_file``/``key_file`` are the client certificate (mTLS).
    None without a config (aiohttp's default verifying context is used)."""
    if cfg is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


def tls_problems(cfg: GatewayConfig) -> list[ConfigProblem]:
    """Every TLS file that is missing, unreadable or does not parse, with its YAML path."""
    problems: list[ConfigProblem] = []
    if cfg.server.tls is not None:
        _check(problems, "server.tls", None, cfg.server.tls.cert_file, cfg.server.tls.key_file)
    for name, provider in cfg.providers.items():
        if provider.tls is not None:
            tls = provider.tls
            _check(problems, f"providers.{name}.tls", tls.ca_file, tls.cert_file, tls.key_file)
    for i, route in enumerate(cfg.routes):
        if route.upstream_tls is not None:
            tls = route.upstream_tls
            _check(problems, f"routes[{i}].upstream_tls", tls.ca_file, tls.cert_file, tls.key_file)
    return problems


def _check(
    problems: list[ConfigProblem], at: str, ca_file: str | None, cert_file: str | None, key_file: str | None
) -> None:
    if ca_file is not None and _readable(problems, f"{at}.ca_file", ca_file):
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, ValueError) as exc:
            problems.append(ConfigProblem(f"{at}.ca_file", f"not a PEM CA bundle: {_reason(exc)}"))
    if cert_file is None:
        return
    cert_ok = _readable(problems, f"{at}.cert_file", cert_file)
    key_ok = key_file is None or _readable(problems, f"{at}.key_file", key_file)
    if not cert_ok:
        return
    try:
        x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
    except ValueError:
        problems.append(ConfigProblem(f"{at}.cert_file", "not a PEM certificate"))
        return
    if not key_ok:
        return
    try:
        ssl.create_default_context().load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        where = f"{at}.key_file" if key_file is not None else f"{at}.cert_file"
        problems.append(
            ConfigProblem(where, f"no unencrypted PEM private key matching cert_file: {_reason(exc)}")
        )


def _readable(problems: list[ConfigProblem], at: str, path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError as exc:
        problems.append(ConfigProblem(at, f"cannot read {path}: {exc.strerror}"))
        return False


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).lower().replace("_", " ")
