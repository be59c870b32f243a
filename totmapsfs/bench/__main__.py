"""``python -m totmapsfs.bench``: run the benchmark (see ``totmapsfs.bench``)."""

import sys

from ._main import main

sys.exit(main())
