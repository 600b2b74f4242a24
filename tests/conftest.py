"""Fixtures shared by every tier; the real peers live in tests/fixtures/. Hypothesis profiles: "default"
(300 examples per property, in `make test`) and "fuzz" (20000, `make fuzz`), chosen by HYPOTHESIS_PROFILE."""

import os

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
