"""The one way every stream of mpcdp cuts a message into pieces and puts it back together.

A message is a run of fixed-size items (ring elements and float64 values: 8 bytes, submission ids: 16,
raw link frames: 1). :func:`chunks` cuts it into pieces of whole items of at most ``chunk_bytes`` (about
1 MiB, well under gRPC's message limits), each with its offset counted in items; :class:`Assembler` takes
the pieces back and refuses, with :class:`StreamError`, anything a well-behaved sender would not send: a
piece out of order, a piece that is not whole items, more items than announced (or than ``max_length``), an
empty piece while items are still missing, or a message read before it is complete. So a malformed stream is
refused before it reaches a session. :func:`batches` groups variable-size items (a histogram's labels) the
same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

CHUNK_BYTES = 1 << 20

T = TypeVar("T")


class StreamError(ValueError):
    """A piece of a stream that breaks the rules above; the message says which rule."""


def as_bytes(data: bytes | bytearray | memoryview | np.ndarray) -> memoryview:
    """``data``'s bytes without a copy: bytes as they are, an array as its little-endian raw bytes."""
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data)
        return arr.astype(arr.dtype.newbyteorder("<"), copy=False).data.cast("B")
    return memoryview(data).cast("B")


def chunks(
    data: bytes | bytearray | memoryview | np.ndarray, item_bytes: int = 1, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[int, memoryview]]:
    """``(offset in items, piece)`` covering ``data`` in order; empty data gives one empty piece at 0."""
    view = as_bytes(data)
    if len(view) % item_bytes:
        raise StreamError(f"{len(view)} bytes are not whole {item_bytes}-byte items")
    step = max(chunk_bytes // item_bytes, 1) * item_bytes
    for start in range(0, max(len(view), 1), step):
        yield start // item_bytes, view[start : start + step]


def batches(items: Iterable[T], size: Callable[[T], int], chunk_bytes: int = CHUNK_BYTES) -> Iterator[list[T]]:
    """``items`` in order, grouped into lists whose ``size`` adds up to at most ``chunk_bytes`` (an item larger
    than that goes alone); at least one (possibly empty) list."""
    batch: list[T] = []
    used = 0
    for item in items:
        n = size(item)
        if batch and used + n > chunk_bytes:
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += n
    yield batch


class Assembler:
    """Puts the pieces of one message of ``length`` items of ``item_bytes`` back together, checking each.

    ``length=None``: the length is not announced; the message grows until :meth:`bytes`/:meth:`array` is
    called (``max_length`` still bounds it). ``sink``: each piece goes to ``sink(byte_offset, piece)`` as it
    arrives instead of into a buffer (a running sum folds it in without holding the message).
    """

    def __init__(
        self,
        length: int | None,
        item_bytes: int = 1,
        *,
        max_length: int | None = None,
        sink: Callable[[int, memoryview], None] | None = None,
    ) -> None:
        if length is not None and (length < 0 or (max_length is not None and length > max_length)):
            raise StreamError(f"a message announced with {length} items; at most {max_length} are allowed")
        self.length = length
        self.item_bytes = item_bytes
        self.max_length = max_length
        self.sink = sink
        self.filled = 0  # items received
        self._buffer: bytearray | memoryview | None = None

    @property
    def done(self) -> bool:
        return self.length is not None and self.filled == self.length

    def add(self, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
        """Take the next piece (``offset`` in items; None: whatever comes next)."""
        view = memoryview(data).cast("B")
        n, rest = divmod(len(view), self.item_bytes)
        if rest:
            raise StreamError(f"pieces are whole {self.item_bytes}-byte items")
        if offset is not None and offset != self.filled:
            raise StreamError(f"a piece at item {offset} where item {self.filled} was due: pieces come in order")
        end = self.filled + n
        limit = self.length if self.length is not None else self.max_length
        if limit is not None and end > limit:
            raise StreamError(f"pieces run past the message's {limit} items")
        if n == 0 and self.length is not None and not self.done:
            raise StreamError("an empty piece while items are still missing")
        if self.sink is not None:
            self.sink(self.filled * self.item_bytes, view)
        elif self._buffer is None and (self.length is None or n == self.length):
            self._buffer = bytearray(view)  # a one-piece message (or the first of an unannounced one): one copy
        else:
            if self._buffer is None:  # announced: uninitialised (zeroing megabytes overwritten at once costs more)
                self._buffer = (
                    np.empty(self.length * self.item_bytes, np.uint8).data if self.length is not None else bytearray()
                )
            at = self.filled * self.item_bytes
            self._buffer[at : at + len(view)] = view
        self.filled = end

    def bytes(self) -> memoryview:
        """The whole message (StreamError if items are missing, or if its pieces went to a sink)."""
        if self.length is not None and not self.done:
            raise StreamError(f"the message ended after {self.filled} of {self.length} items")
        if self.sink is not None:
            raise StreamError("the pieces of this message went to a sink")
        return memoryview(self._buffer if self._buffer is not None else bytearray())

    def array(self, dtype: str | np.dtype) -> np.ndarray:
        """The whole message as a writable array of ``dtype`` (``"<u8"``, ``"<f8"``), sharing its buffer."""
        return np.frombuffer(self.bytes(), dtype=dtype)
