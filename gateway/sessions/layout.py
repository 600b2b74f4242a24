"""How session state is laid out in a key-value store: key names (DESIGN §6) and value encoding.

Values are JSON before encryption; decoding is strict, so a foreign or truncated record reads as absent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from gateway.models import Session, TokenSet
from gateway.sessions.crypto import session_key
from gateway.sessions.store import LoginState

_FORMAT = 1
_RESERVED = frozenset({"session", "lock", "login", "bcl", "replay", "once"})
_CACHE_NAMESPACE = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names under ``prefix``. Session and lock share a ``{hash tag}`` so Redis Cluster puts them
    in one slot; ids and states are stored hashed, so listing keys reveals nothing a browser sends."""

    prefix: str

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{{{session_key(session_id)}}}"

    def refresh_lock(self, session_id: str) -> str:
        return f"{self.prefix}lock:refresh:{{{session_key(session_id)}}}"

    def session_by_key(self, hashed: str) -> str:
        """The session key from its hashed id (what the back-channel index holds)."""
        return f"{self.prefix}session:{{{hashed}}}"

    def sid_index(self, provider: str, sid: str) -> str:
        # OIDC Back-Channel Logout §2.7: the provider's sid -> the sessions it started. Each index is
        # its own {hash tag}, so every script on it runs on one Cluster node.
        return f"{self.prefix}bcl:sid:{{{_digest(provider, sid)}}}"

    def sub_index(self, provider: str, subject: str) -> str:
        return f"{self.prefix}bcl:sub:{{{_digest(provider, subject)}}}"

    def replay(self, kind: str, issuer: str, jti: str) -> str:
        """A token id seen once (logout tokens, DPoP proofs), hashed with its issuer."""
        if not _CACHE_NAMESPACE.fullmatch(kind):
            raise ValueError(f"replay kinds are lower-case names, got {kind[:40]!r}")
        return f"{self.prefix}replay:{kind}:{_digest(issuer, jti)}"

    def login(self, state: str) -> str:
        digest = hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}login:{digest}"

    def once(self, key: str) -> str:
        """A one-time mark (replay stores: DPoP ``jti``); ``key`` is already a hash, e.g. ``dpop:<hex>``."""
        namespace, sep, rest = key.partition(":")
        if not sep or not rest or not _CACHE_NAMESPACE.fullmatch(namespace):
            raise ValueError(f"one-time marks look like 'dpop:<hex>', got {key[:40]!r}")
        return f"{self.prefix}once:{key}"

    def cache(self, key: str) -> str:
        # The cache must never write where sessions, locks or logins live: their values are trusted
        # once they decrypt, and the AAD (the key) is all that separates them.
        namespace, sep, rest = key.partition(":")
        if not sep or not rest or namespace in _RESERVED or not _CACHE_NAMESPACE.fullmatch(namespace):
            raise ValueError(
                f"cache keys look like 'introspect:<hex>' (no prefix, not a reserved "
                f"namespace), got {key[:40]!r}"
            )
        return f"{self.prefix}{key}"


def _digest(*parts: str) -> str:
    joined = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _loads(blob: bytes) -> dict[str, Any]:
    record = json.loads(blob)
    if not isinstance(record, dict) or record.get("v") != _FORMAT:
        raise ValueError("not a session record of a known format")
    return record


def _opt_str(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _str(record: dict[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _str_tuple(record: dict[str, Any], name: str) -> tuple[str, ...]:
    value = record.get(name, [])  # absent in records written before step-up
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of text")
    return tuple(value)


def _opt_int(record: dict[str, Any], name: str) -> int | None:
    value = record.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer")
    return value


def _num(record: dict[str, Any], name: str) -> float:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def encode_session(session: Session) -> bytes:
    tokens = session.tokens
    return _dumps(
        {
            "v": _FORMAT,
            "subject": session.subject,
            "provider": session.provider,
            "email": session.email,
            "name": session.name,
            "claims": dict(session.claims),
            "created_at": session.created_at,
            "expires_at": session.expires_at,
            "sid": session.sid,
            "tokens": {
                "access_token": tokens.access_token,
                "token_type": tokens.token_type,
                "refresh_token": tokens.refresh_token,
                "id_token": tokens.id_token,
                "expires_at": tokens.expires_at,
                "scope": tokens.scope,
            },
        }
    )


def decode_session(blob: bytes) -> Session:
    """The session in ``blob``; ValueError when it is not a well-formed session record."""
    try:
        record = _loads(blob)
        raw_tokens = record["tokens"]
        claims = record["claims"]
        if not isinstance(raw_tokens, dict) or not isinstance(claims, dict):
            raise ValueError("tokens and claims must be objects")
        token_exp = raw_tokens.get("expires_at")
        tokens = TokenSet(
            access_token=_str(raw_tokens, "access_token"),
            token_type=_str(raw_tokens, "token_type"),
            refresh_token=_opt_str(raw_tokens, "refresh_token"),
            id_token=_opt_str(raw_tokens, "id_token"),
            expires_at=None if token_exp is None else _num(raw_tokens, "expires_at"),
            scope=_opt_str(raw_tokens, "scope"),
        )
        return Session(
            subject=_str(record, "subject"),
            provider=_str(record, "provider"),
            tokens=tokens,
            claims=claims,
            created_at=_num(record, "created_at"),
            expires_at=_num(record, "expires_at"),
            email=_opt_str(record, "email"),
            name=_opt_str(record, "name"),
            sid=_opt_str(record, "sid"),  # absent in records written before back-channel logout
        )
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ValueError(f"malformed session record: {exc!r}") from None


def encode_login(state: LoginState) -> bytes:
    return _dumps(
        {
            "v": _FORMAT,
            "state": state.state,
            "code_verifier": state.code_verifier,
            "nonce": state.nonce,
            "rd": state.rd,
            "provider": state.provider,
            "created_at": state.created_at,
            "cookie_binding": state.cookie_binding,
            "acr_values": list(state.acr_values),
            "max_age": state.max_age,
        }
    )


def decode_login(blob: bytes) -> LoginState:
    """The login state in ``blob``; ValueError when it is not a well-formed login record."""
    try:
        record = _loads(blob)
        return LoginState(
            state=_str(record, "state"),
            code_verifier=_str(record, "code_verifier"),
            nonce=_str(record, "nonce"),
            rd=_str(record, "rd"),
            provider=_str(record, "provider"),
            created_at=_num(record, "created_at"),
            cookie_binding=_str(record, "cookie_binding"),
            acr_values=_str_tuple(record, "acr_values"),
            max_age=_opt_int(record, "max_age"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed login record: {exc!r}") from None
