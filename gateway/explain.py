"""``tokengate explain``: why a request would be allowed or refused, without starting the gateway.

It runs the gateway's own pieces (normalisation, the runtime's route table built by ``build_runtime``
and never started, authn's ``decide``, and for a token the provider client) and prints each step, so
its verdict is the gateway's verdict.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp

from gateway.authn.bearer import require_resource
from gateway.authn.decide import decide
from gateway.config.resource import is_reserved_path, metadata_path
from gateway.config.schema import GatewayConfig, RouteConfig
from gateway.errors import (
    GatewayError,
    InsufficientUserAuthentication,
    MethodNotAllowed,
    NotFound,
    PathRejected,
    ProviderUnavailable,
)
from gateway.models import Principal, StepUp
from gateway.oidc import ProviderClient
from gateway.oidc.claims import build_principal
from gateway.policy import RoutePolicy
from gateway.routing import Match, RouteSpec, RouteTable, is_reserved, normalise_path, split_host
from gateway.runtime import CompiledRoute, Runtime, build_runtime
from gateway.runtime.build import route_methods


@dataclass
class Explanation:
    lines: list[str] = field(default_factory=list)
    allowed: bool = False

    def add(self, label: str, text: str) -> None:
        self.lines.append(f"{label + ':':<12} {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"{'':<12} - {text}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal the verifiers would build from these claims (their own code, so that scope and
    ``scp`` parsing cannot differ between explain and the gateway)."""
    return build_principal(dict(claims), "jwt", "", str(claims.get("sub", "")), None)


def _describe_match(route: RouteConfig) -> str:
    match = route.match
    parts = [f"host {match.host or '*'}", f"prefix {match.path_prefix}"]
    parts.append(f"methods {', '.join(match.methods) if match.methods else '*'}")
    return ", ".join(parts)


def _miss_reason(
    cfg: GatewayConfig, route: RouteConfig, host: str | None, path: str, method: str
) -> str | None:
    """Why a route did not take the request (None when it would have, had a better one not won): the
    route alone in a table of its own, asked as the gateway asks its table."""
    alone = RouteTable(
        [RouteSpec(route.name, route.match.path_prefix, route.match.host, route_methods(route))],
        case_insensitive=cfg.server.case_insensitive_paths,
    )
    match = route.match
    try:
        alone.resolve(host, path, method)
    except NotFound:
        if match.host is not None and match.host.lower() != host:
            return f"host is {host or '(none)'}, route wants {match.host}"
        return f"path is not under {match.path_prefix}"
    except MethodNotAllowed:
        return f"method {method} not in {', '.join(route_methods(route) or ())}"
    except PathRejected as exc:
        return exc.detail
    return None


def _policy_requirements(route: RouteConfig, method: str) -> list[str]:
    policy = RoutePolicy.from_config(route.auth)  # what the compiled route holds (CompiledRoute.build)
    parts = []
    scopes = policy.required_scopes(method)
    parts.append("scopes " + (" ".join(scopes) if scopes else "(none)"))
    for name, values in policy.claims.items():
        parts.append(f"claim {name} in [{', '.join(map(str, values))}]")
    if policy.email_domains:
        parts.append("email domain in [" + ", ".join(sorted(policy.email_domains)) + "]")
    if policy.subjects:
        parts.append("sub in [" + ", ".join(sorted(policy.subjects)) + "]")
    if policy.acr_values:
        parts.append("acr in [" + ", ".join(policy.acr_values) + "]")
    if policy.max_age is not None:
        parts.append(f"auth_time within {policy.max_age:g}s")
    return parts


# One function per feature that adds requirements to a route (DPoP, step-up, RFC 9728 resource...):
# each returns its parts of the "requires:" line, in this order.
REQUIREMENTS: tuple[Callable[[RouteConfig, str], list[str]], ...] = (_policy_requirements,)


def _requirements(route: RouteConfig, method: str) -> str:
    return "; ".join(part for describe in REQUIREMENTS for part in describe(route, method))


