"""Differential fuzz target (atheris/libFuzzer): the C smaps parser against the pure-Python reference.

Usage (from the repository root, with the venv's python):

    python tests/programs/fuzz_parser.py [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]
        coverage-guided fuzzing; new inputs go to CORPUS_DIR, a failing one to
        -artifact_prefix (e.g. -max_total_time=60 -artifact_prefix=build/fuzz/).
    python tests/programs/fuzz_parser.py --replay FILE_OR_DIR ...
        runs every input once without libFuzzer or atheris (for valgrind, and
        to reproduce an artifact); exits 1 at the first failing input.

Every input is checked (check()):

* totmapsfs.parser._speedups.parse_smaps (C) and totmapsfs.parser._reference.parse_smaps (the
  reference) return the same ordered {name: kB} or raise the same exception
  class with the same message; any other exception is a failure too;
* the C parser gives the same outcome on a copy of the input in a buffer of
  exactly its size from malloc(), so that ASan and valgrind flag even a
  one-byte over-read (a bytes object has a spare NUL after its end);
* a parsed result survives format_totmaps() and parsing back, unchanged;
* the C format_totmaps and the reference (_format.format_totmaps) give the
  same bytes or raise the same exception class on a hostile mapping that the
  input describes (tests/support/adversarial.py: dict subclasses, mappings
  that are not dicts, names of odd types and lengths, values whose __index__
  changes the mapping, raises, or returns huge, negative or odd results).
* parse_smaps_mappings (C) and totmapsfs.parser._mappings.parse_smaps_mappings
  (the reference of MOUNT/files) agree the same way, on bytes and on the
  exact-size copy.

Coverage guidance: atheris instruments the bytecode of totmapsfs.parser._reference,
totmapsfs.parser._format and this module (branches, comparisons, and its regex hook
on the reference's field-line pattern). The C extension's own edges and
comparisons guide it too when it is built with clang -fsanitize=fuzzer-no-link,
as `make fuzz` does; the usual gcc build (tests/stress/test_fuzz.py, CI) has no such
hooks, so there only its results are checked, on every input all the same.

TOTMAPSFS_FUZZ_SABOTAGE=1 swaps in a C parser that swallows OverflowError
(returns {}), a silent-overflow bug; TOTMAPSFS_FUZZ_SABOTAGE=format a C
formatter that swallows RuntimeError (a mapping changed during the walk):
tests/stress/test_fuzz.py uses them to prove that a difference makes this
target fail and leave an artifact.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

# tests/ on the path for support.adversarial (imports nothing of totmapsfs): PYTHONSAFEPATH=1 leaves it off.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support.adversarial import format_outcome, mapping

ParseFn = Callable[[bytes | bytearray | memoryview], dict[str, int]]
FormatFn = Callable[[Any], bytes]
MappingsFn = Callable[[bytes | bytearray | memoryview], dict[str, dict[str, int]]]
Outcome = tuple[str, object, object]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


class Mismatch(AssertionError):
    """The two parsers (or a round trip) disagree on an input."""


class Parsers:
    """The implementations under test, imported once (instrumented when fuzzing)."""

    def __init__(
        self,
        c_parse: ParseFn,
        py_parse: ParseFn,
        c_format: FormatFn,
        reference: ModuleType,
        formatter: ModuleType,
        mappings: tuple[MappingsFn, MappingsFn],
    ) -> None:
        self.c_parse = c_parse
        self.py_parse = py_parse
        self.c_mappings, self.py_mappings = mappings
        self.errors = (OverflowError, reference.SmapsParseError)
        self.c_format = c_format
        self.format_totmaps = formatter.format_totmaps


def outcome(parse: ParseFn | MappingsFn, data: bytes | memoryview, errors: tuple[type[BaseException], ...]) -> Outcome:
    """("ok", ordered items, None) or ("raise", class, message); other exceptions propagate."""
    try:
        result = parse(data)
    except errors as exc:
        return ("raise", type(exc), str(exc))
    if type(result) is not dict:
        raise Mismatch(f"{parse!r} returned {type(result).__name__}, not dict")
    items = [(k, list(v.items())) if type(v) is dict else (k, v) for k, v in result.items()]
    return ("ok", items, None)


def exact_size_outcome(parsers: Parsers, data: bytes, parse: ParseFn | MappingsFn | None = None) -> Outcome:
    """The C parser's outcome on a malloc()ed copy of *data* that ends exactly where the data does."""
    size = len(data)
    address = _libc.malloc(size or 1)
    if not address:
        raise MemoryError("malloc failed")
    try:
        ctypes.memmove(address, data, size)
        # from_address wraps the block without copying it: the parser reads malloc's block itself.
        view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        try:
            return outcome(parse or parsers.c_parse, view, parsers.errors)
        finally:
            view.release()
    finally:
        _libc.free(address)


def _describe(data: bytes) -> str:
    head = data[:200]
    return f"{len(data)} bytes, starting {head!r}"


