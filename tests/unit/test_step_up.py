"""RFC 9470 step-up: acr and auth_time against a route's require.acr / require.max_age (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import StepUp, step_up_needed

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
