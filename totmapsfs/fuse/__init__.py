"""The pyfuse3 adapter: FUSE requests handed to the tree, domain errors turned into errnos in one decorator."""

from ._ops import ATTR_TIMEOUT, Operations, fuse_errors
from ._pool import Pool

__all__ = ["ATTR_TIMEOUT", "Operations", "Pool", "fuse_errors"]
