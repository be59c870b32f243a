"""The C parser's own behaviour: no over-read (guard pages), the choice of implementation, the GIL, leaks."""

import gc
import importlib.util
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import totmapsfs.parser
from support.parsers import HANDWRITTEN, Impl, ParseFn, _names
from totmapsfs.parser import SmapsParseError, _reference

SUPPORT = Path(__file__).resolve().parent.parent


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


def test_gil_released_during_parse(impl: Impl) -> None:
    if impl.name != "c":
        pytest.skip("the pure-Python parser holds the GIL")
    chunk = Path("/proc/self/smaps").read_bytes()
    data = chunk * (50_000_000 // len(chunk) + 1)
    while True:  # make one parse last long enough to tell a held GIL from scheduling noise
        expected = impl.parse(data)
        single = min(_timed(impl.parse, data) for _ in range(2))
        if single >= 0.04 or len(data) > 400_000_000:
            break
        data *= 2

    gaps: list[tuple[float, float]] = []  # counter-thread stalls longer than 1 ms
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            if now - last > 0.001:
                gaps.append((last, now))
            last = now
            ticks += 1

    windows: list[tuple[float, float]] = []
    results: list[dict[str, int]] = []

    def parse() -> None:
        start = time.perf_counter()
        results.append(impl.parse(data))
        windows.append((start, time.perf_counter()))

    counter = threading.Thread(target=count)
    counter.start()
    try:
        parsers = [threading.Thread(target=parse) for _ in range(2)]
        for thread in parsers:
            thread.start()
        for thread in parsers:
            thread.join()
    finally:
        stop.set()
        counter.join()
    assert results == [expected, expected]
    begin, end = min(w[0] for w in windows), max(w[1] for w in windows)
    # A parse holding the GIL would stall the counter for a whole parse.
    longest = max((min(b, end) - max(a, begin) for a, b in gaps), default=0.0)
    assert longest < single / 2, (longest, single)
    assert ticks > 1000


def _timed(parse: ParseFn, data: bytes) -> float:
    start = time.perf_counter()
    parse(data)
    return time.perf_counter() - start


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
