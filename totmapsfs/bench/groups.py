"""``python -m totmapsfs.bench.groups``: section G of the benchmark alone (see ``_groups``)."""

import sys

from ._groups import main

if __name__ == "__main__":
    sys.exit(main())
