"""Fixtures shared by every tier; the real peers live in tests/fixtures/. Hypothesis profiles: "default"
(300 examples per property, in `make test`) and "fuzz" (20000, `make fuzz`), chosen by HYPOTHESIS_PROFILE."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.idp",
    "tests.fixtures.gateway",
    "tests.fixtures.login",
]

settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile(
    "fuzz", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
