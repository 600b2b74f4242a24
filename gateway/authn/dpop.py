"""DPoP at the resource server (RFC 9449 §7): the ``DPoP`` authorization scheme, the URL a proof must
name, and the per-request proof check of key-bound tokens. It runs after the token is verified or found
in a cache, so no verified-token cache ever lets a bound token skip its proof (a proof is per request).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.authn.facts import Connection
from gateway.errors import (
    DPoPChallenge,
    DPoPNotAccepted,
    DPoPRequired,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
)
from gateway.models import Principal
from gateway.oidc.dpop import PROOF_ALGORITHMS, DPoPError, verify_proof
from gateway.runtime import CompiledRoute, Runtime
from gateway.sessions.replay import first_use

# RFC 9449 §7.1: token68 (RFC 9110 §11.2), the same alphabet as RFC 6750's b64token.
_TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
PROOF_WINDOW = 60.0  # DESIGN §8: iat within 60 s
PROOF_LEEWAY = 5.0  # clock skew, either way
# A proof is acceptable while now - window - leeway <= iat <= now + leeway, so a jti must be remembered
# for the whole span a proof with that iat could be accepted (§11.1).
MARK_TTL = PROOF_WINDOW + 2 * PROOF_LEEWAY


def _scheme(values: Sequence[str]) -> tuple[str, str]:
    scheme, _, rest = values[0].strip().partition(" ") if len(values) == 1 else ("", "", "")
    return scheme.lower(), rest.strip()


def uses_dpop_scheme(values: Sequence[str]) -> bool:
    """Whether the request's one Authorization header uses the DPoP scheme."""
    return _scheme(values)[0] == "dpop"


def dpop_token(route: CompiledRoute, values: Sequence[str]) -> str | None:
    """The access token of ``Authorization: DPoP <token>`` (§7.1); None for any other scheme (more than
    one Authorization header is left to the bearer parser, which refuses it)."""
    scheme, token = _scheme(values)
    if scheme != "dpop":
        return None
    if route.dpop == "off":
        raise DPoPNotAccepted(detail="DPoP scheme on a dpop: off route")
    if not token or not _TOKEN68.match(token):
        raise InvalidRequest(detail="malformed DPoP access token")
    return token


def bound_jkt(claims: Mapping[str, Any]) -> str | None:
    """The RFC 7638 thumbprint the token is bound to (``cnf.jkt``, §6.1 for JWTs, §6.2 for
    introspection), or None for an unbound token. A confirmation the gateway cannot check (an mTLS
    ``x5t#S256``, RFC 8705) is refused rather than ignored: ignoring it would make the token a bearer."""
    cnf = claims.get("cnf")
    if cnf is None:
        token_type = claims.get("token_type")  # an introspection answer (§6.2)
        if isinstance(token_type, str) and token_type.lower() == "dpop":
            raise InvalidToken(detail="a DPoP token without cnf.jkt")
        return None
    if not isinstance(cnf, Mapping):
        raise InvalidToken(detail="malformed cnf")
    jkt = cnf.get("jkt")
    if jkt is None:
        raise InvalidToken(detail="bound by a confirmation method the gateway cannot check")
    if not isinstance(jkt, str) or not jkt:
        raise InvalidToken(detail="malformed cnf.jkt")
    return jkt


def _one(request: Connection, name: str) -> str | None:
    values = request.headers.getall(name, ())
    return values[0].strip() if len(values) == 1 else None


