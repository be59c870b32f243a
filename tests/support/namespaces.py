"""Real namespaces for the tests: nsagent.py processes started in them, driven from the test, and the kernel's side.

An :class:`Agent` is a ``tests/programs/nsagent.py`` process the test started
(in new namespaces, or as another user); a :class:`Remote` is one that an agent
started in turn (nested namespaces), reached through its parent. Both answer
the same calls, and whatever they read they read as themselves, in their own
namespaces: the kernel's answer (their /proc) and the mount's, side by side.

Namespaces die with their processes: every agent dies with its parent
(PR_SET_PDEATHSIG), kills its children on EOF, and a namespace's init takes
the namespace with it. :meth:`Agent.close` ends one and checks it ended.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from totmapsfs.harness import PY, WORKLOAD_SCRIPT, wait_for

from . import PROGRAMS
from .kernel import fields
from .pace import patience

NSAGENT = PROGRAMS / "nsagent.py"


def world_python() -> str:
    """An interpreter every uid of every user namespace can run: the agents and workloads need only the stdlib.

    The venv's may sit under a 0700 home (pyenv in /root): setpriv resolves
    its path while it still holds root's capabilities, but a uid mapped in a
    user namespace gets no capability over host root's files, and cannot.
    """
    for candidate in (PY, sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if candidate and _everyone_may_run(os.path.realpath(candidate)):
            return candidate
    raise AgentError("no python interpreter that every user may run (the venv's sits under a private directory)")


def _everyone_may_run(path: str) -> bool:
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


# The rootless runtimes' mapping (podman, rootless docker): ids 0-65535 inside are 100000-165535 outside.
ROOTLESS_BASE = 100000
ROOTLESS_MAP = f"0 {ROOTLESS_BASE} 65536\n"
TIMEOUT = patience(90.0)


class AgentError(AssertionError):
    """An agent could not do what it was asked: a failure of the test's set-up (the kernel's side), not of the mount."""


class _Calls:
    """What an agent, local or remote, is asked."""

    label: str
    info: dict[str, Any]  # its whoami when it came up
    root: Agent  # the agent the test started, which this one dies with

    def _track(self) -> None:
        """Remember the namespaces this agent is in that the test is not: they must be empty at the end."""
        for kind in ("user", "pid"):
            link = self.info["ns"][kind]
            if link != os.readlink(f"/proc/self/ns/{kind}"):
                self.root.namespaces.add((kind, link))

    def send(self, cmd: dict[str, Any]) -> Any:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """Its own pid, in its own pid namespace."""
        return int(self.info["pid"])

    def whoami(self) -> dict[str, Any]:
        return self.send({"op": "whoami"})  # type: ignore[no-any-return]

    def run(self, *steps: list[Any]) -> list[dict[str, Any]]:
        """Each step's outcome, {"ok": value} or {"errno": "ENOENT"}, done one right after the other."""
        return self.send({"op": "run", "steps": list(steps)})  # type: ignore[no-any-return]

    def one(self, kind: str, path: str | Path) -> dict[str, Any]:
        return self.run([kind, str(path)])[0]

    def settled(self, parts: Iterable[list[Any]], whole: Iterable[list[Any]], attempts: int = 30) -> dict[str, Any]:
        """parts, whole, parts again, until the parts held still (support.kernel.settled, done by the agent)."""
        answer = self.send({"op": "settled", "parts": list(parts), "whole": list(whole), "attempts": attempts})
        if not answer["held"]:
            raise AgentError(f"{self.label}: the kernel's figures never held still in {attempts} attempts")
        return answer  # type: ignore[no-any-return]

    def spawn(self, name: str, argv: list[str], at_pid: int | None = None, ready: bool = False) -> dict[str, Any]:
        return self.send({"op": "spawn", "name": name, "argv": argv, "at_pid": at_pid, "ready": ready})  # type: ignore[no-any-return]

    def workload(self, name: str, *args: str, user: int | None = None, at_pid: int | None = None) -> int:
        """A workload.py process (tests' known memory) as our child, in our namespaces; its pid as we see it."""
        argv = [world_python(), str(WORKLOAD_SCRIPT), *args, "--parent", str(self.pid)]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        answer = self.spawn(name, argv, at_pid=at_pid, ready=True)
        words = (answer["line"] or "").split()
        if words[:1] != ["ready"]:
            raise AgentError(f"{self.label}: workload {name} did not start: {answer}")
        return int(words[1])

    def agent(
        self,
        name: str,
        *args: str,
        prefix: Iterable[str] = (),
        uid_map: str | None = None,
        gid_map: str | None = None,
        at_pid: int | None = None,
    ) -> Remote:
        """Another agent as our child: in new namespaces (``args``), run through ``prefix`` (setpriv, unshare)."""
        answer = self.send(
            {
                "op": "agent",
                "name": name,
                "args": list(args),
                "prefix": list(prefix),
                "uid_map": uid_map,
                "gid_map": gid_map,
                "at_pid": at_pid,
            }
        )
        return Remote(self, name, answer["whoami"], answer["pid"])

    def park(self) -> int:
        """A thread of this agent that waits until the end: its thread id, in the agent's pid namespace."""
        return self.send({"op": "park"})  # type: ignore[no-any-return]

    def signal(self, pid: int, sig: int) -> str:
        """kill(pid, sig) from this agent; for SIGSTOP/SIGCONT, returns once the state followed."""
        return self.send({"op": "signal", "pid": pid, "sig": int(sig)})  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def stopped(self, *pids: int) -> Any:
        """SIGSTOP ``pids`` (numbers in this agent's pid namespace), SIGCONT on the way out."""
        for pid in pids:
            self.signal(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                self.signal(pid, signal.SIGCONT)


class Agent(_Calls):
    """An nsagent.py started by the test: ``prefix`` (setpriv, unshare...) then the agent with ``args``.

    With ``--await-map`` in ``args`` the test writes the id maps, as root in
    the initial user namespace (where newuidmap is not installed, this is the
    only way to a rootless mapping). ``preexec`` runs in the child before exec.
    """

    def __init__(
        self,
        *args: str,
        prefix: Iterable[str] = (),
        uid_map: str | None = None,
        gid_map: str | None = None,
        preexec: Callable[[], None] | None = None,
        label: str = "agent",
    ) -> None:
        self.label = label
        self.root = self
        self.namespaces: set[tuple[str, str]] = set()
        self._err = tempfile.TemporaryFile()
        argv = [*prefix, world_python(), str(NSAGENT), *args]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, preexec_fn=preexec
        )
        try:
            line = self._line()
            if "--await-map" in args:
                pid = json.loads(line)["unshared"]
                for name, value in (("uid_map", uid_map), ("gid_map", gid_map)):
                    if value:
                        Path(f"/proc/{pid}/{name}").write_text(value)
                self._write("go")
                line = self._line()
            self.info = json.loads(line)["ready"]
            self._track()
        except Exception:
            self.close()
            raise

    def _write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            why = "exited" if self.proc.poll() is not None else f"said nothing in {TIMEOUT:g} s"
            raise AgentError(f"{self.label} ({' '.join(self.proc.args)}) {why}: {self.stderr()[-3000:]}")
        return line

    def send(self, cmd: dict[str, Any]) -> Any:
        self._write(json.dumps(cmd))
        answer = json.loads(self._line())
        if "error" in answer:
            raise AgentError(f"{self.label}: {cmd['op']} failed in the agent:\n{answer['error']}")
        return answer["ok"]

    @property
    def host_pid(self) -> int:
        """The pid of the process that serves, on the host: the forked init when a pid namespace was made."""
        if self.info["ns"]["pid"] == os.readlink("/proc/self/ns/pid"):
            return self.proc.pid
        return host_pid(self.info["ns"]["pid"], self.pid)

    def close(self) -> None:
        """EOF (it kills and reaps its children), SIGKILL after 10 s; then no process may be left in its namespaces."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._err.close()
        try:
            wait_for(lambda: not members(self.namespaces), what=f"{self.label}'s namespaces to empty")
        except TimeoutError:
            left = members(self.namespaces)
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise AgentError(f"{self.label} left processes behind in its namespaces: {left}") from None


class Remote(_Calls):
    """An agent started by another agent (``parent``), known there as ``name``; ``spawned_pid`` is its pid there."""

    def __init__(self, parent: _Calls, name: str, info: dict[str, Any], spawned_pid: int) -> None:
        self.parent, self.name, self.info, self.spawned_pid = parent, name, info, spawned_pid
        self.label = f"{parent.label}/{name}"
        self.root = parent.root
        self._track()

    def send(self, cmd: dict[str, Any]) -> Any:
        answer = self.parent.send({"op": "to", "name": self.name, "cmd": cmd})
        if "error" in answer:
            raise AgentError(f"{self.label}: {cmd['op']} failed in the agent:\n{answer['error']}")
        return answer["ok"]


# -- reading the answers --------------------------------------------------------


def pid_names(listing: Iterable[str]) -> set[int]:
    return {int(n) for n in listing if n.isdigit()}


def value(result: dict[str, Any], what: str = "") -> Any:
    """The value of an outcome that must have succeeded (a kernel-side read): AgentError otherwise."""
    if "ok" not in result:
        raise AgentError(f"the kernel's side failed: {what}: {result['errno']}")
    return result["ok"]


def answer(result: dict[str, Any]) -> str:
    """An outcome as one word for comparisons: "ok", or the errno name."""
    return "ok" if "ok" in result else str(result["errno"])


def strerror(name: str) -> str:
    return f"{name} ({os.strerror(getattr(errno, name))})" if hasattr(errno, name) else name


def members(namespaces: set[tuple[str, str]]) -> list[int]:
    """Host pids of the processes in any of ``namespaces`` ((kind, "kind:[inode]") pairs)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            for kind, link in namespaces:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{name}/ns/{kind}") == link:
                        found.append(int(name))
                        break
    return found