def check(parsers: Parsers, data: bytes) -> None:
    """Raise Mismatch unless both parsers agree on *data* and a result round-trips."""
    c = outcome(parsers.c_parse, data, parsers.errors)
    py = outcome(parsers.py_parse, data, parsers.errors)
    if c != py:
        raise Mismatch(f"C {c!r} != Python {py!r} on {_describe(data)}")
    exact = exact_size_outcome(parsers, data)
    if exact != c:
        raise Mismatch(f"C on an exact-size buffer {exact!r} != C on bytes {c!r} on {_describe(data)}")
    if c[0] == "ok":
        fields = dict(cast(list[tuple[str, int]], c[1]))
        text = parsers.format_totmaps(fields)
        for parse in (parsers.c_parse, parsers.py_parse):
            again = outcome(parse, text, parsers.errors)
            if again != c:
                raise Mismatch(f"format_totmaps round trip gave {again!r}, not {c!r}, for {text[:200]!r}")
    c = outcome(parsers.c_mappings, data, parsers.errors)
    py = outcome(parsers.py_mappings, data, parsers.errors)
    if c != py:
        raise Mismatch(f"mappings: C {c!r} != Python {py!r} on {_describe(data)}")
    if exact_size_outcome(parsers, data, parsers.c_mappings) != c:
        raise Mismatch(f"mappings: C on an exact-size buffer differs on {_describe(data)}")
    check_format(parsers, data)


def check_format(parsers: Parsers, data: bytes) -> None:
    """Raise Mismatch unless both formatters agree on the hostile mapping *data* describes (a fresh one each)."""
    c = format_outcome(parsers.c_format, mapping(data))
    py = format_outcome(parsers.format_totmaps, mapping(data))
    if c != py or c[0] == "not bytes":
        raise Mismatch(f"format_totmaps: C {c!r} != Python {py!r} on the mapping of {_describe(data)}")


def _sabotaged(parse: ParseFn) -> ParseFn:
    """A parser with a planted silent-overflow bug (see the module docstring)."""

    def parse_swallowing_overflow(data: bytes | bytearray | memoryview) -> dict[str, int]:
        try:
            return parse(data)
        except OverflowError:
            return {}

    return parse_swallowing_overflow


def _sabotaged_format(fmt: FormatFn) -> FormatFn:
    """A formatter with a planted bug: a mapping changed while it is walked gives b"", not RuntimeError."""

    def format_swallowing_runtime_error(fields: Any) -> bytes:
        try:
            return fmt(fields)
        except RuntimeError:
            return b""

    return format_swallowing_runtime_error


def load_parsers() -> Parsers:
    """Import both implementations; TOTMAPSFS_FUZZ_SABOTAGE=1 (or =format) plants a test bug."""
    from totmapsfs.parser import _format, _mappings, _reference
    from totmapsfs.parser._speedups import format_totmaps as c_format
    from totmapsfs.parser._speedups import parse_smaps as c_parse  # ImportError: no C parser to fuzz
    from totmapsfs.parser._speedups import parse_smaps_mappings as c_mappings

    sabotage = os.environ.get("TOTMAPSFS_FUZZ_SABOTAGE")
    if sabotage == "1":
        c_parse = _sabotaged(c_parse)
    elif sabotage == "format":
        c_format = _sabotaged_format(c_format)
    mappings = (c_mappings, _mappings.parse_smaps_mappings)
    return Parsers(c_parse, _reference.parse_smaps, c_format, _reference, _format, mappings)


def _inputs(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def replay(paths: list[str]) -> int:
    """Check every input file under *paths* once; 0 if all pass, 1 at the first failure."""
    parsers = load_parsers()
    count = 0
    for path in _inputs(paths):
        try:
            check(parsers, path.read_bytes())
        except Exception:
            print(f"FAILED on {path}", file=sys.stderr, flush=True)
            raise
        count += 1
    print(f"replayed {count} inputs: all agree", flush=True)
    return 0 if count else 1


def fuzz(argv: list[str]) -> None:
    """Coverage-guided fuzzing under atheris; libFuzzer parses *argv* and exits the process."""
    # A C extension built with -fsanitize=fuzzer-no-link (make fuzz does,
    # with clang) needs libFuzzer's coverage callbacks as global symbols when
    # it is imported: so load atheris's built-in libFuzzer RTLD_GLOBAL first,
    # and make Setup() use that same copy. Harmless for a plain gcc build.
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_GLOBAL)
    try:
        import atheris.core_with_libfuzzer
    finally:
        sys.setdlopenflags(flags)
    import atheris

    # Only modules imported inside this block are instrumented, so totmapsfs
    # must not have been imported yet (this module imports it nowhere else).
    assert "totmapsfs" not in sys.modules
    with atheris.instrument_imports(
        include=["totmapsfs.parser._reference", "totmapsfs.parser._format", "totmapsfs.parser._mappings"]
    ):
        parsers = load_parsers()
    atheris.instrument_func(check)
    atheris.instrument_func(outcome)
    print(
        f"INFO: C parser under test: {sys.modules['totmapsfs.parser._speedups'].__file__}", file=sys.stderr, flush=True
    )

    def test_one_input(data: bytes) -> None:
        check(parsers, data)

    atheris.Setup(argv, test_one_input, internal_libfuzzer=True)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--replay":
        try:
            return replay(argv[2:])
        except Mismatch as exc:
            print(f"Mismatch: {exc}", file=sys.stderr)
            return 1
    fuzz(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
