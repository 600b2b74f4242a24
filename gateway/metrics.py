"""Every Prometheus metric the gateway exports (issues 5 and 13), defined once; labels are bounded sets only.

Route names from the config, status codes, known methods, outcomes and reason codes: never paths,
users or token values.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase

from gateway import __version__

# Several workers (multiprocess mode): every update of a value calls its process identifier, by
# default os.getpid(), a syscall (glibc no longer caches it), to notice a fork; a request makes 7
# updates. The pid is remembered instead and renewed in a forked child (prometheus-client's
# documented MultiProcessValue(process_identifier) hook). Set before any metric below exists.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
if getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue(lambda: _pid[0])  # type: ignore[no-untyped-call]

_M = TypeVar("_M", bound=MetricWrapperBase)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Methods outside this set are counted as "other": a client cannot mint label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

REQUESTS = Counter(
    "tokengate_requests_total",
    "Requests answered, by route name, method and HTTP status code (499: the client went away).",
    ["route", "method", "code"],
)
REQUEST_DURATION = Histogram(
    "tokengate_request_duration_seconds",
    "Seconds from a request's headers being read to the last byte of its answer being written: "
    "authentication, authorisation, the upstream's time and the body relay included.",
    ["route", "method", "code"],
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
BUILD_INFO = Gauge(
    "tokengate_build_info",
    "Always 1; the version label says which tokengate is running.",
    ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(__version__).set(1)


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


_children: dict[tuple[int, tuple[str, ...]], Any] = {}
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_upstream_children: dict[str, Histogram] = {}


def child(metric: _M, *labels: str) -> _M:
    """``metric.labels(*labels)``, bound once: the label lookup (a lock and a tuple per call in
    prometheus-client) is off the per-request path. Label sets are bounded, so is this cache."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def observe_request(
    route: str, method: str, status: int, seconds: float, upstream_seconds: float | None
) -> None:
    """One answered request: ``tokengate_requests_total``, its duration and (when it reached the
    upstream) the upstream's. One dict lookup finds both children of (route, method, status)."""
    label = method_label(method)  # before the cache key: a client's invented methods add no entries
    key = (route, label, status)
    found = _request_children.get(key)
    if found is None:
        labels = (route, label, str(status))
        found = _request_children[key] = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(*labels))
    found[0].inc()
    found[1].observe(seconds)
    if upstream_seconds is not None:
        upstream = _upstream_children.get(route)
        if upstream is None:
            upstream = _upstream_children[route] = UPSTREAM_DURATION.labels(route)
        upstream.observe(upstream_seconds)
