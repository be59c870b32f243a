"""The tree of the mount: names, inodes, attributes and file contents, over the engine and the views."""

from ._cgroupdirs import CgroupDirs, check_name
from ._inodes import (
    CGROUP_INODE,
    CGROUP_TOTMAPS_INODE,
    METRICS_INODE,
    PID_MAX_LIMIT,
    ROOT_INODE,
    SELF_INODE,
    SUMMARY_INODE,
    TOTMAPS_INODE,
    Attr,
    Inode,
    Kind,
    cgroup_inode,
    decode,
    parse_pid,
    pid_dir_inode,
    totmaps_inode,
)
from ._tree import Request, Tree

__all__ = [
    "CGROUP_INODE",
    "CGROUP_TOTMAPS_INODE",
    "METRICS_INODE",
    "PID_MAX_LIMIT",
    "ROOT_INODE",
    "SELF_INODE",
    "SUMMARY_INODE",
    "TOTMAPS_INODE",
    "Attr",
    "CgroupDirs",
    "Inode",
    "Kind",
    "Request",
    "Tree",
    "cgroup_inode",
    "check_name",
    "decode",
    "parse_pid",
    "pid_dir_inode",
    "totmaps_inode",
]
