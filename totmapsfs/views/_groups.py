"""MOUNT/programs, MOUNT/users, their totmaps, and a process tree's: the views' pass, grouped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence

from ..errors import TotmapsError
from ..proc import Caller
from ._names import GroupSum, entry_name, program_name, sums_by
from ._snapshot import Row, Snapshot, total, user_name, user_of
from ._views import Plan, Views

_CHUNK = 64  # processes probed at once, as Views' pass does
# A lookup of a group's name finds it among the names of at most this many
# seconds ago (as the kernel keeps an entry, fuse._ops.ATTR_TIMEOUT); a name
# not among them is looked for afresh. A scan is ~70 us a process (status,
# mostly; in the FUSE adapter's listing pool): once a second per kind of
# caller, not per lookup.
NAMES_TTL = 1.0
_NAMES_KEPT = 256  # callers' name sets kept at most


def program_key(row: Row) -> str:
    return entry_name(row.program)


def format_groups(groups: Sequence[GroupSum], title: str) -> bytes:
    """A table of groups, largest Pss first: processes, USS, Pss, Swap, SwapPss, AGE, then the name.

    Padded and awk-split as summary is: the name is the last column, written
    as its directory is named (entry_name), so ``awk '{print $3}'`` is Pss.
    """
    table: list[tuple[str, ...]] = [("PROCS", "USS", "Pss", "Swap", "SwapPss", "AGE", title)]
    for g in groups:
        f = g.fields
        table.append(
            (
                str(g.processes),
                str(g.uss),
                str(g.pss),
                str(f.get("Swap", 0)),
                str(f.get("SwapPss", 0)),
                f"{g.age:.1f}",
                g.name,
            )
        )
    widths = [max(map(len, column)) for column in list(zip(*table, strict=True))[:-1]]
    line = "%{}s %{}s %{}s %{}s %{}s %{}s %s\n".format(*widths)
    return "".join([line % cells for cells in table]).encode("utf-8", "surrogateescape")


class Groups:
    """The grouped views over a Views: every one a pass under the same access rule, cache, duty and budget."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self._lock = threading.Lock()
        self._names: dict[Hashable, tuple[float, set[str]]] = {}

    def _user_key(self, rows: Snapshot) -> Callable[[Row], str]:
        return lambda row: entry_name(user_of(rows, row.uid))

    def programs(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/programs: one line per program the caller may read processes of."""
        return self.views.plan(caller, lambda rows: format_groups(sums_by(rows, program_key), "PROGRAM"), programs=True)

    def users(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/users: one line per user, named as the caller's user namespace names them (as summary's USER)."""
        return self.views.plan(caller, lambda rows: format_groups(sums_by(rows, self._user_key(rows)), "USER"))

    def _sum(self, rows: Sequence[Row]) -> bytes:
        return self.views.text(total(rows, self.views.field_names()))

    def program_totmaps(self, caller: Caller | None, name: str) -> Plan[Snapshot, bytes]:
        """MOUNT/program/<name>/totmaps: the processes running program ``name`` (an entry name), summed."""
        return self.views.plan(
            caller, lambda rows: self._sum([r for r in rows if program_key(r) == name]), programs=True
        )

    def user_totmaps(self, caller: Caller | None, name: str) -> Plan[Snapshot, bytes]:
        """MOUNT/user/<name>/totmaps: the processes of user ``name`` (an entry name), summed."""

        def finish(rows: Snapshot) -> bytes:
            key = self._user_key(rows)
            return self._sum([r for r in rows if key(r) == name])

        return self.views.plan(caller, finish)

    # -- a process tree ------------------------------------------------------------------

    def descendants(self, caller: Caller | None, host: int) -> set[int]:
        """Our pids of process ``host`` and every descendant the caller's pid namespace shows.

        Parent links are stat's ppid, public as ps shows them; a child whose
        parent exits is reparented (to a subreaper or init) and leaves the tree,
        as it leaves ps's forest. Processes outside the caller's namespace are
        no links at all: its tree is the one its own /proc draws.
        """
        access, reader = self.views.engine.access, self.views.engine.reader
        seen = [h for h, _ in access.pids.visible(access.pids.own if caller is None else caller.pids, reader.pids())]
        children: dict[int, list[int]] = {}
        for pid in seen:
            parent = reader.parent(pid)
            if parent is not None:
                children.setdefault(parent, []).append(pid)
        out, todo = {host}, [host]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out

    def tree_totmaps(self, caller: Caller | None, host: int) -> Plan[Snapshot, bytes]:
        """MOUNT/<pid>/tree/totmaps: the process and its descendants that the caller may read, summed."""
        return self.views.plan(caller, lambda rows: self._sum(rows), only=self.descendants(caller, host))

    def tree_processes(self, caller: Caller | None, host: int) -> Plan[Snapshot, bytes]:
        """MOUNT/<pid>/tree/processes: how many of the tree were summed, and how many left out and why.

        ``summed``: readable processes with an address space; ``denied``: the
        caller may not read them (the access rule of <pid>/totmaps);
        ``left_out``: the kernel failed to read them, or their mmap lock was
        held over a second (the daemon's log names them).
        """

        def finish(rows: Snapshot) -> bytes:
            return f"summed {len(rows)}\ndenied {rows.denied}\nleft_out {rows.left_out}\n".encode()

        return self.views.plan(caller, finish, only=self.descendants(caller, host))

    # -- the names, for listings and lookups -------------------------------------------------

    def exists(self, caller: Caller | None, programs: bool, name: str) -> bool:
        """Whether ``name`` is a group of the caller's: from its names of under NAMES_TTL ago, else afresh."""
        key: Hashable = None
        if caller is not None:  # all that the access rule and the names depend on
            c = caller
            view = None if c.pids is None else c.pids.inode
            key = (programs, c.fsuid, c.fsgid, c.euid, c.cap_eff, c.user_ns, c.all_access, c.perfmon, view)
        now = time.monotonic()
        with self._lock:
            at, names = self._names.get(key, (0.0, set()))
        if name in names and now - at < NAMES_TTL:
            return True
        names = self.names(caller, programs)
        with self._lock:
            if len(self._names) >= _NAMES_KEPT:
                self._names.clear()
            self._names[key] = (now, names)
        return name in names

    def names(self, caller: Caller | None, programs: bool) -> set[str]:
        """The entry names of the programs (else users) of the processes the caller may read.

        No smaps is read: stat and status, the access rule, and the exe link
        (which never waits on a target's mmap lock), so a lookup may ask.
        """
        engine = self.views.engine
        access, reader = engine.access, engine.reader
        pairs = access.pids.visible(access.pids.own if caller is None else caller.pids, reader.pids())
        uids = None if caller is None else access.uids_for(caller)
        out: set[str] = set()
        for at in range(0, len(pairs), _CHUNK):
            probed = reader.probe_many([host for host, _ in pairs[at : at + _CHUNK]])
            try:
                for item in probed:
                    if isinstance(item, TotmapsError):
                        continue
                    proc, stat, status, _ = item
                    try:
                        if engine.checked(proc, stat, status, caller).key is None:
                            continue  # no address space: in no view
                        exe = proc.exe() if programs else None
                    except TotmapsError:
                        continue
                    if programs:
                        out.add(entry_name(program_name(exe, status.name)))
                    else:
                        uid = status.uids[1]
                        out.add(entry_name(user_name(uid) if uids is None else str(uids(uid))))
            finally:
                for item in probed:
                    if isinstance(item, tuple):
                        item[0].close()
        return out
