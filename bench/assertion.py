"""Cost of X-Tokengate-Assertion on the hot path (issue 14 item 5): one ES256 signature against a cache
hit of gateway.runtime.identity.Identity, timed in-process with timeit (docs/identity-assertion.md)."""

from __future__ import annotations

import timeit

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import parse_config
from gateway.models import Principal
from gateway.runtime.identity import Identity


def identity(now: list[float]) -> Identity:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    route = {
        "name": "api",
        "upstream": "http://127.0.0.1:3000",
        "auth": {"mode": "bearer", "provider": "main", "audience": "api", "identity_jwt": True},
    }
    cfg = {
        "server": {"public_url": "https://gw.example.com", "signing_key": pem},
        "providers": {"main": {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "s"}},
        "routes": [route],
    }
    return Identity(parse_config(yaml.safe_dump(cfg), env={}), lambda: now[0])


def cost_us(number: int = 2_000) -> dict[str, float]:
    """Best-of-5 microseconds per assertion: signed every time (cold) and served from the cache (warm)."""
    now = [1_800_000_000.0]
    ident = identity(now)
    alice = Principal("alice", "jwt", claims={"groups": ["admins", "staff"]}, email="alice@example.com")

    def cold() -> None:
        now[0] += 61.0  # past the re-sign threshold: every call signs
        ident.headers("api", alice)

    def warm() -> None:
        ident.headers("api", alice)

    return {
        "sign": min(timeit.repeat(cold, number=number, repeat=5)) / number * 1e6,
        "cached": min(timeit.repeat(warm, number=number * 10, repeat=5)) / (number * 10) * 1e6,
    }


if __name__ == "__main__":
    for label, value in cost_us().items():
        print(f"{label:>7}: {value:8.2f} us per request")
