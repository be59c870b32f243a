"""A process that lives in namespaces made for it and reads, as itself, what a test asks it to: JSON lines.

    nsagent.py [--unshare user,mount,pid,cgroup] [--await-map] [--propagation private|slave|unchanged]
               [--bind SRC:DST [--rslave]] [--proc] [--marker MiB]

The comparisons of tests/mount/test_*namespaces.py and test_containers.py
need the kernel's answer and the mount's answer to the *same caller*: this
process reads both (its /proc, and the mount), in its own namespaces, and
reports what it got. Only the standard library: it runs as users and in user
namespaces that cannot import the package.

Start-up, in order: PR_SET_PDEATHSIG (it dies with whoever started it);
unshare(2) of the namespaces asked for (one call); with --await-map, the line
{"unshared": PID} and a wait for "go" on stdin while the parent writes
/proc/PID/uid_map and gid_map (an unprivileged process may only map itself,
so a rootless mapping such as 0-65535 -> 100000-165535 is written from
outside, as newuidmap does); with a new pid namespace, a fork: the child is
the namespace's init (pid 1) and serves, the parent waits for it and exits
with its status (as ``unshare --fork``); with a mount namespace, propagation
made private recursively (as unshare(1) does; "slave" as runc does for a
container's root; or "unchanged"), --bind SRC onto DST (MS_BIND |
MS_REC, then MS_SLAVE | MS_REC with --rslave: ``docker -v SRC:DST:rslave``),
and with --proc a procfs for the new pid namespace on /proc (as
``--mount-proc``). --marker maps and writes that many MiB, so that the process
is told apart by size. Then one line {"ready": WHOAMI} and the commands.

Each command is one JSON object on a line, each answer one line:
{"ok": RESULT} or {"error": "traceback"}. Commands ("op"):

    whoami                          pid, tid, ids, NSpid, /proc/self, cgroup, namespaces
    run      steps                  the outcome of each step, in order
    settled  parts, whole, attempts parts, whole, parts again until the parts are equal twice
    spawn    name, argv, at_pid, ready
                                    a child (argv[0] is looked up in PATH); at_pid writes
                                    ns_last_pid first so that it gets that pid; "ready":
                                    its first stdout line is returned (workload.py's "ready PID")
    agent    name, args, uid_map, gid_map
                                    another nsagent.py as a child, maps written from here
    to       name, cmd              a command for child agent "name"; its answer
    park                            a thread that waits until EOF: its tid
    poll     step, timeout          the step again every 10 ms until it succeeds: its outcome,
                                    the seconds and the tries it took
    signal   pid, sig               kill(2), then wait for the state that follows (T or not T)
    close    name                   stop a child (EOF, then SIGKILL) and reap it

A step is [kind, path] or ["thread", [steps...]]; kinds: readlink, read, listdir,
stat (follows links), lstat; "{tid}" in a path is the calling thread's id. An
outcome is {"ok": value} or {"errno": "ENOENT"}.
EOF on stdin: every child is killed and reaped, then the agent exits; as a
namespace's init that takes the whole namespace with it.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

CLONE = {"mount": 0x00020000, "cgroup": 0x02000000, "user": 0x10000000, "pid": 0x20000000}
MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 0x1000, 0x4000, 1 << 18, 1 << 19
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
PR_SET_PDEATHSIG = 1
TIMEOUT = 60.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = [s.encode() if s is not None else None for s in (source, target, fstype)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, None), f"mount {source} {target} {fstype} {flags:#x}")


def die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def readline(stream: Any, timeout: float = TIMEOUT) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no answer in {timeout:g} s")
    return stream.readline()


def outcome(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        return {"ok": fn(*args)}
    except OSError as exc:
        return {"errno": errno.errorcode.get(exc.errno or 0, str(exc.errno))}


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def _stat(path: str, follow: bool = True) -> dict[str, int]:
    st = os.stat(path, follow_symlinks=follow)
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode, "ino": st.st_ino}


KINDS = {
    "readlink": os.readlink,
    "read": _read,
    "listdir": lambda p: sorted(os.listdir(p)),
    "stat": _stat,
    "lstat": lambda p: _stat(p, follow=False),
}


def run_steps(steps: list[Any]) -> list[Any]:
    out: list[Any] = []
    for step in steps:
        if step[0] == "thread":
            out.append(in_thread(step[1]))
        else:
            out.append(outcome(KINDS[step[0]], step[1].replace("{tid}", str(threading.get_native_id()))))
    return out


def in_thread(steps: list[Any]) -> dict[str, Any]:
    """The steps run by a new thread, with its thread id (in our pid namespace: gettid)."""
    result: dict[str, Any] = {}

    def body() -> None:
        result["tid"] = threading.get_native_id()
        result["results"] = run_steps(steps)

    t = threading.Thread(target=body)
    t.start()
    t.join(TIMEOUT)
    if t.is_alive():
        raise TimeoutError("a thread's steps took too long")
    return result


def whoami() -> dict[str, Any]:
    status = {}
    for line in _read("/proc/self/status").splitlines():
        key, _, value = line.partition(":")
        if key in ("NSpid", "NStgid", "Uid", "Gid", "CapEff", "CapPrm"):
            status[key] = value.split()
    cgroup = next((line[3:] for line in _read("/proc/self/cgroup").splitlines() if line.startswith("0::")), None)
    return {
        "pid": os.getpid(),
        "tid": threading.get_native_id(),
        "ppid": os.getppid(),
        "uids": list(os.getresuid()),
        "gids": list(os.getresgid()),
        "status": status,
        "proc_self": os.readlink("/proc/self"),
        "cgroup": cgroup,
        "ns": {name: os.readlink(f"/proc/self/ns/{name}") for name in ("user", "pid", "mnt", "cgroup")},
    }


def proc_state(pid: int) -> str:
    data = _read(f"/proc/{pid}/stat")
    return data[data.rindex(")") + 2 :].split()[0]


class Agent:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[str]] = {}
        self.unpark = threading.Event()

    def serve(self) -> None:
        print(json.dumps({"ready": whoami()}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                answer: dict[str, Any] = {"ok": getattr(self, "op_" + cmd["op"])(cmd)}
            except Exception:
                answer = {"error": traceback.format_exc()}
            print(json.dumps(answer), flush=True)
        self.unpark.set()
        for name in list(self.children):
            self.op_close({"name": name})

    def op_whoami(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return whoami()

    def op_run(self, cmd: dict[str, Any]) -> list[Any]:
        return run_steps(cmd["steps"])

    def op_settled(self, cmd: dict[str, Any]) -> dict[str, Any]:
        attempts = cmd.get("attempts", 30)
        for tries in range(1, attempts + 1):
            before = run_steps(cmd["parts"])
            whole = run_steps(cmd["whole"])
            if run_steps(cmd["parts"]) == before:
                return {"parts": before, "whole": whole, "tries": tries, "held": True}
        return {"parts": before, "whole": whole, "tries": attempts, "held": False}

    def op_park(self, cmd: dict[str, Any]) -> int:
        tids: list[int] = []
        started = threading.Event()

        def body() -> None:
            tids.append(threading.get_native_id())
            started.set()
            self.unpark.wait()

        threading.Thread(target=body, daemon=True).start()
        started.wait(TIMEOUT)
        return tids[0]

    def op_poll(self, cmd: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        tries = 0
        while True:
            tries += 1
            result = run_steps([cmd["step"]])[0]
            elapsed = time.monotonic() - t0
            if "ok" in result or elapsed > cmd.get("timeout", 10.0):
                return {"result": result, "seconds": elapsed, "tries": tries}
            time.sleep(0.01)

    def _popen(self, name: str, argv: list[str], at_pid: int | None) -> subprocess.Popen[str]:
        if name in self.children:
            raise ValueError(f"a child named {name!r} exists")
        if at_pid is not None:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(at_pid - 1))
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.children[name] = p
        if at_pid is not None and p.pid != at_pid:
            raise RuntimeError(f"{name} got pid {p.pid}, not {at_pid}: something else forked in this namespace")
        return p

    def op_spawn(self, cmd: dict[str, Any]) -> dict[str, Any]:
        p = self._popen(cmd["name"], cmd["argv"], cmd.get("at_pid"))
        line = readline(p.stdout).strip() if cmd.get("ready") else None
        return {"pid": p.pid, "line": line}

    def op_agent(self, cmd: dict[str, Any]) -> dict[str, Any]:
        argv = [*cmd.get("prefix", []), sys.executable, os.path.abspath(__file__), *cmd.get("args", [])]
        p = self._popen(cmd["name"], argv, cmd.get("at_pid"))
        assert p.stdout is not None and p.stdin is not None
        line = readline(p.stdout)
        if "--await-map" in cmd.get("args", []):
            pid = json.loads(line)["unshared"]
            write_maps(pid, cmd.get("uid_map"), cmd.get("gid_map"))
            p.stdin.write("go\n")
            p.stdin.flush()
            line = readline(p.stdout)
        if not line:
            raise RuntimeError(f"agent {cmd['name']} exited {p.wait()} before it was ready")
        return {"pid": p.pid, "whoami": json.loads(line)["ready"]}

    def op_to(self, cmd: dict[str, Any]) -> Any:
        p = self.children[cmd["name"]]
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(json.dumps(cmd["cmd"]) + "\n")
        p.stdin.flush()
        line = readline(p.stdout, cmd.get("timeout", TIMEOUT))
        if not line:
            raise RuntimeError(f"agent {cmd['name']} exited {p.wait()}")
        return json.loads(line)

    def op_signal(self, cmd: dict[str, Any]) -> str:
        pid, sig = cmd["pid"], cmd["sig"]
        os.kill(pid, sig)
        deadline = time.monotonic() + TIMEOUT
        want_stopped = sig == signal.SIGSTOP
        while (proc_state(pid) == "T") != want_stopped and sig in (signal.SIGSTOP, signal.SIGCONT):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pid} did not change state after signal {sig}")
            time.sleep(0.01)
        return proc_state(pid)

    def op_close(self, cmd: dict[str, Any]) -> int:
        p = self.children.pop(cmd["name"])
        for pipe in (p.stdin, p.stdout):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            return p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()


def write_maps(pid: int, uid_map: str | None, gid_map: str | None) -> None:
    """What newuidmap/newgidmap do, from the parent user namespace."""
    for name, value in (("uid_map", uid_map), ("gid_map", gid_map)):
        if value:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(value)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--unshare", default="", help="comma-separated: user,mount,pid,cgroup")
    p.add_argument("--await-map", action="store_true", help="wait for the parent to write the id maps")
    p.add_argument("--propagation", choices=("private", "slave", "unchanged"), default="private")
    p.add_argument("--bind", help="SRC:DST, bound recursively in the new mount namespace")
    p.add_argument("--rslave", action="store_true", help="make the --bind mount a recursive slave")
    p.add_argument("--proc", action="store_true", help="mount a procfs for the new pid namespace on /proc")
    p.add_argument("--marker", type=int, default=0, help="MiB of private memory, written")
    args = p.parse_args()
    die_with_parent()
    kinds = [k for k in args.unshare.split(",") if k]
    if kinds:
        flags = 0
        for kind in kinds:
            flags |= CLONE[kind]
        _check(_libc.unshare(flags), f"unshare {args.unshare}")
    if args.await_map:
        print(json.dumps({"unshared": os.getpid()}), flush=True)
        if sys.stdin.readline().strip() != "go":
            sys.exit(1)
    if "pid" in kinds:
        child = os.fork()
        if child:
            # The namespace's init serves on our stdin/stdout; we only wait.
            os.close(0)
            os.close(1)
            _, status = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        die_with_parent()
    if "mount" in kinds:
        if args.propagation != "unchanged":
            mount(None, "/", None, MS_REC | (MS_PRIVATE if args.propagation == "private" else MS_SLAVE))
        if args.bind:
            source, _, target = args.bind.partition(":")
            mount(source, target, None, MS_BIND | MS_REC)
            if args.rslave:
                mount(None, target, None, MS_REC | MS_SLAVE)
        if args.proc:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    keep = None
    if args.marker:
        keep = mmap.mmap(-1, args.marker << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        keep.write(b"\x5a" * (args.marker << 20))
    Agent().serve()
    del keep


if __name__ == "__main__":
    main()
