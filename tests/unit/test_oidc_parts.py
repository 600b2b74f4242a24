"""Small parts of gateway.oidc: claims helpers, client authentication, provider answers, single flight."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.schema import ProviderConfig
from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.oidc.claims import audiences, check_times, numeric_date, scopes
from gateway.oidc.client_auth import ClientCredentials
from gateway.oidc.flight import SingleFlight
from gateway.oidc.http import ProviderResponse

scope_token = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)


@given(st.lists(scope_token, max_size=8))
def test_scope_string_is_space_delimited(values: list[str]) -> None:
    assert scopes({"scope": " ".join(values)}) == frozenset(values)
    assert scopes({"scp": values}) == frozenset(values)
    assert scopes({"scp": "  ".join(values)}) == frozenset(values)


def test_scope_precedence_and_junk() -> None:
    assert scopes({"scope": "a b", "scp": ["c"]}) == {"a", "b"}
    assert scopes({"scp": ["a", 3, None]}) == {"a"}
    assert scopes({"scope": 5}) == frozenset()
    assert scopes({}) == frozenset()


@pytest.mark.parametrize(
    ("aud", "expected"), [("api", {"api"}), (["a", "b"], {"a", "b"}), (None, set()), ([], set())]
)
def test_audiences(aud: Any, expected: set[str]) -> None:
    assert audiences({"aud": aud} if aud is not None else {}) == expected


@pytest.mark.parametrize("aud", [7, ["a", 1], {"a": 1}, True])
def test_malformed_audiences(aud: Any) -> None:
    with pytest.raises(InvalidToken, match="malformed aud"):
        audiences({"aud": aud})


@pytest.mark.parametrize("value", [True, "1", math.nan, math.inf, [1]])
def test_numeric_date_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(InvalidToken, match="malformed exp"):
        numeric_date({"exp": value}, "exp")


def test_check_times_edges() -> None:
    assert check_times({"exp": 100}, now=99.9, leeway=0) == 100
    with pytest.raises(InvalidToken, match="expired"):
        check_times({"exp": 100}, now=100, leeway=0)  # RFC 7519 §4.1.4: "on or after" exp
    assert check_times({"exp": 100}, now=109, leeway=10) == 100
    assert check_times({"nbf": 110}, now=100, leeway=10) is None
    with pytest.raises(InvalidToken, match="not yet valid"):
        check_times({"nbf": 111}, now=100, leeway=10)


def test_client_secret_basic_encodes_before_base64() -> None:
    # RFC 6749 §2.3.1: client id and secret are form-urlencoded, then joined with ":".
    cfg = ProviderConfig.model_validate(
        {"issuer": "https://idp.example.com", "client_id": "gw:1 x", "client_secret": "p@ss:w/rd%"}
    )
    creds = ClientCredentials.for_token_endpoint(cfg)
    form, headers = creds.apply([("token", "t")])
    assert form == [("token", "t")]
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert raw == "gw%3A1+x:p%40ss%3Aw%2Frd%25"
    assert "p@ss" not in repr(creds)


def test_introspection_credentials() -> None:
    base = {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "s"}
    own = ClientCredentials.for_introspection(ProviderConfig.model_validate(base))
    assert (own.client_id, own.client_secret) == ("gw", "s")
    separate = ClientCredentials.for_introspection(
        ProviderConfig.model_validate(
            {**base, "introspection_client_id": "rs", "introspection_client_secret": "rs-s"}
        )
    )
    assert (separate.client_id, separate.client_secret) == ("rs", "rs-s")
    public = ClientCredentials("spa", None, "client_secret_basic")
    assert public.apply([]) == ([("client_id", "spa")], {})


def test_provider_response_error_code() -> None:
    assert ProviderResponse(400, {"error": "invalid_grant"}).error == "invalid_grant"
    assert ProviderResponse(400, {}).error == "http_400"
    assert ProviderResponse(400, {"error": "x" * 200}).error == "http_400"
    assert ProviderResponse(400, {"error": ["list"]}).error == "http_400"


async def test_single_flight_shares_result_and_failure() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42

    assert await asyncio.gather(*(flight.run("k", work) for _ in range(10))) == [42] * 10
    assert calls == 1
    assert not flight.in_flight("k")

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ProviderUnavailable(detail="down")

    results = await asyncio.gather(*(flight.run("k", fail) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ProviderUnavailable) for r in results)


async def test_single_flight_failure_nobody_waits_for_is_not_reported() -> None:
    # filterwarnings=error would turn "Task exception was never retrieved" noise into a failure.
    flight: SingleFlight[str, int] = SingleFlight()

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ProviderUnavailable(detail="down")

    waiter = asyncio.ensure_future(flight.run("k", fail))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0.05)
    assert not flight.in_flight("k")
    await flight.close()
