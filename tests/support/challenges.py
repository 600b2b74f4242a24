"""The challenge a bearer route sends beside its Bearer one (RFC 9449 §7.1: routes accept DPoP by
default, `auth.dpop: allowed`), for tests that compare whole WWW-Authenticate values."""

from __future__ import annotations

from gateway.oidc.dpop import PROOF_ALGORITHMS

DPOP_OFFER = f'DPoP realm="tokengate", algs="{" ".join(PROOF_ALGORITHMS)}"'


def with_dpop(bearer: str) -> str:
    """``bearer`` as sent on a route that also offers DPoP."""
    return f"{bearer}, {DPOP_OFFER}"
