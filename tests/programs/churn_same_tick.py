"""The same-tick phase of churn.py: a pid reused within one clock tick by the same program, read each time.

Imported by churn.py (run as init of a private pid namespace, where it may
write ns_last_pid); see same_tick.
"""

from __future__ import annotations

import mmap
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PAGE = mmap.PAGESIZE
# Maps the file argv[1] shared, locks its 16 pages, says "r", waits for SIGKILL.
LOCKER_C = rb"""#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = argc > 1 ? open(argv[1], O_RDWR) : -1;
    void *p = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd < 0 || p == MAP_FAILED || mlock(p, 16 * 4096) != 0 || write(1, "r", 1) != 1) return 1;
    for (;;) pause();
}
"""


def same_tick(
    mnt: Path,
    workdir: Path,
    rounds: int,
    min_collisions: int,
    target: int,
    parse: Callable[[bytes], dict[str, int] | None],
    stat_fields: Callable[[int], list[bytes]],
    generation: Callable[[int], tuple[bytes, ...]],
) -> dict:
    """Pid reuse within one clock tick by the same program: same (pid, start time), often the same generation.

    A predecessor locks 16 pages of a file that we map too (its Locked, a Pss,
    is 32 kB) and is read, killed and reaped; we unmap the file, and a successor
    forced onto the same pid locks the same pages alone (64 kB). A static C
    program, so that the two often have the same fault counts and memory
    counters, i.e. the same cache signature. Each read must give the process's
    own smaps_rollup figure. At least ``rounds`` rounds, then on (up to ten times
    as many) until ``min_collisions`` had the same start time and generation.
    """
    prog, data, began = workdir / "locker", workdir / "locked.bin", time.monotonic()
    cc = shutil.which("cc") or shutil.which("gcc")
    build = [cc or "cc", "-O2", "-o", str(prog), "-x", "c", "-"]
    if cc is None or (
        subprocess.run([*build, "-static"], input=LOCKER_C).returncode
        and subprocess.run(build, input=LOCKER_C).returncode
    ):
        return dict(skipped="no C compiler")
    data.write_bytes(bytes(16 * PAGE))
    out: dict = dict(rounds=0, same_start=0, same_start_and_generation=0, stale=0, missed_pid=0, errors=0, notes=[])
    for i in range(10 * rounds):
        if i >= rounds and out["same_start_and_generation"] >= min_collisions:
            break
        with open(data, "r+b") as f:
            ours = mmap.mmap(f.fileno(), 16 * PAGE)
        ours.write(b"\x01" * 16 * PAGE)  # every page mapped and touched by us too
        seen = []
        for first in (True, False):
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(target - 1))
            p = subprocess.Popen([prog, data], stdout=subprocess.PIPE)
            try:
                assert p.stdout is not None and p.stdout.read(1) == b"r", "locker failed"
                served = parse((mnt / str(p.pid) / "totmaps").read_bytes()) or {}
                truth = parse(Path(f"/proc/{p.pid}/smaps_rollup").read_bytes().partition(b"\n")[2]) or {}
                seen.append(
                    (p.pid, int(stat_fields(p.pid)[19]), generation(p.pid), served.get("Locked"), truth.get("Locked"))
                )
            except (OSError, AssertionError) as exc:
                out["errors"] += 1
                out["notes"].append(f"{p.pid}: {exc}")
            finally:
                p.kill()
                p.wait()
            if first:
                ours.close()  # the successor has the pages to itself
        if len(seen) < 2 or seen[0][0] != target or seen[1][0] != target:
            out["missed_pid"] += len(seen) == 2  # another fork took the pid: no reuse this round
            continue
        (_, start_a, gen_a, _, _), (_, start_b, gen_b, _, _) = seen
        out["rounds"] += 1
        out["same_start"] += start_a == start_b
        out["same_start_and_generation"] += start_a == start_b and gen_a == gen_b
        for pid, start, _, got, want in seen:
            if got != want:
                out["stale"] += 1
                out["notes"].append(
                    f"pid {pid} start {start}: served Locked {got} kB, its smaps_rollup {want} kB "
                    f"(predecessor start {start_a}, same generation {gen_a == gen_b})"
                )
    out.update(notes=out["notes"][:5], seconds=round(time.monotonic() - began, 2))
    return out
