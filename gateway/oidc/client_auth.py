"""Client authentication at the provider's endpoints (RFC 6749 §2.3.1): client_secret_basic or _post.

Used for the token, introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1) endpoints.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

from gateway.config.schema import ProviderConfig


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None
    method: Literal["client_secret_basic", "client_secret_post"]

    @classmethod
    def for_token_endpoint(cls, cfg: ProviderConfig) -> ClientCredentials:
        secret = cfg.client_secret.get_secret_value() if cfg.client_secret else None
        return cls(cfg.client_id, secret, cfg.client_auth)

    @classmethod
    def for_introspection(cls, cfg: ProviderConfig) -> ClientCredentials:
        """The separate introspection client when one is configured, else the gateway's own client."""
        if cfg.introspection_client_id:
            secret = cfg.introspection_client_secret or cfg.client_secret
            return cls(
                cfg.introspection_client_id, secret.get_secret_value() if secret else None, cfg.client_auth
            )
        return cls.for_token_endpoint(cfg)

    def apply(self, params: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Return (form parameters, headers) carrying this client's authentication."""
        if self.client_secret is None:
            # A public client identifies itself in the body (RFC 6749 §3.2.1).
            return [*params, ("client_id", self.client_id)], {}
        if self.method == "client_secret_post":
            return [*params, ("client_id", self.client_id), ("client_secret", self.client_secret)], {}
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded.
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return params, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}

    def __repr__(self) -> str:  # never print the secret
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"
