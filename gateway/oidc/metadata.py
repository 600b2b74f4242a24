"""Provider metadata: OpenID Connect Discovery 1.0 §4, then RFC 8414, with explicit endpoints on top.

The document's ``issuer`` must equal the configured issuer exactly (Discovery §4.3, RFC 8414 §3.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.config.schema import ProviderConfig
from gateway.errors import ProviderUnavailable
from gateway.oidc.http import ProviderHttp

#: Endpoint names, as in ``providers.<name>.endpoints`` and in ProviderClient's ``needs``.
ENDPOINT_NAMES = ("authorization", "token", "jwks", "introspection", "userinfo", "revocation", "end_session")

# The member of the metadata document that carries each endpoint (RFC 8414 §2, Discovery §3,
# RP-Initiated Logout §2.1).
_DOCUMENT_MEMBERS = {
    "authorization": "authorization_endpoint",
    "token": "token_endpoint",
    "jwks": "jwks_uri",
    "introspection": "introspection_endpoint",
    "userinfo": "userinfo_endpoint",
    "revocation": "revocation_endpoint",
    "end_session": "end_session_endpoint",
}


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The issuer and each endpoint URL (None when the provider has none or publishes none)."""

    issuer: str
    authorization: str | None = None
    token: str | None = None
    jwks: str | None = None
    introspection: str | None = None
    userinfo: str | None = None
    revocation: str | None = None
    end_session: str | None = None
    # RFC 9207 §3: the provider promises `iss` in every authorization response; a response without it
    # is then refused like one with a wrong `iss` (§2.4, mix-up defence).
    iss_parameter_supported: bool = False
    # OIDC Discovery §3: the acr values the provider says it can satisfy; a step-up login asking for
    # one of them relies on the provider to re-authenticate (no prompt=login, docs/step-up.md).
    acr_values_supported: tuple[str, ...] = ()

    def endpoint(self, name: str) -> str | None:
        if name not in _DOCUMENT_MEMBERS:
            raise ValueError(f"unknown endpoint name {name!r}")
        value: str | None = getattr(self, name)
        return value

    def missing(self, needs: Iterable[str]) -> list[str]:
        """The needed endpoints this metadata does not know, in a stable order."""
        return sorted(name for name in needs if self.endpoint(name) is None)


def explicit_endpoints(cfg: ProviderConfig) -> dict[str, str]:
    return {name: value for name in ENDPOINT_NAMES if (value := getattr(cfg.endpoints, name)) is not None}


def discovery_needed(cfg: ProviderConfig, needs: frozenset[str]) -> bool:
    """No discovery when every needed endpoint is configured (plain OAuth 2.0 servers publish none).
    With no needs declared, discovery runs: there is nothing to say the explicit endpoints suffice."""
    if not needs:
        return True
    unknown = needs.difference(_DOCUMENT_MEMBERS)
    if unknown:
        raise ValueError(f"unknown endpoint names in needs: {sorted(unknown)}")
    return not needs.issubset(explicit_endpoints(cfg))


def _metadata(
    issuer: str, endpoints: dict[str, str], *, iss_supported: bool = False, acr_values: tuple[str, ...] = ()
) -> ProviderMetadata:
    return ProviderMetadata(
        issuer=issuer,
        authorization=endpoints.get("authorization"),
        token=endpoints.get("token"),
        jwks=endpoints.get("jwks"),
        introspection=endpoints.get("introspection"),
        userinfo=endpoints.get("userinfo"),
        revocation=endpoints.get("revocation"),
        end_session=endpoints.get("end_session"),
        iss_parameter_supported=iss_supported,
        acr_values_supported=acr_values,
    )


def from_config(cfg: ProviderConfig) -> ProviderMetadata:
    return _metadata(cfg.issuer, explicit_endpoints(cfg))


def discovery_urls(issuer: str) -> list[str]:
    """Where to look, in order: OIDC Discovery §4.1 appends to the issuer; RFC 8414 §3.1 inserts the
    well-known segment between host and path (the two coincide for an issuer without a path)."""
    oidc = issuer.rstrip("/") + "/.well-known/openid-configuration"
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oauth = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", ""))
    return [oidc, oauth]


async def discover(http: ProviderHttp, cfg: ProviderConfig) -> ProviderMetadata:
    """Fetch the first metadata document that exists; explicit endpoints override what it says.

    A 4xx at the OIDC location moves on to RFC 8414; transport failures, 5xx and malformed documents
    raise ProviderUnavailable at once (the caller retries), as does a document for another issuer.
    """
    answers: list[str] = []
    for url in discovery_urls(cfg.issuer):
        resp = await http.call("GET", url, what="metadata", follow_redirects=True)
        if resp.ok:
            return parse_document(resp.body, cfg)
        answers.append(f"{url}: HTTP {resp.status}")
    raise ProviderUnavailable(detail=f"{http.provider}: no metadata document ({'; '.join(answers)})")


def parse_document(doc: dict[str, Any], cfg: ProviderConfig) -> ProviderMetadata:
    issuer = doc.get("issuer")
    if issuer != cfg.issuer:
        # OIDC Discovery §4.3 / RFC 8414 §3.3: an exact, case-sensitive comparison; no normalisation.
        raise ProviderUnavailable(
            detail=f"metadata issuer {str(issuer)[:200]!r} does not equal the configured {cfg.issuer!r}"
        )
    endpoints: dict[str, str] = {}
    for name, member in _DOCUMENT_MEMBERS.items():
        value = doc.get(member)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            endpoints[name] = value
    endpoints.update(explicit_endpoints(cfg))
    promised = doc.get("authorization_response_iss_parameter_supported") is True
    acrs = doc.get("acr_values_supported")
    acr_values = tuple(a for a in acrs if isinstance(a, str)) if isinstance(acrs, list) else ()
    return _metadata(cfg.issuer, endpoints, iss_supported=promised, acr_values=acr_values)
