"""``python -m gateway``: the same as the ``tokengate`` command."""

import sys

from gateway.cli import main

sys.exit(main())
