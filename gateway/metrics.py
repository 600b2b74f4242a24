"""Every Prometheus metric the gateway exports (issue 5), defined once; labels are bounded sets only.

Route names, status classes, outcomes and reason classes: never paths, users or token values.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

_M = TypeVar("_M", bound=MetricWrapperBase)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "tokengate_requests_total", "Requests answered, by route and status class.", ["route", "status_class"]
)
REQUEST_DURATION = Histogram(
    "tokengate_request_duration_seconds",
    "Time from request to answer headers.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "tokengate_upstream_duration_seconds",
    "Time the upstream took to answer with headers.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("tokengate_in_flight_requests", "Requests being served now.", multiprocess_mode="livesum")
AUTH_DECISIONS = Counter(
    "tokengate_auth_decisions_total",
    "Authentication and authorisation outcomes.",
    ["route", "outcome", "reason"],
)
INTROSPECTION_CALLS = Counter(
    "tokengate_introspection_requests_total",
    "Calls to introspection endpoints, by outcome.",
    ["provider", "outcome"],
)
INTROSPECTION_CACHE = Counter(
    "tokengate_introspection_cache_total",
    "Introspection cache lookups, by layer and result.",
    ["provider", "layer", "result"],
)
JWKS_FETCHES = Counter("tokengate_jwks_fetches_total", "JWKS downloads, by outcome.", ["provider", "outcome"])
TOKEN_REFRESHES = Counter(
    "tokengate_token_refreshes_total",
    "Access-token refreshes with a refresh token, by outcome.",
    ["provider", "outcome"],
)
LOGINS = Counter("tokengate_logins_total", "Completed or failed logins, by outcome.", ["provider", "outcome"])
LOGOUTS = Counter("tokengate_logouts_total", "Logouts.", ["provider"])
REDIS_ERRORS = Counter(
    "tokengate_redis_errors_total", "Failed Redis operations, by operation.", ["operation"]
)
CONFIG_RELOADS = Counter("tokengate_config_reloads_total", "Configuration reloads, by outcome.", ["outcome"])


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: _M, *labels: str) -> _M:
    """``metric.labels(*labels)``, bound once: the label lookup (a lock and a tuple per call in
    prometheus-client) is off the per-request path. Label sets are bounded, so is this cache."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found
