"""Encryption at rest for session state (AES-256-GCM) and the session id itself: generation and hashing.

Nothing here knows Redis; the stores pass the Redis key as associated data so a ciphertext is bound to it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Blob layout: version (1 byte) || nonce (12 bytes) || AES-GCM ciphertext with its 16-byte tag.
# The version byte lets a later format (or key id) be introduced without breaking stored sessions.
FORMAT_V1 = 0x01
_NONCE_BYTES = 12  # 96-bit random nonce (NIST SP 800-38D §8.2.2); collision risk negligible per key
_TAG_BYTES = 16
_HEADER_BYTES = 1 + _NONCE_BYTES

# 32 random bytes give 43 base64url characters; accept longer ids so the length can grow later, and
# cap it so a hostile cookie cannot make us hash megabytes.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43,128}")
SESSION_ID_BYTES = 32  # 256 bits of entropy (DESIGN §6)


class InvalidCiphertext(ValueError):
    """The blob was not produced by this key for this associated data: tampered, moved, or re-keyed."""


def decode_key(key_b64url: str) -> bytes:
    """base64url text (padded or not; the standard ``+/`` alphabet is accepted too, as the config
    validator accepts it) -> exactly 32 key bytes, or ValueError."""
    raw = key_b64url.strip().rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the session encryption key must be base64url text") from None
    if len(key) != 32:
        raise ValueError(f"the session encryption key must decode to 32 bytes, got {len(key)}")
    return key


class SessionCipher:
    """AES-256-GCM with a random nonce per message and a versioned blob format."""

    __slots__ = ("_aead",)

    def __init__(self, key_b64url: str) -> None:
        self._aead = AESGCM(decode_key(key_b64url))

    def __repr__(self) -> str:
        return "SessionCipher(<key hidden>)"

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return bytes((FORMAT_V1,)) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext, or InvalidCiphertext when the blob is malformed, tampered or for other AAD/key."""
        if len(blob) < _HEADER_BYTES + _TAG_BYTES:
            raise InvalidCiphertext("ciphertext too short")
        if blob[0] != FORMAT_V1:
            raise InvalidCiphertext(f"unknown ciphertext format {blob[0]:#04x}")
        nonce = blob[1:_HEADER_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[_HEADER_BYTES:], aad)
        except InvalidTag:
            raise InvalidCiphertext("ciphertext failed authentication (tampered, moved, re-keyed)") from None


def new_session_id() -> str:
    """A fresh random session id: 256 bits, URL-safe text (43 characters), the only thing the cookie holds."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def is_session_id(value: object) -> bool:
    """True for text shaped like an id from new_session_id(); cheap guard before any Redis round trip."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def session_key(session_id: str) -> str:
    """sha256 hex of the session id: what Redis sees, so a key listing never reveals a usable cookie."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
