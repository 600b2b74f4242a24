"""OAuth 2.0 / OpenID Connect client side: discovery, bearer-token verification, the login grant.

authlib and joserfc are used only inside this package; everything else sees ProviderClient.
"""

from gateway.oidc.client import ProviderClient
from gateway.oidc.grant import RefreshRejected, new_login_secrets
from gateway.oidc.introspection import SharedCache
from gateway.oidc.logout_token import LogoutClaims, LogoutTokenError
from gateway.oidc.metadata import ProviderMetadata

__all__ = [
    "LogoutClaims",
    "LogoutTokenError",
    "ProviderClient",
    "ProviderMetadata",
    "RefreshRejected",
    "SharedCache",
    "new_login_secrets",
]