class Target(Protocol):
    """The request a proof must name (authn.facts.Original)."""

    @property
    def method(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def proto(self) -> str | None: ...
    @property
    def raw_path(self) -> str: ...


def target_url(
    request: Connection, rt: Runtime, route: CompiledRoute, target: Target, *, proxied: bool
) -> str:
    """The URL the client addressed, without query and fragment (§4.3 item 9). Forward-auth: the
    original request the proxy describes. Proxied: X-Forwarded-Proto/-Host from trusted_proxies; else
    public_url's scheme and host, or the request's Host on a route that matches by host (DESIGN §8
    several hosts: the Host then named a configured host); without public_url, the connection's scheme
    and Host (RFC 9110 §7.1). A client's own Host never overrides a configured origin."""
    public_url = rt.cfg.server.public_url
    public = urlsplit(public_url) if public_url else None
    proto, host = target.proto, target.host
    if proxied:
        proto = host = None
        if rt.trusted and rt.trusted.contains(request.remote):
            proto, host = _one(request, "X-Forwarded-Proto"), _one(request, "X-Forwarded-Host")
        if host is None:
            asked = request.headers.get("Host")
            host = public.netloc if public is not None and route.match_host is None else asked
    if proto is None:
        proto = public.scheme if public is not None else ("https" if request.secure else "http")
    if not host:
        raise InvalidDPoPProof(detail="the request names no host to check htu against")
    return f"{proto}://{host}{target.raw_path or '/'}"


def check_plain(route: CompiledRoute, principal: Principal) -> None:
    """A token sent with the Bearer scheme (§7.2): refused when it is bound to a key (its holder must
    prove the key, §7.1) or when the route requires DPoP. Synchronous: the bearer hot path stays so."""
    if bound_jkt(principal.claims) is not None:
        raise DPoPRequired(detail="a key-bound token sent with the Bearer scheme")
    if route.dpop == "required":
        raise DPoPRequired(detail="a plain bearer token on a dpop: required route")


async def check_proof(
    request: Connection,
    rt: Runtime,
    route: CompiledRoute,
    principal: Principal,
    target: Target,
    *,
    proxied: bool,
) -> None:
    """A token sent with the DPoP scheme (§7.1): it must be bound, and the request must carry exactly
    one valid proof of that key for this method and URL, with this token's hash, never seen before."""
    jkt = bound_jkt(principal.claims)
    if jkt is None:
        raise InvalidToken(detail="the DPoP scheme with a token bound to no key")
    proofs = request.headers.getall("DPoP", ())
    if len(proofs) != 1:
        raise InvalidDPoPProof(detail=f"{len(proofs)} DPoP headers (exactly one is required, §4.3)")
    assert principal.access_token is not None  # a bearer principal always carries its token
    try:
        proof = verify_proof(
            proofs[0],
            method=target.method,
            url=target_url(request, rt, route, target, proxied=proxied),
            access_token=principal.access_token,
            jkt=jkt,
            now=rt.clock(),
            max_age=PROOF_WINDOW,
            leeway=PROOF_LEEWAY,
        )
    except DPoPError as exc:  # the one place a DPoPError becomes an answer
        raise InvalidDPoPProof(detail=exc.detail) from exc
    assert rt.marks is not None  # build_runtime opens one for every route with dpop != off
    if not await first_use(rt.marks, proof.jkt, proof.jti, MARK_TTL):
        raise InvalidDPoPProof(detail="jti replayed")


def challenge(route: CompiledRoute, authorization: Sequence[str]) -> DPoPChallenge | None:
    """The DPoP challenge of a refusal on ``route`` (None where DPoP is off): RFC 9449 §7.1's
    ``algs``, beside the Bearer challenge unless ``required``, the error in the scheme the client used."""
    if route.dpop == "off":
        return None
    return DPoPChallenge(
        algs=PROOF_ALGORITHMS,
        bearer=route.dpop != "required",
        error_in_dpop=uses_dpop_scheme(authorization),
    )


def explain_binding(
    dpop: str,
    claims: Mapping[str, Any],
    *,
    token: str | None,
    proof: str | None,
    method: str,
    url: str | None,
    now: float,
) -> tuple[str | None, list[str]]:
    """For ``tokengate explain``: the refusal ("401 invalid_dpop_proof: ...") the gateway would give a
    caller with these verified claims and this ``DPoP`` proof (None: no DPoP refusal), and notes. The
    replay store is not consulted: a proof that passes here may still be a replay."""
    try:
        jkt = bound_jkt(claims)
    except InvalidToken as exc:
        return f"401 invalid_token: {exc.detail}", []
    notes = [f"bound to key {jkt} (cnf.jkt)" if jkt else "not bound to a key (no cnf.jkt)"]
    if proof is None:
        if jkt is not None:
            return (
                "401 invalid_token: a key-bound token needs `Authorization: DPoP` and a proof (--dpop)",
                notes,
            )
        if dpop == "required":
            return "401 invalid_token: the route requires DPoP (dpop: required)", notes
        return None, []  # a plain bearer token where one is welcome: nothing to say
    if dpop == "off":
        return "401 invalid_token: the route does not accept DPoP (dpop: off)", notes
    if jkt is None:
        return "401 invalid_token: the DPoP scheme with a token bound to no key", notes
    if url is None:
        return "401 invalid_dpop_proof: give an absolute URL (or set server.public_url) to check htu", notes
    try:
        found = verify_proof(
            proof,
            method=method,
            url=url,
            access_token=token,
            jkt=jkt,
            now=now,
            max_age=PROOF_WINDOW,
            leeway=PROOF_LEEWAY,
        )
    except DPoPError as exc:
        return f"401 invalid_dpop_proof: {exc.detail}", notes
    if found.jkt != jkt:  # without --token, verify_proof could not compare the key (nor ath)
        return "401 invalid_dpop_proof: the proof's key is not the one the token is bound to", notes
    notes.append(
        "proof valid for " + method + " " + url + ("" if token else " (ath not checked: no --token)")
    )
    notes.append("jti replay is not checked by explain")
    return None, notes
