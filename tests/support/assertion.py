"""The upstream-side verifier of docs/identity-assertion.md, loaded from the page itself so that the
documented example is the code the tests run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity-assertion.md"


def documented_example() -> dict[str, Any]:
    """The namespace of the page's Python example (``fetch_keys``, ``verify``)."""
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, "docs/identity-assertion.md must hold exactly one Python example"
    namespace: dict[str, Any] = {"__name__": "identity_assertion_example"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def new_signing_pem() -> str:
    """A fresh server.signing_key, as `tokengate gen-key --signing` prints it (PKCS #8 PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
