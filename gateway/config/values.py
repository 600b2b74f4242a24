"""Value types of the configuration (DESIGN §2): durations (also Go's form), listen addresses, URLs,
keys and the frozen model base; validators only, no I/O."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SecretStr

# One or more <number><unit> terms, as Go's time.ParseDuration writes them (oauth2-proxy and Pomerium
# configs use "1h30m", "250ms"), plus "d" for days; no sign, no bare numbers.
_DURATION_TERM = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h|d))+$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


@dataclass(frozen=True, slots=True)
class TypeName:
    """``Annotated`` metadata: what a value type holds, in words, for the configuration reference
    ("duration", "URL"), where its Python type would only say ``str``. Pydantic ignores it."""

    singular: str
    plural: str


def parse_duration(value: Any) -> timedelta:
    """``500ms``, ``30s``, ``15m``, ``12h``, ``1d``, Go's ``1h30m`` / ``2m0.5s`` -> timedelta.

    Bare numbers are refused: ``30`` could mean seconds or milliseconds, and a guess is worse than an error.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if _DURATION.match(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_TERM.findall(text))
            return timedelta(seconds=seconds)
    raise ValueError(f"expected a duration such as 500ms, 30s, 15m or 12h, got {value!r}")


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(_format_duration, return_type=str),
    TypeName("duration", "durations"),
]


def check_listen(value: str) -> str:
    split_listen(value)
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``0.0.0.0:8080`` / ``[::1]:8080`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {value!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"listen host must be an IP address or localhost, got {host!r}") from None
    return host, int(port_text)


def check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+(/[^\s]*)?$", value) or not _host_and_port_ok(value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value  # unchanged: an issuer must match the provider's spelling exactly (Auth0 ends in "/")


def _host_and_port_ok(value: str) -> bool:
    # "http://[::1", "http://:80" and "http://x:99999" pass the pattern but no HTTP client can use them.
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of range
    except ValueError:
        return False
    return bool(parts.hostname) and port != 0


def cidr_texts(value: Any) -> Any:
    # YAML `[no]` or `[0]` would otherwise become 0.0.0.0/32: a network nobody meant to trust.
    if isinstance(value, list) and any(not isinstance(v, str) for v in value):
        raise ValueError("each entry must be a CIDR written as text, such as 10.0.0.0/8")
    return value


def check_origin(value: str) -> str:
    value = check_http_url(value).rstrip("/")
    if value.count("/") > 2:
        raise ValueError(f"expected an origin without a path (https://app.example.com), got {value!r}")
    return value


def check_encryption_key(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip().rstrip("=").replace("+", "-").replace("/", "_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url text (32 random bytes)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(key)}")
    return value


def check_redis_url(value: str) -> str:
    schemes = (
        "redis://",
        "rediss://",
        "unix://",
        "redis+sentinel://",
        "rediss+sentinel://",
        "redis+cluster://",
        "rediss+cluster://",
    )
    if not value.startswith(schemes):
        raise ValueError("expected a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL")
    return value


def check_prefix(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if any(seg in {".", ".."} for seg in value.split("/")) or "//" in value or "%" in value or "\\" in value:
        raise ValueError("must be a normalised path (no '.', '..', '//', '%' or '\\')")
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url), TypeName("URL", "URLs")]
Origin = Annotated[
    str, AfterValidator(check_origin), TypeName("URL (origin, no path)", "URLs (origins, no path)")
]
Listen = Annotated[str, AfterValidator(check_listen), TypeName("host:port", "host:port pairs")]
RedisUrl = Annotated[str, AfterValidator(check_redis_url), TypeName("Redis URL", "Redis URLs")]
PathPrefix = Annotated[str, AfterValidator(check_prefix), TypeName("path", "paths")]
EncryptionKey = Annotated[
    SecretStr, AfterValidator(check_encryption_key), TypeName("secret: 32-byte key, base64url", "secrets")
]
Cidr = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, TypeName("CIDR", "CIDRs")]
RouteName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Method = Annotated[str, AfterValidator(lambda v: v.upper()), TypeName("HTTP method", "HTTP methods")]


class Model(BaseModel):
    """Frozen, and every unknown key is an error (DESIGN §2)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
