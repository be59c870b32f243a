"""One reader process for the load tests: reads a mix of mount paths until a deadline, prints JSON.

    python tests/load_reader.py MOUNT SECONDS SEED PATH [PATH...]

Each PATH is relative to MOUNT; "." lists the root instead of reading a file.
A path given twice is picked twice as often. Every read is a whole file
(open, read to EOF, close) and its content is checked, so that a wrong answer
counts as an error ("bad:<path>") just as an errno does. The last line of
output is {"reads": n, "errors": {name: count}, "lat_us": [...]} with one
latency per operation, in microseconds.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sys
import time

# What a correct answer must contain, by the last path component.
EXPECT = {"totmaps": b"kB\n", "summary": b"PID", "metrics": b"totmapsfs_processes"}


def one(mount: str, path: str) -> str | None:
    """Do one operation; None if it went right, else what went wrong."""
    if path == ".":
        names = os.listdir(mount)
        return None if "self" in names and len(names) > 3 else "bad:."
    with open(os.path.join(mount, path), "rb") as f:
        data = f.read()
    want = EXPECT.get(path.rsplit("/", 1)[-1], b"")
    return None if want in data and data.endswith(b"\n") else f"bad:{path}"


def main() -> None:
    mount, seconds, seed, paths = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    rng = random.Random(seed)
    errors: dict[str, int] = {}
    lat_us: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = rng.choice(paths)
        t0 = time.perf_counter_ns()
        try:
            wrong = one(mount, path)
        except OSError as exc:
            wrong = f"{errno.errorcode.get(exc.errno or 0, exc.errno)}:{path}"
        lat_us.append((time.perf_counter_ns() - t0) // 1000)
        if wrong:
            errors[wrong] = errors.get(wrong, 0) + 1
    print(json.dumps({"reads": len(lat_us), "errors": errors, "lat_us": lat_us}), flush=True)


if __name__ == "__main__":
    main()
