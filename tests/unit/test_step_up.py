"""RFC 9470 step-up: acr and auth_time against a route's require.acr / require.max_age, the decision, the
config errors, the challenge, the login parameters and the pending login record (no sockets)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from gateway.authn.step_up import LoginStepUp, authentication_claims, refusal
from gateway.config import parse_config
from gateway.config.schema import ProviderConfig
from gateway.errors import ConfigError, InsufficientUserAuthentication, LoginRequired, StepUpRequired
from gateway.explain import explain
from gateway.models import Principal
from gateway.oidc.grant import Grants
from gateway.oidc.metadata import ProviderMetadata
from gateway.policy import RoutePolicy, StepUp, evaluate, step_up_needed
from gateway.sessions import LoginState
from gateway.sessions.layout import decode_login, encode_login
from gateway.web.responses import www_authenticate

NOW = 1_800_000_000.0
MFA = ("phr", "urn:example:mfa")


@pytest.mark.parametrize(
    ("claims", "acr", "max_age", "expected"),
    [
        ({"acr": "phr"}, MFA, None, None),
        ({"acr": "urn:example:mfa", "auth_time": NOW - 60}, MFA, 900, None),
        ({}, (), None, None),
        ({"acr": "pwd"}, MFA, None, StepUp(MFA, None, "acr")),
        ({}, MFA, 900, StepUp(MFA, 900, "acr")),
        ({"acr": ["phr"]}, MFA, None, StepUp(MFA, None, "acr")),  # acr is one string (OIDC Core §2)
        ({"acr": "phr", "auth_time": NOW - 901}, MFA, 900, StepUp(MFA, 900, "max_age")),
        ({"auth_time": NOW - 10}, (), 900, None),
        ({}, (), 900, StepUp((), 900, "max_age")),  # no auth_time: freshness cannot be shown
        ({"auth_time": "yesterday"}, (), 900, StepUp((), 900, "max_age")),
        ({"auth_time": True}, (), 900, StepUp((), 900, "max_age")),
    ],
)
def test_step_up(
    claims: dict[str, Any], acr: tuple[str, ...], max_age: int | None, expected: StepUp | None
) -> None:
    assert step_up_needed(claims, acr, max_age, NOW) == expected


# ---- the decision: where step-up sits among the rules -----------------------------------------------


def _principal(claims: dict[str, Any], source: str = "jwt") -> Principal:
    return Principal(subject="alice", source=source, scopes=frozenset({"api:read"}), claims=claims)  # type: ignore[arg-type]


def test_evaluate_reports_step_up_after_the_other_rules() -> None:
    policy = RoutePolicy(scopes=("api:read",), acr_values=MFA, max_age=900)
    weak = evaluate(policy, _principal({"acr": "pwd", "auth_time": NOW}), "GET", now=NOW)
    assert not weak.allowed
    assert weak.step_up == StepUp(MFA, 900, "acr")
    assert weak.reasons == ("step_up:acr",)
    assert weak.reason_class == "insufficient_user_authentication"
    old = evaluate(policy, _principal({"acr": "phr", "auth_time": NOW - 901}), "GET", now=NOW)
    assert old.step_up == StepUp(MFA, 900, "max_age")
    assert evaluate(policy, _principal({"acr": "phr", "auth_time": NOW - 60}), "GET", now=NOW).allowed
    # a missing scope or a failed claim rule wins: stepping up would not help
    scoped = RoutePolicy(scopes=("api:write",), acr_values=MFA)
    assert evaluate(scoped, _principal({}), "GET", now=NOW).missing_scopes == ("api:write",)
    ruled = RoutePolicy(claims={"groups": ("admins",)}, acr_values=MFA)
    denied = evaluate(ruled, _principal({"acr": "pwd"}), "GET", now=NOW)
    assert denied.step_up is None
    assert denied.reasons == ("claim:groups",)


def test_max_age_counts_whole_seconds() -> None:
    # oidc-provider compares floor(now) - auth_time > max_age; a fraction of a second never refuses
    assert step_up_needed({"auth_time": NOW - 900}, (), 900, NOW + 0.9) is None
    assert step_up_needed({"auth_time": NOW - 900}, (), 900, NOW + 1.0) == StepUp((), 900, "max_age")


def test_policy_from_config_compiles_acr_and_max_age() -> None:
    cfg = parse_config(yaml.safe_dump(_config({"acr": ["phr", "urn:example:mfa"], "max_age": "15m"})), env={})
    policy = RoutePolicy.from_config(cfg.routes[0].auth)
    assert policy.acr_values == MFA
    assert policy.max_age == 900
    assert policy.has_step_up


# ---- config: YAML paths ---------------------------------------------------------------------------------


def _config(require: dict[str, Any], mode: str = "bearer", scopes: list[str] | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"mode": mode, "provider": "main", "require": require}
    if mode != "session":
        auth["audience"] = "api"
    return {
        "server": {"public_url": "https://app.example.com"},
        "providers": {
            "main": {
                "issuer": "https://idp.example.com",
                "client_id": "gw",
                "client_secret": "s",
                "scopes": scopes or ["openid"],
            }
        },
        "sessions": {"encryption_key": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"},
        "routes": [
            {"name": "r", "match": {"path_prefix": "/"}, "upstream": "http://127.0.0.1:1", "auth": auth}
        ],
    }


def _problems(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(cfg), env={})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("require", "path", "words"),
    [
        ({"acr": ["two words"]}, "routes[0].auth.require.acr[0]", "without spaces"),
        ({"acr": ['quo"te']}, "routes[0].auth.require.acr[0]", "quotes"),
        ({"acr": [""]}, "routes[0].auth.require.acr[0]", "printable"),
        ({"acr": "mfa"}, "routes[0].auth.require.acr", "list"),
        ({"max_age": "1500ms"}, "routes[0].auth.require.max_age", "whole number of seconds"),
        ({"max_age": "0s"}, "routes[0].auth.require.max_age", "at least 1s"),
        ({"max_age": 900}, "routes[0].auth.require.max_age", "duration"),
        ({"max_agee": "15m"}, "routes[0].auth.require.max_agee", ""),
    ],
)
def test_bad_step_up_config_names_its_yaml_path(require: dict[str, Any], path: str, words: str) -> None:
    found = _problems(_config(require))
    assert any(p.startswith(path) and words in p for p in found), found


def test_step_up_on_a_session_route_needs_openid() -> None:
    found = _problems(_config({"acr": ["mfa"]}, mode="session", scopes=["profile"]))
    assert any(p.startswith("routes[0].auth.require ") and "OpenID Connect" in p for p in found), found
    parse_config(yaml.safe_dump(_config({"acr": ["mfa"]}, mode="bearer", scopes=["profile"])), env={})


def test_step_up_on_a_public_route_is_refused() -> None:
    cfg = _config({"max_age": "15m"})
    cfg["routes"][0]["auth"] = {"mode": "public", "require": {"max_age": "15m"}}
    assert any(p.startswith("routes[0].auth ") for p in _problems(cfg))


# ---- the challenge, the login parameters, the ID token's claims -----------------------------------------


def test_challenge_carries_acr_values_and_max_age() -> None:
    error = InsufficientUserAuthentication(acr_values=MFA, max_age=900)
    assert www_authenticate(error) == (
        'Bearer realm="tokengate", error="insufficient_user_authentication", '
        'error_description="a different authentication level is required", '
        'acr_values="phr urn:example:mfa", max_age=900'
    )
    assert error.status == 401


def test_refusal_is_a_challenge_for_tokens_and_a_login_for_sessions() -> None:
    step = StepUp(MFA, None, "acr")
    assert isinstance(refusal(step, _principal({})), InsufficientUserAuthentication)
    session = refusal(step, _principal({}, source="session"))
    assert isinstance(session, StepUpRequired)
    assert isinstance(session, LoginRequired)  # so navigations get the login redirect of DESIGN §5


def test_authentication_claims_keep_only_well_formed_values() -> None:
    assert authentication_claims({"acr": "mfa", "auth_time": NOW, "amr": ["pwd", "otp"], "sub": "a"}) == {
        "acr": "mfa",
        "auth_time": NOW,
        "amr": ["pwd", "otp"],
    }
    assert authentication_claims({"acr": ["mfa"], "auth_time": True, "amr": "pwd"}) == {}
    assert authentication_claims({"auth_time": float("nan")}) == {}


def test_login_params() -> None:
    assert LoginStepUp(MFA, 900, True).params() == {
        "acr_values": "phr urn:example:mfa",
        "max_age": "900",
        "prompt": "login",
    }
    assert LoginStepUp((), None, False).params() == {}


def _grants(extra: dict[str, str]) -> Grants:
    cfg = ProviderConfig.model_validate(
        {
            "issuer": "https://idp.example.com",
            "client_id": "gw",
            "client_secret": "s",
            "extra_auth_params": extra,
        }
    )
    metadata = ProviderMetadata(
        issuer="https://idp.example.com", authorization="https://idp.example.com/auth"
    )
    return Grants("main", cfg, None, lambda: metadata, lambda: NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configured", "expected"),
    [({}, "login"), ({"prompt": "consent"}, "consent login"), ({"prompt": "none"}, "login")],
)
def test_step_up_prompt_joins_the_configured_one(configured: dict[str, str], expected: str) -> None:
    url = _grants(configured).authorization_url(
        redirect_uri="https://app/cb",
        state="s",
        code_verifier="v" * 64,
        nonce="n",
        login_params={"prompt": "login", "acr_values": "mfa", "state": "forged"},
    )
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == [expected]
    assert query["acr_values"] == ["mfa"]
    assert query["state"] == ["s"]  # the gateway's own parameters cannot be replaced


def test_login_record_keeps_what_was_asked() -> None:
    state = LoginState("st", "v" * 64, "n", "/mfa", "main", NOW, "b", acr_values=MFA, max_age=900)
    assert decode_login(encode_login(state)) == state
    old = json.loads(encode_login(LoginState("st", "v", "n", "/", "main", NOW, "b")))
    del old["acr_values"], old["max_age"]  # a record written before step-up existed
    assert decode_login(json.dumps(old).encode()) == LoginState("st", "v", "n", "/", "main", NOW, "b")


def test_explain_names_the_step_up() -> None:
    cfg = parse_config(yaml.safe_dump(_config({"acr": ["phr", "urn:example:mfa"], "max_age": "15m"})), env={})
    weak = explain(cfg, "GET", "/x", claims={"sub": "alice", "acr": "pwd"})
    text = weak.render()
    assert not weak.allowed
    assert "requires:    scopes (none); acr in [phr, urn:example:mfa]; auth_time within 900s" in text
    assert "DENY (401 insufficient_user_authentication)" in text
    assert "- acr: not one of phr urn:example:mfa" in text
    assert '- challenge: acr_values="phr urn:example:mfa", max_age=900' in text
    fresh = explain(cfg, "GET", "/x", claims={"sub": "alice", "acr": "phr", "auth_time": int(time.time())})
    assert fresh.allowed
    browser = parse_config(yaml.safe_dump(_config({"acr": ["phr"]}, mode="session")), env={})
    text = explain(browser, "GET", "/x", claims={"sub": "alice"}).render()
    assert "DENY (step-up: the browser signs in again)" in text
    assert '- the login asks for acr_values="phr"' in text
