"""``python -m tools.configref`` (``make docs``): writes docs/configuration.md to standard output."""

import sys

from tools.configref import main

sys.exit(main())
