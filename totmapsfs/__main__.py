"""``python -m totmapsfs``: the same as the ``totmapsfs`` command."""

import sys

from ._cli import main

sys.exit(main())
