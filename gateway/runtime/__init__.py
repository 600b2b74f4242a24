"""The compiled config as one layer between web and oidc/sessions: routes, providers, store, cookies,
trusted proxies, identity signer; built by ``build_runtime`` and swapped whole on reload. No aiohttp.web.
"""

from gateway.runtime.build import Runtime, build_runtime
from gateway.runtime.cookies import CookieSettings
from gateway.runtime.holder import RuntimeHolder
from gateway.runtime.proxies import TrustedProxies
from gateway.runtime.route import CompiledRoute

__all__ = ["CompiledRoute", "CookieSettings", "Runtime", "RuntimeHolder", "TrustedProxies", "build_runtime"]
