"""The resource-server side of DPoP without a wire: the binding (cnf.jkt), the challenge, the URL a
proof must name, the config key and explain's account of a proof (RFC 9449 §6, §7.1, §4.3)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.authn.dpop import (
    MARK_TTL,
    PROOF_LEEWAY,
    PROOF_WINDOW,
    bound_jkt,
    explain_binding,
    target_url,
)
from gateway.config import parse_config
from gateway.errors import ConfigError, DPoPChallenge, InvalidDPoPProof, InvalidToken
from gateway.explain import explain
from gateway.oidc.dpop import PROOF_ALGORITHMS
from gateway.runtime import TrustedProxies
from gateway.web.responses import www_authenticate
from tests.support.dpop import DPoPKey

ALGS = " ".join(PROOF_ALGORITHMS)
CONFIG = """
server: {public_url: "https://api.example.test"}
providers:
  main: {issuer: "https://idp.example.test", client_id: gw, client_secret: s}
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: http://127.0.0.1:9000
    auth: {mode: bearer, provider: main, audience: api%s}
"""


def test_binding_is_read_from_cnf_jkt() -> None:
    assert bound_jkt({"sub": "a"}) is None
    assert bound_jkt({"cnf": {"jkt": "abc"}}) == "abc"


@pytest.mark.parametrize(
    "claims",
    [
        {"cnf": "abc"},
        {"cnf": {"jkt": ""}},
        {"cnf": {"jkt": 7}},
        {"cnf": {"x5t#S256": "certificate-bound"}},  # RFC 8705: not checkable here, never a bearer
        {"token_type": "DPoP"},  # an introspection answer saying "bound" without saying to what
    ],
)
def test_bindings_the_gateway_cannot_check_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        bound_jkt(claims)


def test_replay_marks_outlive_every_acceptable_iat() -> None:
    assert MARK_TTL >= PROOF_WINDOW + 2 * PROOF_LEEWAY


def _error(cls: type[InvalidToken] | type[InvalidDPoPProof], dpop: DPoPChallenge | None) -> Any:
    error = cls()
    error.dpop = dpop
    return error


def test_challenge_carries_the_error_in_the_scheme_used() -> None:
    plain = _error(InvalidToken, DPoPChallenge(PROOF_ALGORITHMS, bearer=True, error_in_dpop=False))
    assert www_authenticate(plain) == (
        'Bearer realm="tokengate", error="invalid_token", error_description="the access token is invalid", '
        f'DPoP realm="tokengate", algs="{ALGS}"'
    )
    proof = _error(InvalidDPoPProof, DPoPChallenge(PROOF_ALGORITHMS, bearer=True, error_in_dpop=True))
    assert www_authenticate(proof) == (
        'Bearer realm="tokengate", DPoP realm="tokengate", error="invalid_dpop_proof", '
        f'error_description="the DPoP proof is invalid", algs="{ALGS}"'
    )
    required = _error(InvalidToken, DPoPChallenge(PROOF_ALGORITHMS, bearer=False, error_in_dpop=False))
    assert www_authenticate(required).startswith('DPoP realm="tokengate", error="invalid_token"')
    assert "Bearer" not in www_authenticate(required)
    assert www_authenticate(_error(InvalidToken, None)).startswith('Bearer realm="tokengate", error=')


def test_config_defaults_to_allowed_and_checks_the_values() -> None:
    cfg = parse_config(CONFIG % "")
    assert cfg.routes[0].auth.dpop == "allowed"
    assert parse_config(CONFIG % ", dpop: required").routes[0].auth.dpop == "required"
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG % ", dpop: sometimes")
    assert "routes[0].auth.dpop" in str(caught.value)


def test_required_dpop_on_a_session_route_is_a_config_error() -> None:
    text = (
        (CONFIG % "").replace("mode: bearer", "mode: session").replace(", audience: api", ", dpop: required")
    )
    text += "sessions: {encryption_key: q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "routes[0].auth.dpop (line 9): applies to bearer routes only" in str(caught.value)


def _runtime(public_url: str | None, trusted: list[str]) -> Any:
    import ipaddress

    server = SimpleNamespace(public_url=public_url)
    proxies = TrustedProxies([ipaddress.ip_network(c) for c in trusted])
    return SimpleNamespace(cfg=SimpleNamespace(server=server), trusted=proxies)


def _target(method: str = "GET", host: str | None = None, proto: str | None = None) -> Any:
    return SimpleNamespace(method=method, host=host, proto=proto, raw_path="/api/a%2Fb")


@pytest.mark.parametrize(
    ("public_url", "trusted", "sent", "match_host", "expected"),
    [
        # public_url names the origin; the client's own Host never overrides it
        ("https://api.example.test", [], {"Host": "evil.test"}, None, "https://api.example.test/api/a%2Fb"),
        # a route matched by host: that (configured) host, public_url's scheme
        ("https://api.example.test", [], {"Host": "shop.test"}, "shop.test", "https://shop.test/api/a%2Fb"),
        # forwarded headers count only from trusted proxies
        (
            "https://api.example.test",
            ["127.0.0.1/32"],
            {"Host": "x", "X-Forwarded-Host": "edge.test", "X-Forwarded-Proto": "https"},
            None,
            "https://edge.test/api/a%2Fb",
        ),
        (
            "https://api.example.test",
            ["10.0.0.0/8"],
            {"Host": "x", "X-Forwarded-Host": "edge.test", "X-Forwarded-Proto": "http"},
            None,
            "https://api.example.test/api/a%2Fb",
        ),
        # neither: the connection's scheme and Host (RFC 9110 §7.1)
        (None, [], {"Host": "127.0.0.1:8080"}, None, "http://127.0.0.1:8080/api/a%2Fb"),
    ],
)
def test_the_url_a_proof_must_name(
    public_url: str | None, trusted: list[str], sent: dict[str, str], match_host: str | None, expected: str
) -> None:
    peer = mock.Mock()
    peer.get_extra_info.return_value = ("127.0.0.1", 50000)  # the request's remote address
    request = make_mocked_request("GET", "/api/a%2Fb?q=1", headers=sent, transport=peer)
    assert request.remote == "127.0.0.1"
    route = SimpleNamespace(match_host=match_host)
    url = target_url(request, _runtime(public_url, trusted), route, _target(), proxied=True)  # type: ignore[arg-type]
    assert url == expected


def test_forward_auth_names_the_original_request() -> None:
    request = make_mocked_request("GET", "/oauth2/auth", headers={"Host": "gateway.internal"})
    route = SimpleNamespace(match_host=None)
    original = _target("DELETE", host="shop.test", proto="https")
    url = target_url(request, _runtime("https://api.example.test", []), route, original, proxied=False)  # type: ignore[arg-type]
    assert url == "https://shop.test/api/a%2Fb"


def test_explain_says_why_a_proof_fails() -> None:
    key = DPoPKey()
    claims = {"cnf": {"jkt": key.jkt}}
    url = "https://api.example.test/api/x"
    now = time.time()
    ok, notes = explain_binding(
        "allowed",
        claims,
        token="tok",
        proof=key.proof("GET", url, token="tok"),
        method="GET",
        url=url,
        now=now,
    )
    assert ok is None
    assert "jti replay is not checked by explain" in notes
    refusal, _ = explain_binding(
        "allowed",
        claims,
        token="tok",
        proof=key.proof("POST", url, token="tok"),
        method="GET",
        url=url,
        now=now,
    )
    assert refusal == "401 invalid_dpop_proof: htm does not match the request method"
    refusal, _ = explain_binding(
        "allowed", claims, token=None, proof=DPoPKey().proof("GET", url), method="GET", url=url, now=now
    )
    assert refusal == "401 invalid_dpop_proof: the proof's key is not the one the token is bound to"
    refusal, _ = explain_binding("allowed", claims, token=None, proof=None, method="GET", url=url, now=now)
    assert refusal is not None
    assert refusal.startswith("401 invalid_token: a key-bound token")
    refusal, _ = explain_binding("required", {}, token=None, proof=None, method="GET", url=url, now=now)
    assert refusal == "401 invalid_token: the route requires DPoP (dpop: required)"
    assert explain_binding("allowed", {}, token=None, proof=None, method="GET", url=url, now=now) == (
        None,
        [],
    )


def test_explain_command_reports_the_dpop_step() -> None:
    cfg = parse_config(CONFIG % "")
    key = DPoPKey()
    claims = {"sub": "alice", "cnf": {"jkt": key.jkt}}
    proof = key.proof("GET", "https://api.example.test/api/x", iat=time.time() - 300)
    result = explain(cfg, "GET", "/api/x", claims=claims, dpop=proof)
    assert not result.allowed
    text = result.render()
    assert f"dpop:        bound to key {key.jkt} (cnf.jkt)" in text
    assert "DENY (401 invalid_dpop_proof: iat outside the accepted window)" in text
    fresh = key.proof("GET", "https://api.example.test/api/x")
    assert explain(cfg, "GET", "/api/x", claims=claims, dpop=fresh).allowed
