"""The test OpenID provider: npm oidc-provider 8.8.1 (launcher.mjs, package.json here) run as a child process
on loopback, and driven without a browser. Used by the tests' fixtures, the benchmark and the demo."""

from devtools.idp.pages import basic_auth, loopback_session, pkce_pair
from devtools.idp.provider import IDP_DIR, LAUNCHER, IdP, IdPFactory, ensure_node_modules
from devtools.idp.settings import (
    DEFAULT_ACCOUNT_CLAIMS,
    DEFAULT_CLIENT_SECRETS,
    DEFAULT_REDIRECT_URI,
    DEFAULT_SCOPE,
    AccessTokenFormat,
    ClientAuth,
    IdPError,
    IdPFlowError,
    IdPSettings,
)

__all__ = [
    "DEFAULT_ACCOUNT_CLAIMS",
    "DEFAULT_CLIENT_SECRETS",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPE",
    "IDP_DIR",
    "LAUNCHER",
    "AccessTokenFormat",
    "ClientAuth",
    "IdP",
    "IdPError",
    "IdPFactory",
    "IdPFlowError",
    "IdPSettings",
    "basic_auth",
    "ensure_node_modules",
    "loopback_session",
    "pkce_pair",
]
