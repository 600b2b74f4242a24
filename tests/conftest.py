"""Fixtures shared by every tier (the real peers live in tests/fixtures/ and devtools/), the markers a
developer filters by (`-m unit`, `-m "not slow"`), and the Hypothesis profiles: "default" (300 examples per
property, in `make test`) and "fuzz" (20000, `make fuzz`), chosen by HYPOTHESIS_PROFILE."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.idp",
    "tests.fixtures.gateway",
    "tests.fixtures.login",
    "tests.support.tls",
]

# Property tests: "default" runs in `make test` (hundreds of examples, seconds per test); "fuzz" is the
# long run (`HYPOTHESIS_PROFILE=fuzz`, `make fuzz`). No deadline: the machine is shared, and timing is
# never asserted (tests assert no upper time bounds). Tests that fix max_examples themselves keep it.
# derandomize: `make test` (and CI) explore the same examples every run, so a red build is never luck;
# `make fuzz` keeps exploring new ones.
settings.register_profile("default", max_examples=300, deadline=None, derandomize=True)
settings.register_profile(
    "fuzz", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# ---- markers ---------------------------------------------------------------------------------------------

TESTS = Path(__file__).resolve().parent
#: Tier directory -> marker. Every other tier (functional, integration, faults, security) runs the gateway
#: against real peers on loopback: "integration".
TIER_MARKERS = {"unit": "unit", "e2e": "e2e"}
#: The slowest tests of a full run (`pytest --durations=40`, on the shared 2-core machine), all their
#: parameters included: `-m "not slow"` leaves them out. Refresh the list from a new --durations run.
SLOW = frozenset(
    {
        "security/test_open_redirect.py::test_the_sign_in_failure_page_links_only_to_this_gateway",
        "security/test_open_redirect.py::test_the_callback_location_stays_on_the_origin",
        "unit/test_forward_auth_headers.py::test_parser_yields_one_normal_request_or_refuses",
        "unit/test_redirects.py::test_random_rd_never_leaves_the_allowed_hosts",
        "functional/test_explain.py::test_explain_with_a_real_token",
        "functional/test_cli.py::test_explain_exit_codes",
        "functional/test_lifecycle.py::test_crashing_workers_are_restarted_with_backoff",
        "security/test_parser_fuzz.py::test_fuzz_upstream_headers_carry_no_gateway_cookie",
        "security/test_parser_fuzz.py::test_fuzz_cookie_header_and_session_id",
        "integration/test_bearer.py::test_key_rotation_fetches_the_new_kid",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its tier directory, and the slowest ones ``slow``."""
    for item in items:
        relative = Path(item.path).resolve().relative_to(TESTS)
        item.add_marker(TIER_MARKERS.get(relative.parts[0], "integration"))
        name = getattr(item, "originalname", item.name)
        if f"{relative.as_posix()}::{name}" in SLOW:
            item.add_marker("slow")
