"""Hostile Python inputs for the C entry points: mappings for format_totmaps built from bytes, and odd arguments.

Imports nothing of totmapsfs: the fuzz target (tests/programs/fuzz_parser.py)
uses it before atheris instruments the package.

The C code must survive Python code that runs in the middle of a call: a
value's ``__index__``, a mapping's ``items()``, a name's ``__add__`` or
``__format__``. Those here change the mapping being formatted, raise, or
return what the caller does not expect.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

U64_MAX = 2**64 - 1
HUGE = 10**5000  # its str() is refused (sys.get_int_max_str_digits): in the out-of-range message; made once


class Choices:
    """The fuzz input as a stream of choices: the next byte modulo n, 0 once the input is spent."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def pick(self, n: int) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1] % n


# --- names ---


class PlainStr(str):
    """A str subclass that changes nothing."""


class AddGivesInt(str):
    def __add__(self, other: object) -> Any:
        return 7  # "%-16s" % 7 is "7": a line after all


class AddGivesBytes(str):
    def __add__(self, other: object) -> Any:
        return b"\xff:"


class AddGivesWide(str):
    def __add__(self, other: object) -> Any:
        return str(self) + "\u00e9:"


class FormatRaises:
    """A name whose f"{name}" (the reference's out-of-range message) raises."""

    def __format__(self, spec: str) -> str:
        raise LookupError("no format")


def _names(c: Choices) -> object:
    options: list[Callable[[], object]] = [
        lambda: "Rss",
        lambda: "Private_Hugetlb",
        lambda: "",
        lambda: "N" * (c.pick(256) * 41),  # up to 10,455 characters: past any fixed line buffer
        lambda: "Rs\u015b",
        lambda: "\ud800",  # a lone surrogate
        lambda: "a\0b",
        lambda: PlainStr("Pss"),
        lambda: AddGivesInt("x"),
        lambda: AddGivesBytes("x"),
        lambda: AddGivesWide("x"),
        lambda: 5,
        lambda: None,
        lambda: b"Rss",
        lambda: (1, 2),
        lambda: FormatRaises(),
    ]
    return options[c.pick(len(options))]()


# --- values ---


class Index:
    """An integer-like value: __index__ calls *fn*, counting its calls."""

    def __init__(self, fn: Callable[[int], object]) -> None:
        self.fn = fn
        self.calls = 0

    def __index__(self) -> Any:
        self.calls += 1
        return self.fn(self.calls)


class IntSubclass(int):
    pass


def mutate(target: object, how: int) -> None:
    """Change *target*, whatever kind of container it is: add, remove, clear, replace, or swap a key."""
    store: Any = target._store if isinstance(target, (MappingOf, ItemsOnly)) else target  # type: ignore[attr-defined]
    if isinstance(store, list):  # ItemsOnly's list of items
        if how == 0:
            store.append(("Added", 1))
        elif store:
            del store[0]
        return
    keys = list(store)
    if how == 0:
        for i in range(64):  # enough to make a dict resize its table
            store[f"K{i}"] = i
    elif how == 1 and keys:
        del store[keys[0]]
    elif how == 2:
        store.clear()
    elif how == 3 and keys:
        store[keys[-1]] = 3  # same keys, same size
    elif how == 4 and keys:
        del store[keys[0]]
        store["Swapped"] = 4  # same size, other keys


def _values(c: Choices, box: list[object]) -> object:
    small = c.pick(256)
    when, how = c.pick(3) + 1, c.pick(5)

    def mutating(calls: int) -> int:
        if calls == when:  # the 2nd call: where the old two-pass C formatter wrote past its buffer
            mutate(box[0], how)
        return small

    def raising(calls: int) -> int:
        raise KeyError("from __index__")

    options: list[Callable[[], object]] = [
        lambda: small,
        lambda: 0,
        lambda: U64_MAX,
        lambda: U64_MAX + 1,
        lambda: -1,
        lambda: -(2**70),
        lambda: HUGE,
        lambda: True,
        lambda: 1.5,
        lambda: "7",
        lambda: None,
        lambda: IntSubclass(small),
        lambda: Index(lambda calls: small),
        lambda: Index(raising),
        lambda: Index(lambda calls: 1.5),
        lambda: Index(lambda calls: IntSubclass(small)),  # DeprecationWarning from operator.index
        lambda: Index(lambda calls: -small - 1),
        lambda: Index(lambda calls: U64_MAX + small),
        lambda: Index(mutating),
    ]
    return options[c.pick(len(options))]()


