"""``python -m totmapsfs``: the same as the ``totmapsfs`` command."""

import sys

from .service import main

sys.exit(main())
