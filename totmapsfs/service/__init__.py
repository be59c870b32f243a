"""The service: the command line, the daemon's life (mount, signals, sd_notify, unmount) and its privileges."""

from ._cli import main, parser
from ._mountpoint import UserError, check_host, lazy_unmount, mount_at, prepare

__all__ = ["UserError", "check_host", "lazy_unmount", "main", "mount_at", "parser", "prepare"]
