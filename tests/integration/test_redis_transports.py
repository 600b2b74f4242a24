"""The other ways to reach Redis that ``sessions.redis_url`` accepts: TLS (``rediss://``) and a unix socket.

The TLS server gets a throwaway CA and certificate for 127.0.0.1, made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.net import free_port
from devtools.redis import RedisServer
from gateway.errors import SessionStoreUnavailable
from gateway.models import Session, TokenSet
from gateway.sessions import RedisSessionStore, SessionCipher

KEY = "F46lteVryFtxLJ6IigpjbNZVsbaWQdUdlZr2GjMEuxo"


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) with the server certificate valid for IP 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokengate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        _write_pem(directory / "ca.pem", ca.public_bytes(pem)),
        _write_pem(directory / "server.pem", cert.public_bytes(pem)),
        _write_pem(
            directory / "server.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ),
    )


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, int, Path]]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    ca, cert, key = _make_tls_files(workdir)
    tls_port = free_port()
    server = RedisServer(
        free_port(),
        workdir,
        name="tls",
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
        ],
    )
    server.start()
    try:
        yield server, tls_port, ca
    finally:
        server.stop()


@pytest.fixture(scope="module")
def unix_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    workdir = tmp_path_factory.mktemp("redis-unix")
    socket_path = workdir / "redis.sock"
    server = RedisServer(free_port(), workdir, name="unix", extra_args=["--unixsocket", str(socket_path)])
    server.start()
    try:
        yield server, socket_path
    finally:
        server.stop()


def _session() -> Session:
    now = time.time()
    return Session(
        subject="alice",
        provider="main",
        claims={},
        created_at=now,
        expires_at=now + 60,
        tokens=TokenSet(access_token="at", refresh_token="rt"),
    )


async def _round_trip(url: str) -> None:
    store = RedisSessionStore.from_url(url, SessionCipher(KEY), idle_timeout=60)
    try:
        await store.ping()
        session = _session()
        assert await store.get(await store.create(session)) == session
    finally:
        await store.close()


async def test_tls_with_the_servers_ca(tls_redis: tuple[RedisServer, int, Path]) -> None:
    _, tls_port, ca = tls_redis
    await _round_trip(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}")


async def test_tls_refuses_an_unknown_ca(tls_redis: tuple[RedisServer, int, Path]) -> None:
    _, tls_port, _ = tls_redis
    url = f"rediss://127.0.0.1:{tls_port}/0"  # the system CAs do not know the test CA
    store = RedisSessionStore.from_url(url, SessionCipher(KEY), idle_timeout=60)
    try:
        with pytest.raises(SessionStoreUnavailable):  # fails closed; never falls back to plaintext
            await store.ping()
    finally:
        await store.close()


async def test_unix_socket(unix_redis: tuple[RedisServer, Path]) -> None:
    _, socket_path = unix_redis
    await _round_trip(f"unix://{socket_path}?db=1")
