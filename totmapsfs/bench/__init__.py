"""The benchmark: totmaps through real mounts, measured side by side with the kernel's own files.

``python -m totmapsfs.bench`` (``make bench``). Nothing at run time imports it;
it stands on the harness (real daemons, real workloads) that the tests use.
"""

from ._main import main

__all__ = ["main"]
