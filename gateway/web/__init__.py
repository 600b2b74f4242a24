"""The HTTP side: the only aiohttp.web code besides app.py (handlers, proxy, middleware, admin)."""
