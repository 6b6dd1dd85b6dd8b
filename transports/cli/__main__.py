"""``python -m transports.cli``."""

import sys

from . import main

sys.exit(main())
