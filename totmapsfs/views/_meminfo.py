"""MOUNT/meminfo and MOUNT/cgroup/<path>/meminfo: /proc/meminfo reconciled with the processes' Pss, line by line.

The whole-system file (``reconcile``) splits MemTotal into lines that add up
to it exactly, each a kernel counter or a sum over processes, and what is left
(``Unattributed``), shown as it comes out, negative or not. The sources
(fs/proc/meminfo.c: meminfo_proc_show, which prints each counter named here):

* ``Processes`` = Σ Pss_Anon + Σ Pss_File + Σ Pss_Shmem over the processes
  the caller may read (fs/proc/task_mmu.c smaps_account: each page divided
  by its mapcount).
* ``ProcessesUnread`` = (AnonPages − Σ Pss_Anon) + (Mapped − Σ Pss_File −
  Σ Pss_Shmem): the rest of what is mapped. AnonPages is NR_ANON_MAPPED and
  Mapped NR_FILE_MAPPED (mm/rmap.c __folio_add_rmap: counted once per page
  when its first mapping comes, shmem included in Mapped), so a page mapped
  by processes the caller cannot read is here. Detail: ``UnreadableRss``,
  Σ RssAnon + RssFile + RssShmem (/proc/<pid>/status, task_mem) of the
  processes not read, a bound (Rss counts a shared page whole) that names it.
* ``PageCacheUnmapped`` = Buffers + Cached − Shmem − (Mapped − Σ Pss_Shmem):
  page cache no process maps. Buffers + Cached is NR_FILE_PAGES less the swap
  cache (meminfo_proc_show's "cached"); Shmem (NR_SHMEM) is page cache too.
* ``ShmemUnmapped`` = Shmem − Σ Pss_Shmem: tmpfs, SysV and shared anonymous
  memory no readable process maps.
* ``Kernel``: SReclaimable, SUnreclaim (NR_SLAB_*_B), KReclaimable −
  SReclaimable (NR_KERNEL_MISC_RECLAIMABLE), KernelStack, PageTables,
  SecPageTables, VmallocUsed − KernelStack (vmalloc_nr_pages() counts every
  page __vmalloc_area_node allocated, which with CONFIG_VMAP_STACK includes
  the thread stacks that KernelStack counts: kernel/fork.c
  alloc_thread_stack_node), Percpu (pcpu_nr_pages), Zswap (the compressed
  pool) where the kernel has it.
* ``HugeTLB`` = Hugetlb (every huge page size, hugetlb_report_meminfo), or
  HugePages_Total × Hugepagesize on kernels before 4.16.
* ``SwapCached`` (total_swapcache_pages) and ``MemFree`` (NR_FREE_PAGES).
* ``Unattributed`` = MemTotal − all of the above: driver and DMA buffers,
  socket buffers and other direct page allocations, the first percpu chunk
  (memblock memory outside MemTotal that Percpu counts: negative), changes
  between the reads.

The counters are read as /proc/meminfo prints them, without the per-CPU
differences not yet folded in (mm/vmstat.c; up to the zoneinfo "vm stats
threshold" × CPUs pages each): writing vm.stat_refresh would fold them, but
runs a work item on every CPU at each read, so the daemon leaves it to the
reader (docs/design.md).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ..engine import Source
from ..errors import SourceError, TotmapsError
from ..parser import SmapsParseError, parse_smaps
from ..proc import Caller, Cgroup2Mount, ProcReader, within
from ._metrics import Family
from ._snapshot import Snapshot, total
from ._views import Plan, Views

_LINE = re.compile(rb"^([A-Za-z0-9_()]+):\s+(-?[0-9]+)(?: kB)?$", re.MULTILINE)
_RSS = re.compile(rb"^(RssAnon|RssFile|RssShmem):\s+([0-9]+) kB$", re.MULTILINE)
_STAT = re.compile(rb"^([a-z_]+) ([0-9]+)$", re.MULTILINE)
PSS_PARTS = ("Pss_Anon", "Pss_File", "Pss_Shmem")


class Line(NamedTuple):
    depth: int  # 0: a top-level line (they add up to MemTotal); 1, 2: detail of the line above
    name: str
    kb: int


def parse_meminfo(text: bytes) -> dict[str, int]:
    """/proc/meminfo (or memory.stat, in bytes) as {name: value}; lines of another shape are skipped."""
    return {m.group(1).decode(): int(m.group(2)) for m in _LINE.finditer(text)}


def unread_rss(reader: ProcReader, rows: Snapshot) -> int:
    """Σ RssAnon + RssFile + RssShmem (status) of the processes of the pass (Snapshot.visible) without a row."""
    read = {row.pid for row in rows}
    hosts = [host for host, shown in rows.visible if shown not in read]
    out = 0
    for item in reader.probe_many(hosts):
        if isinstance(item, tuple):
            item[0].close()
            out += sum(int(v) for _, v in _RSS.findall(item[2].mm_counters))
    return out


def reconcile(info: Mapping[str, int], pss: Mapping[str, int], unread: int = 0) -> list[Line]:
    """The lines of MOUNT/meminfo from /proc/meminfo ``info`` and the Pss sums ``pss`` (see the module docstring)."""
    g = info.get
    anon, file, shmem = (pss.get(name, 0) for name in PSS_PARTS)
    hugetlb = g("Hugetlb", g("HugePages_Total", 0) * g("Hugepagesize", 0))
    kernel = [
        Line(1, "SReclaimable", g("SReclaimable", 0)),
        Line(1, "SUnreclaim", g("SUnreclaim", 0)),
        Line(1, "KReclaimableOther", g("KReclaimable", g("SReclaimable", 0)) - g("SReclaimable", 0)),
        Line(1, "KernelStack", g("KernelStack", 0)),
        Line(1, "PageTables", g("PageTables", 0)),
        Line(1, "SecPageTables", g("SecPageTables", 0)),
        Line(1, "VmallocOther", g("VmallocUsed", 0) - g("KernelStack", 0)),
        Line(1, "Percpu", g("Percpu", 0)),
        *([Line(1, "Zswap", info["Zswap"])] if "Zswap" in info else []),
    ]
    anon_rest, mapped_rest = g("AnonPages", 0) - anon, g("Mapped", 0) - file - shmem
    top = [
        [Line(0, "Processes", anon + file + shmem), *(Line(1, n, pss.get(n, 0)) for n in PSS_PARTS)],
        [
            Line(0, "ProcessesUnread", anon_rest + mapped_rest),
            Line(1, "AnonUnread", anon_rest),
            Line(1, "MappedUnread", mapped_rest),
            Line(1, "UnreadableRss", unread),
        ],
        [
            Line(0, "PageCacheUnmapped", g("Buffers", 0) + g("Cached", 0) - g("Shmem", 0) - g("Mapped", 0) + shmem),
        ],
        [Line(0, "ShmemUnmapped", g("Shmem", 0) - shmem)],
        [Line(0, "Kernel", sum(line.kb for line in kernel)), *kernel],
        [Line(0, "HugeTLB", hugetlb)],
        [Line(0, "SwapCached", g("SwapCached", 0))],
        [Line(0, "MemFree", g("MemFree", 0))],
    ]
    mem_total = g("MemTotal", 0)
    attributed = sum(group[0].kb for group in top)
    lines = [Line(0, "MemTotal", mem_total)]
    for group in top:
        lines.extend(group)
    lines.append(Line(0, "Unattributed", mem_total - attributed))
    return lines


# memory.stat's keys (bytes) shown beside the members' Pss, in this order (Documentation/admin-guide/cgroup-v2.rst).
CHARGE_KEYS = ("anon", "file", "file_mapped", "shmem", "kernel", "kernel_stack", "pagetables", "sock", "vmalloc")


def cgroup_lines(stat: Mapping[str, int] | None, current: int | None, pss: Mapping[str, int]) -> list[Line]:
    """A cgroup's charge (memory.current, memory.stat; bytes) beside its readable members' Pss (kB).

    ``ChargedAnonNotMapped`` = anon − Σ Pss_Anon: charged here, not mapped by
    its members (positive), or mapped by them and charged elsewhere (negative:
    anon stays charged to the cgroup that faulted it in when a process moves,
    cgroup-v2.rst "Memory Ownership"). ``ChargedMappedNotByMembers`` =
    file_mapped − Σ (Pss_File + Pss_Shmem): the same for mapped page cache,
    where a library first read by another cgroup is charged there.
    ``ChargedUnmapped`` = file − file_mapped: page cache charged here that no
    process maps. Without the memory controller in cgroup2 (``stat`` None),
    only the Pss lines are shown.
    """
    anon, file, shmem = (pss.get(name, 0) for name in PSS_PARTS)
    lines = [Line(0, "Pss", anon + file + shmem), *(Line(1, n, pss.get(n, 0)) for n in PSS_PARTS)]
    if stat is None:
        return lines
    kb = {key: stat.get(key, 0) // 1024 for key in CHARGE_KEYS}
    head = [Line(0, "MemoryCurrent", (current or 0) // 1024)] if current is not None else []
    charged = [Line(1 if key in ("anon", "file", "kernel", "sock") else 2, key, kb[key]) for key in CHARGE_KEYS]
    return [
        *head,
        Line(0, "Charged", kb["anon"] + kb["file"] + kb["kernel"] + kb["sock"]),
        *charged,
        *lines,
        Line(0, "ChargedAnonNotMapped", kb["anon"] - anon),
        Line(0, "ChargedMappedNotByMembers", kb["file_mapped"] - file - shmem),
        Line(0, "ChargedUnmapped", kb["file"] - kb["file_mapped"]),
    ]


def format_meminfo(lines: Sequence[Line]) -> bytes:
    """``Name:  N kB`` lines as /proc/meminfo has them, details indented two spaces a level."""
    width = max(len(line.name) + 2 * line.depth for line in lines) + 2
    return "".join(f"{'  ' * line.depth + line.name + ':':<{width}}{line.kb:>12} kB\n" for line in lines).encode()


class MeminfoViews:
    """The meminfo files over a Views: one pass (smaps_rollup, the cheap kind) and the kernel's counters after it."""

    def __init__(self, views: Views) -> None:
        self.views = views

    def _read(self, name: str) -> bytes:
        try:
            with open(f"{self.views.engine.reader.root}/{name}", "rb") as f:
                return f.read()
        except OSError as exc:
            raise SourceError(exc.errno or errno.EIO, name) from None

    def meminfo(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/meminfo for ``caller``: its readable processes' Pss, then /proc/meminfo read right after."""

        return self.views.plan(caller, lambda rows: format_meminfo(self.lines(rows)))

    def lines(self, rows: Snapshot) -> list[Line]:
        """The reconciliation of a pass's rows with /proc/meminfo read now (after the pass).

        The daemon's own row is read again right after /proc/meminfo: it is
        the one process sure to change during the pass (its own allocations
        for the answer: up to 456 kB in a fresh daemon's first requests,
        measured), which would otherwise show up as ProcessesUnread.
        """
        unread = unread_rss(self.views.engine.reader, rows)
        info = parse_meminfo(self._read("meminfo"))
        pss = total(rows, PSS_PARTS)
        for name, moved in self._own_now(rows).items():
            pss[name] += moved
        return reconcile(info, pss, unread)

    def _own_now(self, rows: Snapshot) -> dict[str, int]:
        """How far the daemon's own Pss parts moved since its row was read (empty: not in the rows, or no rollup)."""
        engine, me = self.views.engine, os.getpid()
        if engine.source is not Source.ROLLUP or engine.reader.root != "/proc":
            return {}  # a --proc tree's pids are not ours; smaps would cost a walk of our own
        shown = next((s for host, s in rows.visible if host == me), None)
        row = next((r for r in rows if r.pid == shown), None) if shown is not None else None
        if row is None:
            return {}
        try:
            with engine.reader.open(me) as proc:
                now = parse_smaps(proc.rollup())  # the parser the engine's walks use
        except (TotmapsError, OSError, SmapsParseError, OverflowError):
            return {}
        return {n: now[n] - row.fields.get(n, 0) for n in PSS_PARTS if n in now}

    def families(self, rows: Snapshot) -> list[Family]:
        """The reconciliation as one metric family: a series per line, in bytes (26 on Linux 6.x)."""
        parent, samples = "", list[tuple[tuple[str, ...], float]]()
        for line in self.lines(rows):
            parent = line.name if line.depth == 0 else parent
            samples.append(((line.name, "" if line.depth == 0 else parent), float(line.kb * 1024)))
        help_text = (
            "The lines of MOUNTPOINT/meminfo: /proc/meminfo reconciled with the Pss of the processes the reader "
            'may read, in bytes; the lines with parent="" other than MemTotal add up to MemTotal, each detail '
            "is labelled with its line"
        )
        return [Family("totmapsfs_meminfo_bytes", help_text, "gauge", ("line", "parent"), samples)]

    def cgroup_meminfo(self, caller: Caller | None, path: str) -> Plan[Snapshot, bytes]:
        """MOUNT/cgroup/<path>/meminfo: the subtree's readable members' Pss beside its charge."""
        cgroups = self.views.cgroups
        cgroups.stat(path)  # ENOENT for a cgroup removed since the lookup

        def finish(rows: Snapshot) -> bytes:
            stat, current = charge(cgroups.mount(), path)
            return format_meminfo(cgroup_lines(stat, current, total(rows, PSS_PARTS)))

        return self.views.plan(caller, finish, keep=lambda member: member is not None and within(member, path))


def charge(mount: Cgroup2Mount | None, path: str) -> tuple[dict[str, int] | None, int | None]:
    """memory.stat and memory.current of cgroup ``path`` (bytes); None where there is none.

    None for both without the memory controller in cgroup2 (a cgroup v1 or
    hybrid host); memory.current alone is missing in the root cgroup.
    """
    if mount is None:
        return None, None
    base = mount.path + (path if path != "/" else "")
    try:
        with open(f"{base}/memory.stat", "rb") as f:
            stat = {k.decode(): int(v) for k, v in _STAT.findall(f.read())}
    except OSError:
        return None, None
    try:
        with open(f"{base}/memory.current", "rb") as f:
            return stat, int(f.read())
    except (OSError, ValueError):
        return stat, None