# --- containers ---


class ReversedItems(dict[object, object]):
    """A dict whose items() is overridden: the reference calls it, so the C formatter must too."""

    def items(self) -> Any:
        return list(reversed(list(super().items())))


class ItemsOnly:
    """Not a mapping: an object with an items() method giving any items at all (malformed ones too)."""

    def __init__(self, items: list[object]) -> None:
        self._store = items

    def items(self) -> list[object]:
        return self._store


class MappingOf(Mapping[object, object]):
    """A collections.abc.Mapping over a dict (its items() walks the dict)."""

    def __init__(self, store: dict[object, object]) -> None:
        self._store = store

    def __getitem__(self, key: object) -> object:
        return self._store[key]

    def __iter__(self) -> Iterator[object]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)


def _item(c: Choices, name: object, value: object) -> object:
    shapes: list[Callable[[], object]] = [
        lambda: (name, value),
        lambda: [name, value],
        lambda: (name, value, 3),
        lambda: (name,),
        lambda: 5,
        lambda: "ab",  # unpacks to "a", "b": then "b" is no integer
        lambda: iter((name, value)),
    ]
    return shapes[c.pick(len(shapes))]()


def mapping(data: bytes) -> object:
    """A fresh argument for format_totmaps described by *data*; make one per call, as its values may change it."""
    c = Choices(data)
    kind = c.pick(7)
    box: list[object] = [None]
    pairs = [(_names(c), _values(c, box)) for _ in range(c.pick(9))]
    store: dict[object, object] = {}
    for name, value in pairs:
        try:
            store[name] = value
        except TypeError:  # unhashable: only ItemsOnly can hold it
            pass
    target: object
    if kind == 0:
        target = store
    elif kind == 1:
        target = ReversedItems(store)
    elif kind == 2:
        target = MappingOf(store)
    elif kind == 3:
        target = ItemsOnly([_item(c, name, value) for name, value in pairs])
    elif kind == 4:
        target = PlainDict(store)
    elif kind == 5:
        target = list(store.items())  # no items(): AttributeError from both
    else:
        target = None
    box[0] = target
    return target


class PlainDict(dict[object, object]):
    """A dict subclass that changes nothing."""


def format_outcome(fmt: Callable[[Any], object], argument: object) -> tuple[str, object]:
    """("ok", the bytes) or ("raise", the exception class): what the formatters must agree on."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning raises in both, whatever the caller's filters
        try:
            result = fmt(argument)
        except Exception as exc:
            return ("raise", type(exc))
    if type(result) is not bytes:
        return ("not bytes", type(result))
    return ("ok", result)


# --- odd arguments for every entry point ---


class BytesSubclass(bytes):
    pass


class BoolRaises:
    def __bool__(self) -> bool:
        raise ArithmeticError("from __bool__")


def odd_arguments() -> list[object]:
    """Objects of the wrong type, of the wrong size, or whose conversion runs code that raises."""
    return [
        None,
        "",
        "3",
        b"",
        b"3",
        BytesSubclass(b"Rss: 1 kB\n"),
        bytearray(b"Rss: 1 kB\n"),
        memoryview(b"Rss: 1 kB\nPss: 2 kB\n")[::2],  # not contiguous: BufferError
        1.5,
        True,
        -1,
        0,
        2**31,
        -(2**31) - 1,
        2**63,
        2**64,
        -(2**100),
        Index(lambda calls: 3),
        Index(lambda calls: 1 / 0),
        Index(lambda calls: 2**70),
        BoolRaises(),
        object(),
        [],
        [1, "x"],
        {"Rss": 1},
    ]
