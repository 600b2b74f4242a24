"""What the test OpenID provider (devtools/idp/launcher.mjs, npm oidc-provider 8.8.1) is started with: its
settings (passed as environment), the two test users' claims, the default clients, and its errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

AccessTokenFormat = Literal["opaque", "jwt"]
ClientAuth = Literal["client_secret_basic", "client_secret_post"]

#: The extra claims of the two well-known test users (ID token, userinfo, JWT access tokens, introspection).
DEFAULT_ACCOUNT_CLAIMS: dict[str, dict[str, Any]] = {
    "alice": {"groups": ["admins", "staff"], "realm_access": {"roles": ["ops"]}},
    "bob": {"groups": ["staff"]},
}
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8080/oauth2/callback"
DEFAULT_SCOPE = "openid profile email offline_access api:read"

#: client_id -> secret of the launcher's default clients (IDP_CLIENTS unset).
DEFAULT_CLIENT_SECRETS: dict[str, str] = {
    "gw": "gw-secret",
    "gw-post": "gw-secret",
    "introspector": "introspector-secret",
}


class IdPError(Exception):
    """The provider answered an OAuth request with an error (``error`` is the OAuth error code)."""

    def __init__(self, status: int, body: Any, what: str) -> None:
        self.status = status
        self.body = body
        self.error: str | None = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{what}: HTTP {status}: {body!r}")


class IdPFlowError(Exception):
    """A browserless walk through the provider's pages did not end where it should."""


@dataclass(frozen=True)
class IdPSettings:
    """Everything the launcher takes from its environment (see the header of devtools/idp/launcher.mjs)."""

    access_token_ttl: int = 300
    refresh_token_ttl: int = 86400
    id_token_ttl: int = 3600
    access_token_format: AccessTokenFormat = "opaque"
    resource: str = "api"
    account_claims: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: DEFAULT_ACCOUNT_CLAIMS)
    redirect_uris: Sequence[str] = (DEFAULT_REDIRECT_URI,)
    post_logout_redirect_uris: Sequence[str] | None = None
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = True
    clients: Sequence[Mapping[str, Any]] | None = None
    discovery: bool = True
    key_file: Path | None = None
    acr_values: Sequence[str] = ()  # RFC 9470 step-up: the login's password picks the acr (launcher header)
    acr_reprompt: bool = True  # False: acr_values are ignored (no re-prompt of an SSO session)
    acr_publish: bool = True  # False: no acr_values_supported in the discovery document
    extra_resources: Sequence[str] = ()  # further RFC 8707 resources, each its own `aud`
    registration: bool = False  # RFC 7591 dynamic client registration at /reg

    def environment(self, port: int) -> dict[str, str]:
        env = {
            "IDP_PORT": str(port),
            "IDP_ACCESS_TOKEN_TTL": str(self.access_token_ttl),
            "IDP_REFRESH_TOKEN_TTL": str(self.refresh_token_ttl),
            "IDP_ID_TOKEN_TTL": str(self.id_token_ttl),
            "IDP_ACCESS_TOKEN_FORMAT": self.access_token_format,
            "IDP_RESOURCE": self.resource,
            "IDP_ACCOUNT_CLAIMS": json.dumps(self.account_claims),
            "IDP_REDIRECT_URIS": ",".join(self.redirect_uris),
            "IDP_DISCOVERY": "1" if self.discovery else "0",
        }
        if self.post_logout_redirect_uris is not None:
            env["IDP_POST_LOGOUT_REDIRECT_URIS"] = ",".join(self.post_logout_redirect_uris)
        if self.backchannel_logout_uri is not None:
            env["IDP_BACKCHANNEL_LOGOUT_URI"] = self.backchannel_logout_uri
            if not self.backchannel_logout_session_required:
                env["IDP_BACKCHANNEL_LOGOUT_SESSION_REQUIRED"] = "0"
        if self.clients is not None:
            env["IDP_CLIENTS"] = json.dumps(list(self.clients))
        if self.key_file is not None:
            env["IDP_KEY_FILE"] = str(self.key_file)
        if self.acr_values:
            env["IDP_ACR_VALUES"] = ",".join(self.acr_values)
            env["IDP_ACR_REPROMPT"] = "1" if self.acr_reprompt else "0"
            env["IDP_ACR_PUBLISH"] = "1" if self.acr_publish else "0"
        if self.extra_resources:
            env["IDP_EXTRA_RESOURCES"] = ",".join(self.extra_resources)
        if self.registration:
            env["IDP_REGISTRATION"] = "1"
        return env
