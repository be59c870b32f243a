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
    THREAD_SELF_INODE,
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
from ._tree import Mixed, Request, Tree

__all__ = [
    "CGROUP_INODE",
    "CGROUP_TOTMAPS_INODE",
    "METRICS_INODE",
    "PID_MAX_LIMIT",
    "ROOT_INODE",
    "SELF_INODE",
    "SUMMARY_INODE",
    "THREAD_SELF_INODE",
    "TOTMAPS_INODE",
    "Attr",
    "CgroupDirs",
    "Inode",
    "Kind",
    "Mixed",
    "Request",
    "Tree",
    "cgroup_inode",
    "check_name",
    "decode",
    "parse_pid",
    "pid_dir_inode",
    "totmaps_inode",
]
