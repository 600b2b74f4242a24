"""A self-signed https front on loopback (nginx) for a plain-http backend: mod_auth_openidc and mod_oauth2
accept only https JWKS and introspection URLs (PEERS.md), while the test provider speaks http.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.nginx import _common, start_nginx
from bench.procs import Proc
from devtools.net import free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 valid for a day, and its key (PEM files in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "front.crt", directory / "front.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def start_tls_front(directory: Path, backend_port: int) -> tuple[Proc, int]:
    """nginx with ``ssl`` on a free port, proxying every path to ``http://127.0.0.1:backend_port``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = self_signed(directory)
    port = free_port()
    conf = (
        _common(directory, 1)
        + f"""    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert_file};
        ssl_certificate_key {key_file};
        location / {{
            proxy_pass http://127.0.0.1:{backend_port};
            proxy_http_version 1.1;
            proxy_set_header Host 127.0.0.1:{backend_port};
        }}
    }}
    server {{
        listen 127.0.0.1:{free_port()};
        location / {{ return 200 "up\\n"; }}
    }}
}}
"""
    )
    probe = int(conf.rsplit("listen 127.0.0.1:", 1)[1].split(";", 1)[0])
    return start_nginx("tls-front", directory, conf, probe), port
