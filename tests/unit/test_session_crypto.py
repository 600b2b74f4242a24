"""SessionCipher (AES-256-GCM at rest) and session ids: round trips, and every way a blob must be refused."""

from __future__ import annotations

import base64
import hashlib
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sessions.crypto import (
    FORMAT_V1,
    InvalidCiphertext,
    SessionCipher,
    decode_key,
    is_session_id,
    new_session_id,
    session_key,
)

RAW_KEY = bytes(range(32))
KEY = base64.urlsafe_b64encode(RAW_KEY).decode().rstrip("=")
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()
CIPHER = SessionCipher(KEY)


@given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=256))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    assert CIPHER.decrypt(CIPHER.encrypt(plaintext, aad), aad) == plaintext


@given(plaintext=st.binary(max_size=512))
def test_blob_layout_is_version_nonce_ciphertext_tag(plaintext: bytes) -> None:
    blob = CIPHER.encrypt(plaintext, b"k")
    assert blob[0] == FORMAT_V1
    assert len(blob) == 1 + 12 + len(plaintext) + 16


def test_every_encryption_uses_a_fresh_nonce() -> None:
    blobs = {CIPHER.encrypt(b"same plaintext", b"same aad") for _ in range(200)}
    assert len(blobs) == 200
    assert len({blob[1:13] for blob in blobs}) == 200


def test_plaintext_does_not_appear_in_the_blob() -> None:
    assert b"refresh-token-value" not in CIPHER.encrypt(b"xx refresh-token-value xx", b"")


@given(plaintext=st.binary(max_size=256), aad=st.binary(max_size=64), other=st.binary(max_size=64))
def test_wrong_aad_is_rejected(plaintext: bytes, aad: bytes, other: bytes) -> None:
    if other == aad:
        other += b"!"
    with pytest.raises(InvalidCiphertext):
        CIPHER.decrypt(CIPHER.encrypt(plaintext, aad), other)


def test_wrong_key_is_rejected() -> None:
    blob = CIPHER.encrypt(b"tokens", b"session:{abc}")
    with pytest.raises(InvalidCiphertext, match="authentication"):
        SessionCipher(OTHER_KEY).decrypt(blob, b"session:{abc}")


@given(plaintext=st.binary(max_size=128), data=st.data())
def test_any_flipped_bit_is_rejected(plaintext: bytes, data: st.DataObject) -> None:
    blob = bytearray(CIPHER.encrypt(plaintext, b"aad"))
    position = data.draw(st.integers(min_value=0, max_value=len(blob) * 8 - 1))
    blob[position // 8] ^= 1 << (position % 8)
    with pytest.raises(InvalidCiphertext):
        CIPHER.decrypt(bytes(blob), b"aad")


@given(plaintext=st.binary(max_size=64), data=st.data())
def test_truncated_or_extended_blobs_are_rejected(plaintext: bytes, data: st.DataObject) -> None:
    blob = CIPHER.encrypt(plaintext, b"aad")
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(InvalidCiphertext):
        CIPHER.decrypt(blob[:cut], b"aad")
    with pytest.raises(InvalidCiphertext):
        CIPHER.decrypt(blob + b"\x00", b"aad")


def test_unknown_format_version_is_rejected() -> None:
    blob = CIPHER.encrypt(b"x", b"")
    with pytest.raises(InvalidCiphertext, match="format"):
        CIPHER.decrypt(b"\x02" + blob[1:], b"")


@pytest.mark.parametrize(
    "text",
    [
        KEY,  # base64url without padding
        base64.urlsafe_b64encode(RAW_KEY).decode(),  # padded
        f"  {KEY}\n",  # as pasted from a file
        base64.b64encode(RAW_KEY).decode(),  # standard alphabet, accepted like the config validator does
    ],
)
def test_key_text_forms(text: str) -> None:
    assert decode_key(text) == RAW_KEY


@given(raw=st.binary(min_size=32, max_size=32))
def test_any_32_byte_key_in_either_alphabet(raw: bytes) -> None:
    assert decode_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert decode_key(base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        base64.urlsafe_b64encode(os.urandom(16)).decode(),
        base64.urlsafe_b64encode(os.urandom(33)).decode(),
        "é" * 43,
        "AAAA AAAA" * 5,
        "*" * 43,
    ],
    ids=["empty", "short", "16-bytes", "33-bytes", "non-ascii", "spaces", "not-base64"],  # stable under xdist
)
def test_bad_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="encryption key"):
        SessionCipher(text)


def test_repr_never_shows_the_key() -> None:
    assert KEY not in repr(CIPHER)
    assert "hidden" in repr(CIPHER)


def test_session_ids_are_256_bit_url_safe_and_unique() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session_id)
        assert len(base64.urlsafe_b64decode(session_id + "=")) == 32
        assert is_session_id(session_id)


@pytest.mark.parametrize("value", [None, 42, b"x" * 43, "", "x" * 42, "x" * 129, "a" * 42 + "=", "a+" * 22])
def test_is_session_id_refuses_what_we_never_issue(value: object) -> None:
    assert not is_session_id(value)


@given(session_id=st.text(max_size=100))
def test_session_key_is_sha256_hex(session_id: str) -> None:
    digest = session_key(session_id)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
