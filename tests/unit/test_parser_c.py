"""The C parser's own behaviour: no over-read (guard pages), the choice of implementation, the GIL, leaks."""

import gc
import importlib.util
import mmap
import os
import signal
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

import totmapsfs.parser
from support.parsers import HANDWRITTEN, Impl, ParseFn, _names
from totmapsfs.parser import SmapsParseError, _reference

SUPPORT = Path(__file__).resolve().parent.parent
TIMEOUT_SCALE = float(os.environ.get("TOTMAPSFS_TIMEOUT_SCALE", "1"))


def test_guard_page_faults_on_overread() -> None:
    """GuardedBuffer really ends readable memory where the placed data ends."""
    code = (
        "import ctypes, sys\n"
        f"sys.path.insert(0, {str(SUPPORT)!r})\n"
        "from support.parsers import GuardedBuffer\n"
        "guard = GuardedBuffer(10)\n"
        "with guard.placed(b'Rss: 1 kB') as view:\n"
        "    assert bytes(view) == b'Rss: 1 kB'\n"
        "anchor = ctypes.c_char.from_buffer(guard.map)\n"
        "end = ctypes.addressof(anchor) + guard.size\n"
        "assert ctypes.string_at(end - 9, 9) == b'Rss: 1 kB'\n"
        "print('readable', flush=True)\n"
        "ctypes.string_at(end, 1)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == "readable\n", result.stderr
    if "AddressSanitizer: SEGV" in result.stderr:  # make asan: ASan reports the fault and aborts
        assert result.returncode != 0
    else:
        assert result.returncode == -signal.SIGSEGV, result.stderr


# --- implementation selection ---


def _load_parser_copy(name: str) -> object:
    """Execute the parser package's __init__ afresh as a separate module, leaving totmapsfs.parser alone."""
    # Named inside the package, so that its relative imports find the real _reference.
    spec = importlib.util.spec_from_file_location(
        f"totmapsfs.parser.{name}", totmapsfs.parser.__file__, submodule_search_locations=None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_implementation_selection(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    assert totmapsfs.parser.SmapsParseError is SmapsParseError
    if impl.name == "c":
        from totmapsfs.parser import _speedups

        assert (totmapsfs.parser.IMPLEMENTATION, totmapsfs.parser.MISSING_C) == ("c", None)
        assert totmapsfs.parser.parse_smaps is _speedups.parse_smaps is impl.parse
        assert _speedups.SmapsParseError is SmapsParseError
        assert (_speedups.MAX_FIELDS, _speedups.MAX_NAME_LEN) == (_reference.MAX_FIELDS, _reference.MAX_NAME_LEN)
        return
    # Without the C module: fall back and say why (the daemon logs it, once), or refuse when CI requires C.
    monkeypatch.setitem(sys.modules, "totmapsfs.parser._speedups", None)  # makes the import fail
    monkeypatch.delenv("TOTMAPSFS_REQUIRE_C", raising=False)
    fallback = _load_parser_copy("_fallback")
    assert fallback.IMPLEMENTATION == "python"  # type: ignore[attr-defined]
    assert fallback.parse_smaps is _reference.parse_smaps  # type: ignore[attr-defined]
    assert "_speedups" in fallback.MISSING_C  # type: ignore[attr-defined]
    monkeypatch.setenv("TOTMAPSFS_REQUIRE_C", "1")
    with pytest.raises(ImportError, match="TOTMAPSFS_REQUIRE_C"):
        _load_parser_copy("_required")


# --- C-specific behaviour (skipped for the Python implementation) ---


# The smaps text of a buffer whose last page is missing: the parse can only
# finish once a Python thread supplies that page (userfaultfd, user-mode faults
# only, so no privilege is needed). With the GIL released during the scan,
# that thread runs; with it held, the two wait for each other forever. No
# clock decides: the result shows whether the thread ran mid-parse.
PAGES = 32  # 128 KiB: over the C parser's RELEASE_GIL_FROM (64 KiB); below it, it holds the GIL by design
_UFFD_FIELDS = b"Pss: 5 kB\n"


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0xAA << 8) | nr  # _IOWR(UFFDIO, nr, struct), linux/userfaultfd.h


def parse_through_a_page_fault() -> None:
    """In a child process: print what parse_smaps makes of a buffer whose last page a Python thread fills."""
    import ctypes
    import fcntl
    import mmap
    import os
    import struct

    from totmapsfs.parser._speedups import parse_smaps

    libc = ctypes.CDLL(None, use_errno=True)
    # SYS_userfaultfd (x86-64: 323, arm64: 282); UFFD_USER_MODE_ONLY (1): no privilege needed.
    number = {"x86_64": 323, "aarch64": 282}.get(os.uname().machine)
    uffd = libc.syscall(number, os.O_CLOEXEC | 1) if number else -1
    if uffd < 0:
        print("no userfaultfd:", os.strerror(ctypes.get_errno()) if number else os.uname().machine, flush=True)
        return
    fcntl.ioctl(uffd, _iowr(0x3F, 24), bytearray(struct.pack("QQQ", 0xAA, 0, 0)))  # UFFDIO_API
    page = mmap.PAGESIZE
    region = mmap.mmap(-1, PAGES * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    line = b"Rss:                   1 kB\n"
    body = line * ((PAGES - 1) * page // len(line))
    region[: (PAGES - 1) * page] = body.ljust((PAGES - 1) * page, b"\n")  # every page but the last present
    anchor = ctypes.c_char.from_buffer(region)
    last = ctypes.addressof(anchor) + (PAGES - 1) * page
    del anchor
    # UFFDIO_REGISTER, MODE_MISSING: a touch of the absent last page waits for us.
    fcntl.ioctl(uffd, _iowr(0x00, 32), bytearray(struct.pack("QQQQ", last, page, 1, 0)))
    source = ctypes.create_string_buffer(_UFFD_FIELDS.ljust(page, b"\n"), page)
    served: list[int] = []

    def serve() -> None:
        message = os.read(uffd, 32)  # struct uffd_msg: the fault address at offset 16
        address = struct.unpack_from("Q", message, 16)[0]
        served.append(address)
        # UFFDIO_COPY: the page's contents, and the faulting thread resumes.
        fcntl.ioctl(uffd, _iowr(0x03, 40), bytearray(struct.pack("QQQQq", last, ctypes.addressof(source), page, 0, 0)))

    threading.Thread(target=serve, daemon=True).start()
    result = parse_smaps(memoryview(region))
    print(result, [address // page == last // page for address in served], flush=True)


def test_gil_released_during_parse(impl: Impl) -> None:
    if impl.name != "c":
        pytest.skip("the pure-Python parser holds the GIL")
    try:
        result = subprocess.run(
            [sys.executable, "-c", "import unit.test_parser_c as t; t.parse_through_a_page_fault()"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])},
            capture_output=True,
            text=True,
            timeout=60 * TIMEOUT_SCALE,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the parse and the thread serving its page waited for each other: the parse held the GIL")
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("no userfaultfd"):
        pytest.skip(result.stdout.strip())
    rss = (PAGES - 1) * mmap.PAGESIZE // len(b"Rss:                   1 kB\n")
    # Pss is only on the page the other thread supplied, while the parse was under way.
    assert result.stdout == f"{{'Rss': {rss}, 'Pss': 5}} [True]\n", result.stderr[-3000:]


def _call_expecting(parse: ParseFn, data: object, error: type[BaseException] | None) -> None:
    try:
        parse(data)  # type: ignore[arg-type]
    except BaseException as exc:
        assert error is not None and type(exc) is error
    else:
        assert error is None


def test_no_reference_or_memory_leaks(impl: Impl) -> None:
    calls = 10_000 if impl.name == "c" else 1_000  # the Python one has nothing to leak; keep it quick
    cases: list[tuple[object, type[BaseException] | None]] = [
        (HANDWRITTEN, None),
        (bytearray(HANDWRITTEN), None),
        (b"Rss: 99999999999999999999 kB", OverflowError),
        (b"Rss: 18446744073709551615 kB\nRss: 1 kB", OverflowError),
        (b"\n".join(b"%s: 1 kB" % name for name in _names(257)), SmapsParseError),
        ("Rss: 1 kB", TypeError),
        (memoryview(HANDWRITTEN)[::2], BufferError),
    ]
    for data, error in cases:
        for _ in range(100):  # warm up caches, interned strings and small-int objects
            _call_expecting(impl.parse, data, error)
        gc.collect()
        refs = sys.getrefcount(data), sys.getrefcount(SmapsParseError)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(calls):
                _call_expecting(impl.parse, data, error)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert (sys.getrefcount(data), sys.getrefcount(SmapsParseError)) == refs, data
        assert grown < 32 * 1024, (grown, data)
