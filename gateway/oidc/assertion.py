"""The identity assertion for upstreams (DESIGN §8, ``X-Tokengate-Assertion``): a short-lived JWT of the
principal signed with ``server.signing_key`` (ES256, ``kid`` = the RFC 7638 thumbprint), and the public
JWKS that upstreams verify it with (``/oauth2/jwks.json``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry

ASSERTION_ALG = "ES256"
ASSERTION_LIFETIME = 300.0  # DESIGN §8: exp = iat + 5 min


class SigningKeyError(ValueError):
    """``server.signing_key`` is not an EC P-256 private key (PEM or JWK)."""


def load_signing_key(text: str) -> ECKey:
    """An EC P-256 private key from PEM (SEC 1 or PKCS #8) or a JWK JSON object."""
    text = text.strip()
    try:
        if text.startswith("{"):
            key = JWKRegistry.import_key(json.loads(text))
        else:
            key = ECKey.import_key(text.encode("ascii"))
    except (JoseError, ValueError, TypeError) as exc:
        raise SigningKeyError("expected an EC P-256 private key, PEM or JWK") from exc
    if not isinstance(key, ECKey) or key.curve_name != "P-256":
        raise SigningKeyError("expected an EC P-256 key (ES256)")
    if not key.is_private:
        raise SigningKeyError("expected the private key, not only the public one")
    return key


class AssertionSigner:
    """Signs identity assertions; one per runtime, the key parsed once."""

    def __init__(self, key: ECKey) -> None:
        self._key = key
        self.kid = key.thumbprint()
        public = key.as_dict(private=False)
        self._jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ASSERTION_ALG}]}

    @property
    def jwks(self) -> dict[str, Any]:
        """The public key set (RFC 7517 §5), for ``GET /oauth2/jwks.json``."""
        return self._jwks

    def sign(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str,
        now: float,
        email: str | None = None,
        groups: Sequence[str] | None = None,
    ) -> str:
        """A JWT of the principal for one upstream (``aud`` = its origin), valid for five minutes."""
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "iat": iat,
            "exp": iat + int(ASSERTION_LIFETIME),
            "jti": secrets.token_urlsafe(16),
        }
        if email:
            claims["email"] = email
        if groups is not None:
            claims["groups"] = list(groups)
        header = {"alg": ASSERTION_ALG, "typ": "JWT", "kid": self.kid}
        return jwt.encode(header, claims, self._key, algorithms=[ASSERTION_ALG])
