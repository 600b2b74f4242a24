"""Fixtures shared by every tier; the real peers live in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.idp",
    "tests.fixtures.gateway",
    "tests.fixtures.login",
    "tests.support.tls",
]