def _upstream_headers(out: Explanation, cfg: GatewayConfig, route: RouteConfig, principal: Principal) -> bool:
    """The "upstream:" block: identity headers, claim headers and the assertion's claims (DESIGN §4, §8);
    False when a claim cannot be carried (the gateway answers 403 then)."""
    from gateway.runtime.identity import UnsafeClaim, describe

    try:
        headers = describe(cfg, route, principal)
    except UnsafeClaim as exc:
        out.add("verdict", "DENY (403 access_denied)")
        out.note(f"claim header: {exc.detail}")
        return False
    for i, (name, value) in enumerate(headers):
        out.lines.append(f"{'upstream:' if i == 0 else '':<12} {name}: {value}")
    return True


async def verify_token(cfg: GatewayConfig, route: RouteConfig, token: str) -> Principal:
    """Verify a token exactly as the route would (JWKS or introspection at the real provider)."""
    assert route.auth.provider is not None
    needs = frozenset({"jwks" if route.auth.validation == "jwt" else "introspection"})
    async with aiohttp.ClientSession() as http:
        provider = ProviderClient(route.auth.provider, cfg.providers[route.auth.provider], http, needs=needs)
        await provider.start()
        try:
            timeout = cfg.providers[route.auth.provider].timeout.total_seconds() * 2
            if not await provider.wait_ready(timeout):
                raise ProviderUnavailable(detail="provider metadata could not be loaded")
            principal = await provider.verify_access_token(
                token, validation=route.auth.validation, audience=route.auth.audience
            )
            require_resource(principal, route.auth.resource)  # RFC 8707, as the handler checks it
            return principal
        finally:
            await provider.close()


def explain(
    cfg: GatewayConfig,
    method: str,
    url: str,
    *,
    claims: Mapping[str, Any] | None = None,
    token: str | None = None,
    dpop: str | None = None,
) -> Explanation:
    return asyncio.run(_explain(cfg, method, url, claims=claims, token=token, dpop=dpop))


async def _explain(
    cfg: GatewayConfig,
    method: str,
    url: str,
    *,
    claims: Mapping[str, Any] | None,
    token: str | None,
    dpop: str | None,
) -> Explanation:
    # The gateway's own runtime, never started: nothing is fetched, no store is contacted.
    async with aiohttp.ClientSession() as http:
        rt = build_runtime(cfg, http)
        try:
            return await _verdict(rt, method, url, claims=claims, token=token, dpop=dpop)
        finally:
            await rt.close()


