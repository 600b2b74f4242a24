"""The gateway's exception tree; every error knows the answer it becomes.

    GatewayError                     500 server_error
    ├── BadRequest                   400 invalid_request     (malformed path, header, query)
    │   └── PathRejected             400 invalid_request     (path that cannot be normalised safely)
    ├── NotFound                     404 not_found
    ├── MethodNotAllowed             405 method_not_allowed  (+ Allow)
    ├── PayloadTooLarge              413 payload_too_large
    ├── RequestTimeout               408 request_timeout     (request body stalled: DESIGN §7)
    ├── AuthError                    (RFC 6750 §3, RFC 9449 §7.1; carry WWW-Authenticate)
    │   ├── MissingCredentials       401 (no error code: RFC 6750 §3.1)
    │   ├── InvalidRequest           400 invalid_request
    │   ├── InvalidToken             401 invalid_token
    │   │   ├── DPoPRequired         401 invalid_token       (plain or unproven token where DPoP is due)
    │   │   └── DPoPNotAccepted      401 invalid_token       (DPoP on a `dpop: off` route)
    │   ├── InvalidDPoPProof         401 invalid_dpop_proof  (RFC 9449 §7.1; from oidc.dpop.DPoPError)
    │   ├── InsufficientScope        403 insufficient_scope
    │   └── InsufficientUserAuthentication
    │                                401 insufficient_user_authentication (RFC 9470 §3: + acr_values,
    │                                    max_age in the challenge)
    ├── LoginRequired                401 login_required      (session routes; navigations get a 302)
    │   └── StepUpRequired           401 insufficient_user_authentication (a session too weak or too
    │                                    old for the route: log in again, RFC 9470 for browsers)
    ├── AccessDenied                 403 access_denied       (claim rules)
    ├── LoginFailed                  400 login_failed        (callback problems: state, provider error)
    │   └── StepUpNotMet             403 insufficient_user_authentication (the new ID token still lacks
    │                                    the acr / auth_time the login asked for: no session upgrade)
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


@dataclass(frozen=True, slots=True)
class DPoPChallenge:
    """How a refusal on a DPoP-accepting route is challenged (RFC 9449 §7.1, §7.2): the proof
    algorithms offered, whether a Bearer challenge stands beside it, and which scheme carries the error
    (the one the client used, or DPoP when bearer is not allowed)."""

    algs: tuple[str, ...]
    bearer: bool
    error_in_dpop: bool


class AuthError(GatewayError):
    """An RFC 6750 §3 error: the answer carries ``WWW-Authenticate: Bearer ...``."""

    status = 401
    code = "invalid_token"
    realm = "tokengate"
    challenge_params: tuple[str, ...] = ()  # further auth-params, already formatted (RFC 9470 §3)

    def __init__(self, message: str | None = None, *, detail: str = "", scope: Sequence[str] = ()) -> None:
        super().__init__(message, detail=detail)
        self.scope = tuple(scope)
        # Set on routes that accept DPoP (RFC 9449 §7.1): the challenge then offers the DPoP scheme.
        self.dpop: DPoPChallenge | None = None
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


class DPoPRequired(InvalidToken):
    message = "this access token must be sent with the DPoP scheme and a DPoP proof"


class DPoPNotAccepted(InvalidToken):
    message = "this resource does not accept DPoP"


class InvalidDPoPProof(AuthError):
    """RFC 9449 §7.1 / §12.2: the proof is missing, malformed or fails a check of §4.3."""

    code = "invalid_dpop_proof"
    message = "the DPoP proof is invalid"


class InsufficientScope(AuthError):
    status = 403
    code = "insufficient_scope"
    message = "the access token lacks a required scope"


class InsufficientUserAuthentication(AuthError):
    """RFC 9470 §3: the token is valid, but its authentication (``acr``, ``auth_time``) is not strong or
    recent enough; the challenge tells the client what to ask the authorization server for."""

    code = "insufficient_user_authentication"
    message = "a different authentication level is required"

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str = "",
        acr_values: Sequence[str] = (),
        max_age: int | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.acr_values = tuple(acr_values)
        self.max_age = max_age
        params = []
        if self.acr_values:
            params.append(f'acr_values="{" ".join(self.acr_values)}"')  # config forbids spaces and quotes
        if max_age is not None:
            params.append(f"max_age={int(max_age)}")
        self.challenge_params = tuple(params)


class LoginRequired(GatewayError):
    status = 401
    code = "login_required"
    message = "a login session is required"
    login_url = ""  # set for a session route on another host: public_url's login (DESIGN §8)
    resource_metadata: str | None = None  # bearer_or_session routes with auth.resource (RFC 9728 §5.1)
    return_to = ""  # the refused request's normalised path and raw query: where the login sends back


class StepUpRequired(LoginRequired):
    """The session's login is not strong or recent enough for this route: log in again (the login
    reads the route's ``require.acr`` / ``require.max_age`` itself, so nothing rides in the URL)."""

    code = "insufficient_user_authentication"
    message = "a stronger or more recent sign-in is required"


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


class StepUpNotMet(LoginFailed):
    """The provider answered a step-up login with an ID token whose ``acr`` / ``auth_time`` still do not
    meet what the login asked for (it ignored ``acr_values``): refused before any session changes, so
    the browser is not sent round again (acr_values is only a request, OIDC Core §3.1.2.1: checking
    the result is the client's job)."""

    status = 403
    code = "insufficient_user_authentication"
    message = "The identity provider did not confirm the stronger or more recent sign-in this page needs."

    def __init__(self, message: str | None = None, *, detail: str = "", rd: str = "/") -> None:
        super().__init__(message, detail=detail)
        self.rd = rd


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
