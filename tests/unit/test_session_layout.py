"""Key names (DESIGN §6) and the strict record encoding the stores encrypt; open_store() choosing a store."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.schema import SessionsConfig
from gateway.models import Session, TokenSet
from gateway.sessions import MemorySessionStore, RedisSessionStore, open_store
from gateway.sessions.layout import KeyLayout, decode_login, decode_session, encode_login, encode_session
from gateway.sessions.store import LoginState

KEY = "F46lteVryFtxLJ6IigpjbNZVsbaWQdUdlZr2GjMEuxo"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _session(claims: dict[str, Any] | None = None, **tokens: Any) -> Session:
    return Session(
        subject="alice",
        provider="main",
        tokens=TokenSet(access_token="at", **tokens),
        claims=claims or {"sub": "alice"},
        created_at=1_700_000_000.25,
        expires_at=1_700_043_200.5,
    )


@given(
    claims=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    refresh=st.none() | st.text(max_size=30),
    exp=st.none() | st.floats(0, 2e9),
)
def test_session_round_trip(claims: dict[str, Any], refresh: str | None, exp: float | None) -> None:
    session = _session(claims, refresh_token=refresh, expires_at=exp, id_token="idt", scope="openid")
    assert decode_session(encode_session(session)) == session


def test_login_round_trip() -> None:
    login = LoginState("st", "verifier", "nonce", "/x?y=1", "main", 1.5, "binding")
    assert decode_login(encode_login(login)) == login


def _record(**changes: Any) -> bytes:
    record = json.loads(encode_session(_session()))
    for name, value in changes.items():
        if value is ...:
            del record[name]
        else:
            record[name] = value
    return json.dumps(record).encode()


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        b'{"v": 2}',
        _record(v=2),
        _record(subject=...),
        _record(subject=7),
        _record(tokens=[]),
        _record(tokens={"access_token": None, "token_type": "Bearer"}),
        _record(claims="x"),
        _record(expires_at=True),
        _record(expires_at="soon"),
        _record(email=3),
        encode_login(LoginState("st", "v", "n", "/", "main", 1.0, "b")),
    ],
)
def test_malformed_session_records_are_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="malformed session record"):
        decode_session(blob)


@pytest.mark.parametrize("blob", [b"{}", b'{"v": 1, "state": "s"}', encode_session(_session())])
def test_malformed_login_records_are_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="malformed login record"):
        decode_login(blob)


def test_key_layout() -> None:
    keys = KeyLayout("tokengate:")
    session_id = "A" * 43
    assert re.fullmatch(r"tokengate:session:\{[0-9a-f]{64}\}", keys.session(session_id))
    assert re.fullmatch(r"tokengate:lock:refresh:\{[0-9a-f]{64}\}", keys.refresh_lock(session_id))
    assert keys.session(session_id)[-66:] == keys.refresh_lock(session_id)[-66:]  # same hash tag
    assert re.fullmatch(r"tokengate:login:[0-9a-f]{64}", keys.login("some-state"))
    assert "some-state" not in keys.login("some-state")
    assert keys.cache("introspect:ab12") == "tokengate:introspect:ab12"


def test_session_sid_round_trips_and_older_records_have_none() -> None:
    session = dataclasses.replace(_session(), sid="op-sid-1")
    assert decode_session(encode_session(session)) == session
    older = json.loads(encode_session(_session()))
    del older["sid"]  # written before back-channel logout existed
    assert decode_session(json.dumps(older).encode()).sid is None
    with pytest.raises(ValueError, match="malformed session record"):
        decode_session(json.dumps({**older, "sid": 7}).encode())


def test_back_channel_key_layout() -> None:
    keys = KeyLayout("tokengate:")
    sid_key, sub_key = keys.sid_index("main", "sid-1"), keys.sub_index("main", "alice")
    assert re.fullmatch(r"tokengate:bcl:sid:\{[0-9a-f]{64}\}", sid_key)
    assert re.fullmatch(r"tokengate:bcl:sub:\{[0-9a-f]{64}\}", sub_key)
    assert keys.sid_index("other", "sid-1") != sid_key  # per provider
    assert re.fullmatch(r"tokengate:replay:logout:[0-9a-f]{64}", keys.replay("logout", "https://idp", "j"))
    assert keys.replay("logout", "https://idp", "j") != keys.replay("logout", "https://idp2", "j")
    assert keys.session_by_key("ab" * 32) == f"tokengate:session:{{{'ab' * 32}}}"
    with pytest.raises(ValueError, match="replay kinds"):
        keys.replay("Bad Kind", "https://idp", "j")


@pytest.mark.parametrize(
    "key",
    ["session:{x}", "login:x", "lock:refresh:{x}", "", "x", ":x", "UP:x", "a b:x", "bcl:sid:{x}", "replay:x"],
)
def test_cache_keys_stay_out_of_reserved_namespaces(key: str) -> None:
    with pytest.raises(ValueError, match="cache keys"):
        KeyLayout("tokengate:").cache(key)


async def test_open_store_memory() -> None:
    store = open_store(SessionsConfig(store="memory", encryption_key=KEY, idle_timeout="1m"))
    assert isinstance(store, MemorySessionStore)
    await store.close()


async def test_open_store_redis_connects_lazily() -> None:
    store = open_store(SessionsConfig(store="redis", redis_url="redis://127.0.0.1:1/0", encryption_key=KEY))
    assert isinstance(store, RedisSessionStore)
    await store.close()


def test_open_store_needs_the_encryption_key() -> None:
    with pytest.raises(ValueError, match="encryption_key"):
        open_store(SessionsConfig(store="memory"))