async def _verdict(
    rt: Runtime,
    method: str,
    url: str,
    *,
    claims: Mapping[str, Any] | None,
    token: str | None,
    dpop: str | None,
) -> Explanation:
    cfg = rt.cfg
    out = Explanation()
    method = method.upper()
    parts = urlsplit(url if "://" in url else "http://_" + url)
    host = split_host(parts.netloc) if parts.netloc != "_" else None
    out.add("request", f"{method} {url}")
    try:
        path = normalise_path(parts.path or "/")
    except PathRejected as exc:
        out.add("normalised", f"rejected: {exc.detail} (400)")
        out.add("verdict", "DENY (400 invalid_request)")
        return out
    out.add("normalised", path)
    if is_reserved(path):
        if is_reserved_path(path):
            out.add("route", "(the gateway's RFC 9728 protected-resource metadata, never proxied)")
            published = {metadata_path(r.auth.resource) for r in cfg.routes if r.auth.resource}
            out.allowed = path.rstrip("/") in published
            out.add("verdict", "ALLOW (served by the gateway)" if out.allowed else "DENY (404 not_found)")
            return out
        out.add("route", "(the gateway's own /oauth2/ endpoints)")
        out.add("verdict", "ALLOW (served by the gateway)")
        out.allowed = True
        return out
    refusal: GatewayError | None = None
    try:
        found: Match[CompiledRoute] | None = rt.routes.resolve(host, path, method)
    except GatewayError as exc:  # 404, 405 (no method fall-through) or 400 (case-ambiguous path)
        found, refusal = None, exc
    for route in cfg.routes:
        if found is not None and route.name == found.value.name:
            continue
        reason = _miss_reason(cfg, route, host, path, method) or "also matches, but a longer prefix won"
        out.add("not chosen", f"{route.name} ({_describe_match(route)}): {reason}")
    if found is None:
        out.add("route", "none matches" if refusal is None or refusal.status == 404 else refusal.detail)
        code = f"{refusal.status} {refusal.code}" if refusal is not None else "404 not_found"
        out.add("verdict", f"DENY ({code})")
        return out
    compiled = found.value
    route = next(r for r in cfg.routes if r.name == compiled.name)
    target = route.upstream or "no upstream (forward-auth only)"
    out.lines.insert(2, f"{'route:':<12} {route.name} ({_describe_match(route)}) -> {target}")
    auth = route.auth
    if auth.mode == "public":
        out.add("auth", "public: no credentials needed")
        out.add("verdict", "ALLOW")
        out.allowed = True
        return out
    detail = f"{auth.mode}, provider {auth.provider}"
    if auth.uses_bearer:
        detail += f", validate {auth.validation}"
        if auth.audience:
            detail += f", audience {auth.audience}"
        if auth.dpop != "allowed":  # the default is left unsaid
            detail += f", dpop {auth.dpop}"
        if auth.resource:
            detail += f", resource {auth.resource} (aud must hold it too)"
    out.add("auth", detail)
    out.add("requires", _requirements(route, method))
    principal: Principal | None = None
    if token is not None:
        try:
            principal = await verify_token(cfg, route, token)
            out.add("token", f"valid ({auth.validation}): sub {principal.subject}")
        except GatewayError as exc:
            out.add("token", f"refused: {exc.detail or exc.public_message}")
            out.add("verdict", f"DENY ({exc.status} {exc.code or 'unauthorized'})")
            return out
    elif claims is not None:
        principal = principal_from_claims(claims)
        out.add("claims", f"given: sub {principal.subject or '(none)'}")
        try:
            require_resource(principal, auth.resource)
        except GatewayError as exc:
            out.add("verdict", f"DENY ({exc.status} {exc.code}): {exc.detail}")
            return out
    if principal is None:
        out.add("verdict", "DENY (401: no credentials given; pass --claims JSON or --token TOKEN)")
        return out
    if auth.uses_bearer and not _dpop_admits(out, cfg, route, principal, token, dpop, method, parts):
        return out
    decision = decide(compiled, principal, method, now=time.time())  # the handler's own decide
    if decision.allowed:
        if not _upstream_headers(out, cfg, route, principal):
            return out
        out.add("verdict", "ALLOW")
        out.allowed = True
        return out
    if decision.missing_scopes:
        missing = [s for s in decision.missing_scopes if s not in principal.scopes]
        out.add("verdict", "DENY (403 insufficient_scope)")
        out.note("scope: missing " + " ".join(missing))
        return out
    if decision.step_up is not None:
        _explain_step_up(out, decision.step_up, auth.mode)
        return out
    out.add("verdict", "DENY (403 access_denied)")
    for reason in decision.reasons:
        out.note(reason)
    return out


def _dpop_admits(
    out: Explanation,
    cfg: GatewayConfig,
    route: RouteConfig,
    principal: Principal,
    token: str | None,
    proof: str | None,
    method: str,
    parts: SplitResult,
) -> bool:
    """RFC 9449 as the route would apply it (authn.dpop); False after writing the DENY verdict."""
    from gateway.authn.dpop import explain_binding

    if parts.netloc != "_":
        url: str | None = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
    else:
        public_url = cfg.server.public_url
        url = f"{public_url}{parts.path or '/'}" if public_url else None
    refusal, notes = explain_binding(
        route.auth.dpop, principal.claims, token=token, proof=proof, method=method, url=url, now=time.time()
    )
    if notes:
        out.add("dpop", notes[0])
    for note in notes[1:]:
        out.note(note)
    if refusal is None:
        return True
    out.add("verdict", f"DENY ({refusal})")
    return False


def _explain_step_up(out: Explanation, step_up: StepUp, mode: str) -> None:
    """RFC 9470: what a bearer caller is told, or what a browser's new login asks the provider for."""
    challenge = InsufficientUserAuthentication(acr_values=step_up.acr_values, max_age=step_up.max_age)
    asked = ", ".join(challenge.challenge_params)
    if step_up.reason == "acr":
        why = "acr: not one of " + " ".join(step_up.acr_values)
    else:
        why = f"auth_time: missing or older than {step_up.max_age}s"
    if mode == "session":
        out.add("verdict", "DENY (step-up: the browser signs in again)")
        out.note(why)
        out.note(f"the login asks for {asked}")
        return
    out.add("verdict", "DENY (401 insufficient_user_authentication)")
    out.note(why)
    out.note(f"challenge: {asked}")


def parse_claims(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("--claims must be a JSON object")
    return value
