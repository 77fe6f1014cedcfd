"""A registry of named things: statistics, mechanisms, question kinds.

Each kind of thing that the command line, the wire and the configuration files name (a statistic, a central
or local mechanism, a survey question kind) is a class registered once in a ``Registry``. Code that needs one
asks the registry by name (``STATISTICS.get("mean")``) instead of comparing strings, the command line takes
its ``choices`` from ``names()``, and the wire maps its enum values with ``by_wire`` / ``wire``.

A registered item needs only a ``name`` attribute (a string); an item with an integer ``wire`` attribute can
also be looked up by that enum value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Named", "Registry", "UnknownName"]


class Named(Protocol):
    """What a registry holds: something with a name (``wire`` is optional: an enum value on the wire)."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class UnknownName(ValueError):
    """A name (or wire value) that no registered item has; the message lists the choices."""


class Registry(Generic[T]):
    """Named items of one kind, in registration order.

    ``what`` says what the items are ("statistic", "central mechanism"): it appears in error messages.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._by_wire: dict[int, T] = {}

    def register(self, item: T) -> T:
        """Add ``item`` under its ``name`` (and its ``wire`` value if it has one); returns it.

        Usable as a class decorator when the registry holds classes. A name or wire value registered twice is a
        programming error and raises ``ValueError``.
        """
        name = item.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        wire = getattr(item, "wire", None)
        if wire is not None:
            if not isinstance(wire, int) or isinstance(wire, bool) or wire <= 0:
                raise ValueError(f"{self.what} {name!r}: wire value must be a positive integer, got {wire!r}")
            if wire in self._by_wire:
                raise ValueError(f"{self.what} {name!r}: wire value {wire} is already {self._by_wire[wire].name!r}")
            self._by_wire[wire] = item
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The item called ``name``; ``UnknownName`` (a ``ValueError``) listing the choices otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.what} {name!r}; choose one of: {', '.join(self._items)}") from None

    def by_wire(self, value: int) -> T:
        """The item whose ``wire`` enum value is ``value`` (0, the protobuf default, is never registered)."""
        try:
            return self._by_wire[value]
        except (KeyError, TypeError):
            known = ", ".join(f"{w} ({item.name})" for w, item in sorted(self._by_wire.items()))
            raise UnknownName(f"unknown {self.what} wire value {value!r}; known: {known}") from None

    def wire(self, name: str) -> int:
        """The wire enum value of the item called ``name``."""
        item = self.get(name)
        value = getattr(item, "wire", None)
        if not isinstance(value, int):
            raise UnknownName(f"{self.what} {name!r} has no wire value")
        return value

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order (for ``argparse`` ``choices``)."""
        return tuple(self._items)

    def items(self) -> tuple[T, ...]:
        """Every registered item, in registration order."""
        return tuple(self._items.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(tuple(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
