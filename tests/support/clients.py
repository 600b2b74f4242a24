"""The one spelling of aiohttp's generic test client for annotations: ``TestClient`` is generic in its
request and application types, and every test client here serves a ``web.Application``."""

from __future__ import annotations

from typing import TypeAlias

from aiohttp import web
from aiohttp.test_utils import TestClient

Client: TypeAlias = TestClient[web.Request, web.Application]