def host_pid(pid_ns: str, ns_pid: int) -> int:
    """The host pid of the process that is ``ns_pid`` in pid namespace ``pid_ns`` ("pid:[inode]"): /proc's NSpid."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != pid_ns:
                continue
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        if int(nspid[-1]) == ns_pid:
            return int(name)
    raise AgentError(f"no process is {ns_pid} in {pid_ns}")


class Verdicts:
    """The mount's answers against the kernel's, collected so that every kernel-side check runs first.

    A kernel-side check that fails raises at once (AgentError, "set-up: ...");
    a mount-side disagreement is noted, and :meth:`done` (the test's last line)
    fails once, listing every one of them.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []

    def that(self, ok: object, message: str) -> bool:
        if not ok:
            self.problems.append(message)
        return bool(ok)

    def same(self, ours: object, kernel: object, what: str) -> bool:
        return self.that(ours == kernel, f"{what}: the mount says {ours!r}, the kernel {kernel!r}")

    def numbers(self, ours: dict[str, Any], kernel: dict[str, int], what: str) -> None:
        """A totmaps read (an outcome) against the kernel's smaps_rollup fields for the same process."""
        if not self.that(
            "ok" in ours, f"{what}: the kernel reads it, the mount answers {strerror(ours.get('errno', ''))}"
        ):
            return
        mine = fields(ours["ok"].encode())
        rss = f"Rss {mine['Rss']} kB" if "Rss" in mine else "an empty file"
        self.that(
            mine == kernel,
            f"{what}: the mount's numbers are not the kernel's ({rss}, the kernel's Rss {kernel['Rss']} kB)",
        )

    def pids(self, before: set[int], after: set[int], ours: set[int], what: str) -> None:
        """``ours`` (a listing taken between ``before`` and ``after``) has every pid of both and none of neither."""
        missing, extra = sorted((before & after) - ours), sorted(ours - (before | after))
        self.that(
            not missing, f"{what}: {len(missing)} pids the kernel listed before and after are missing: {missing[:20]}"
        )
        self.that(
            not extra,
            f"{what}: {len(extra)} pids the kernel never listed are there: {extra[:20]} "
            f"(the kernel's: {sorted(before | after)[:30]})",
        )

    def done(self) -> None:
        if self.problems:
            pytest.fail(
                f"the mount disagrees with the kernel ({len(self.problems)}):\n  - " + "\n  - ".join(self.problems),
                pytrace=False,
            )
