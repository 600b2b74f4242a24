"""DPoP proofs (RFC 9449) checked on the resource-server side: the proof's own public key, its header,
htm / htu / iat / ath, and the key's RFC 7638 thumbprint against the token's ``cnf.jkt``.

Replay protection needs state shared by replicas, so it is the caller's: a valid proof returns its
``jti`` and ``iat`` for a store that remembers each jti for the accepted window.
"""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from gateway.oidc.claims import claims_object

# RFC 9449 §4.2: asymmetric algorithms only ("none" and MACs never: the proof proves a private key).
PROOF_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "EdDSA",
    "Ed25519",
)
_REGISTRY = JWSRegistry(algorithms=list(PROOF_ALGORITHMS), strict_check_header=False)
# A proof's header carries the public key itself: an RSA-4096 "jwk" is ~1 KB once encoded, past
# joserfc's 512-byte default for headers; the proof as a whole stays bounded by _PROOF_MAX.
_REGISTRY.max_header_length = 4096
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JTI_MAX = 256
_PROOF_MAX = 8192
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class DPoPError(ValueError):
    """A proof that fails a check of RFC 9449 §4.3; ``detail`` says which (logged, never shown)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DPoPProof:
    jti: str
    iat: float
    jkt: str  # the RFC 7638 thumbprint of the proof's key


def access_token_hash(token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII text, unpadded."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def normalise_htu(url: str) -> str:
    """The comparable form of an HTTP URI (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2-6.2.3): scheme and host
    lower-cased, the default port dropped, escapes upper-cased and unreserved ones decoded, an empty path
    as "/", and the query and fragment ignored."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "https://[zz/x": a malformed IPv6 host is the proof's fault, not a 500
        raise DPoPError("htu is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise DPoPError("htu is not an http(s) URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise DPoPError("htu has an invalid port") from exc
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _ESCAPE.sub(_normalise_escape, parts.path) or "/"
    return f"{scheme}://{authority}{path}"


def _normalise_escape(found: re.Match[str]) -> str:
    char = chr(int(found.group(0)[1:], 16))
    return char if char in _UNRESERVED else found.group(0).upper()


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None,
    jkt: str | None,
    now: float,
    max_age: float = 60.0,
    leeway: float = 5.0,
) -> DPoPProof:
    """Check one ``DPoP`` header value for a request (RFC 9449 §4.3) and return what replay needs.

    ``url`` is the request's absolute URL as the client addressed it (scheme and host from
    ``public_url`` or trusted forwarded headers); ``access_token`` and ``jkt`` are given for requests
    to protected resources (§7.1), where ``ath`` and the key binding are required.
    """
    if not proof or len(proof) > _PROOF_MAX or proof.count(".") != 2:
        raise DPoPError("malformed proof")
    try:
        obj = jws.extract_compact(proof.encode("ascii"), registry=_REGISTRY)
    except (JoseError, ValueError) as exc:
        raise DPoPError("malformed proof") from exc
    header = obj.headers()
    if header.get("typ") != "dpop+jwt":  # §4.2: exactly this media type
        raise DPoPError("typ is not dpop+jwt")
    alg = header.get("alg")
    if alg not in PROOF_ALGORITHMS:
        raise DPoPError("algorithm not allowed")
    key = _public_key(header.get("jwk"))
    _check_signature(obj, key)
    claims = _claims(obj.payload)
    if claims.get("htm") != method:
        raise DPoPError("htm does not match the request method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or normalise_htu(htu) != normalise_htu(url):
        raise DPoPError("htu does not match the request URL")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise DPoPError("iat missing or not a number")
    if iat > now + leeway or iat < now - max_age - leeway:
        raise DPoPError("iat outside the accepted window")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > _JTI_MAX:
        raise DPoPError("jti missing or malformed")
    thumbprint = key.thumbprint()
    if access_token is not None:
        if claims.get("ath") != access_token_hash(access_token):
            raise DPoPError("ath does not match the access token")
        if jkt is None or thumbprint != jkt:
            raise DPoPError("the proof's key is not the one the token is bound to")
    return DPoPProof(jti=jti, iat=float(iat), jkt=thumbprint)


def _public_key(value: Any) -> Key:
    if not isinstance(value, dict):
        raise DPoPError("jwk missing")
    if _PRIVATE_MEMBERS & value.keys():
        raise DPoPError("jwk holds private or symmetric key material")
    if value.get("kty") not in ("EC", "RSA", "OKP"):
        raise DPoPError("jwk is not an asymmetric key")
    try:
        key = JWKRegistry.import_key(value)
    except (JoseError, ValueError, TypeError) as exc:
        raise DPoPError("jwk cannot be imported") from exc
    if key.is_private:
        raise DPoPError("jwk holds a private key")
    return key


def _check_signature(obj: jws.CompactSignature, key: Key) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # "EdDSA" is still what clients send
            valid = jws.validate_compact(obj, key, registry=_REGISTRY)
    except JoseError as exc:
        raise DPoPError("signature invalid") from exc
    if not valid:
        raise DPoPError("signature invalid")


def _claims(payload: bytes) -> dict[str, Any]:
    claims = claims_object(payload)
    if claims is None:
        raise DPoPError("malformed claims")
    return claims
