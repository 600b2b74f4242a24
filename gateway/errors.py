"""The gateway's exception tree; every error knows the answer it becomes.

    GatewayError                     500 server_error
    ├── BadRequest                   400 invalid_request     (malformed path, header, query)
    │   └── PathRejected             400 invalid_request     (path that cannot be normalised safely)
    ├── NotFound                     404 not_found
    ├── MethodNotAllowed             405 method_not_allowed  (+ Allow)
    ├── PayloadTooLarge              413 payload_too_large
    ├── RequestTimeout               408 request_timeout     (request body stalled: DESIGN §7)
    ├── AuthError                    (RFC 6750 §3 errors; carry WWW-Authenticate)
    │   ├── MissingCredentials       401 (no error code: RFC 6750 §3.1)
    │   ├── InvalidRequest           400 invalid_request
    │   ├── InvalidToken             401 invalid_token
    │   └── InsufficientScope        403 insufficient_scope
    ├── LoginRequired                401 login_required      (session routes; navigations get a 302)
    ├── AccessDenied                 403 access_denied       (claim rules)
    ├── LoginFailed                  400 login_failed        (callback problems: state, provider error)
    ├── DependencyUnavailable        503 temporarily_unavailable (+ Retry-After)
    │   ├── ProviderUnavailable      the authorization server, its JWKS or metadata
    │   └── SessionStoreUnavailable  Redis
    ├── UpstreamUnavailable          502 bad_gateway
    └── UpstreamTimeout              504 gateway_timeout

Each instance carries a public message (shown) and a private detail (logged, never shown). Foreign
exceptions are translated where they are caught, with ``raise ... from exc``. ConfigError is apart:
it never reaches a client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    status: int = 500
    code: str = "server_error"
    message: str = "internal error"

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        self.public_message = message or self.message
        self.detail = detail
        super().__init__(self.public_message if not detail else f"{self.public_message}: {detail}")


class BadRequest(GatewayError):
    status = 400
    code = "invalid_request"
    message = "the request is malformed"


class PathRejected(BadRequest):
    message = "the request path is not acceptable"


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    message = "no route matches this request"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"
    message = "this endpoint does not take that method"

    def __init__(self, message: str | None = None, *, detail: str = "", allowed: Sequence[str] = ()) -> None:
        super().__init__(message, detail=detail)
        self.allowed = tuple(allowed)


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"
    message = "the request body is too large"


class RequestTimeout(GatewayError, TimeoutError):
    """The client stalled its request body past ``server.body_timeout``. Also a TimeoutError, so
    aiohttp's lingering read after the answer treats it as the timeout it is and closes the connection."""

    status = 408
    code = "request_timeout"
    message = "the request body did not arrive in time"


class AuthError(GatewayError):
    """An RFC 6750 §3 error: the answer carries ``WWW-Authenticate: Bearer ...``."""

    status = 401
    code = "invalid_token"
    realm = "tokengate"

    def __init__(self, message: str | None = None, *, detail: str = "", scope: Sequence[str] = ()) -> None:
        super().__init__(message, detail=detail)
        self.scope = tuple(scope)
        self.resource_metadata: str | None = None  # RFC 9728 §5.1: set on routes with auth.resource


class MissingCredentials(AuthError):
    # RFC 6750 §3.1: no error code when the request carried no authentication at all.
    code = ""
    message = "authentication is required"


class InvalidRequest(AuthError):
    status = 400
    code = "invalid_request"
    message = "the request carries a malformed or misplaced token"


class InvalidToken(AuthError):
    code = "invalid_token"
    message = "the access token is invalid"


class InsufficientScope(AuthError):
    status = 403
    code = "insufficient_scope"
    message = "the access token lacks a required scope"


class LoginRequired(GatewayError):
    status = 401
    code = "login_required"
    message = "a login session is required"
    login_url = ""  # set for a session route on another host: public_url's login (DESIGN §8)
    resource_metadata: str | None = None  # bearer_or_session routes with auth.resource (RFC 9728 §5.1)


class AccessDenied(GatewayError):
    status = 403
    code = "access_denied"
    message = "access to this resource is denied"

    def __init__(self, message: str | None = None, *, detail: str = "", reasons: Sequence[str] = ()) -> None:
        super().__init__(message, detail=detail)
        self.reasons = tuple(reasons)


class LoginFailed(GatewayError):
    status = 400
    code = "login_failed"
    message = "the login could not be completed"


class DependencyUnavailable(GatewayError):
    status = 503
    code = "temporarily_unavailable"
    message = "a service the gateway depends on is unavailable"
    retry_after = 5


class ProviderUnavailable(DependencyUnavailable):
    message = "the authorization server is unavailable"


class SessionStoreUnavailable(DependencyUnavailable):
    message = "the session store is unavailable"


class UpstreamUnavailable(GatewayError):
    status = 502
    code = "bad_gateway"
    message = "the upstream service is unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    code = "gateway_timeout"
    message = "the upstream service did not answer in time"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration file: where (``routes[2].auth.scopes``, line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path or '<root>'}"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))
