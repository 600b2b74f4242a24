"""The login cookie's value and the WebSocket Origin check are parsers of browser input: they never
raise, and they accept exactly what the gateway itself produces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.authn.login_state import cookie_value, parse_binding
from gateway.authn.sockets import same_origin

TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=64
)


@given(st.integers(min_value=0, max_value=10**15), TOKEN, TOKEN)
def test_own_values_round_trip(issued: int, state: str, secret: str) -> None:
    binding = parse_binding("n", cookie_value(issued, state, secret))
    assert (binding.issued_ms, binding.state, binding.secret) == (issued, state, secret)


@given(st.text(max_size=300))
def test_any_value_parses_without_raising(value: str) -> None:
    binding = parse_binding("n", value)
    assert len(binding.secret) <= 128
    assert binding.issued_ms >= 0


def test_foreign_shapes_sort_first_and_name_no_state() -> None:
    for value in ("plainsecret", "x.y.z", "1.2", "1..z", "-1.s.z"):
        binding = parse_binding("n", value)
        assert binding.state is None
        assert binding.issued_ms == 0


@given(st.text(max_size=200))
def test_origin_check_never_raises(origin: str) -> None:
    assert same_origin(origin, "https://app.example.com") in (True, False)


def test_origin_equality() -> None:
    own = "https://app.example.com"
    assert same_origin("https://app.example.com", own)
    assert same_origin("https://APP.example.com:443", own)
    for other in (
        None,
        "",
        "null",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.example",
        "https://evil.example",
        "https://user@app.example.com",
        "https://app.example.com/path",
        "app.example.com",
    ):
        assert not same_origin(other, own), other
