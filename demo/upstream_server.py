"""``python -m demo.upstream_server PORT``: serves the demo upstream on 127.0.0.1."""

import sys

from aiohttp import web

from demo.upstream import demo_upstream_app

web.run_app(demo_upstream_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
