"""tokengate: an async OAuth 2.0 / OpenID Connect auth gateway (reverse proxy)."""

__version__ = "0.1.0"
