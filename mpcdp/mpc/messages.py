"""The one message of the engine: a round's words from one party to another, with explicit encoding.

Every round of every operation sends, from each party to each peer it has
something for, one vector of 64-bit words (shares of bits are packed 64 to a
word). A transport moves :meth:`Round.encode` bytes and hands
:meth:`Round.decode` output back; it adds no meaning. Layout (little-endian):

    magic "MPCR" | version u8 | round u32 | sender u16 | recipient u16 |
    session-id length u16 | session id | word count u32 | words u64[count]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..protocol.errors import ProtocolError, Status

MAGIC = b"MPCR"
VERSION = 1
_HEAD = struct.Struct("<4sBIHHH")
_COUNT = struct.Struct("<I")
MAX_WORDS = 1 << 27  # 1 GiB of words: a bound on what a peer can make us allocate


@dataclass(frozen=True)
class Round:
    """The words ``sender`` sends ``recipient`` in round ``round`` of session ``session_id``."""

    session_id: bytes
    round: int
    sender: int
    recipient: int
    words: np.ndarray = field(repr=False)  # shares: kept out of reprs and tracebacks

    def encode(self) -> bytes:
        words = np.ascontiguousarray(self.words, dtype="<u8").reshape(-1)
        head = _HEAD.pack(MAGIC, VERSION, self.round, self.sender, self.recipient, len(self.session_id))
        return head + self.session_id + _COUNT.pack(words.size) + words.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> Round:
        if len(data) < _HEAD.size:
            raise ProtocolError(Status.INVALID_ARGUMENT, "truncated engine message")
        magic, version, rnd, sender, recipient, sid_len = _HEAD.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise ProtocolError(Status.INVALID_ARGUMENT, "not an engine message of this version")
        at = _HEAD.size + sid_len
        if len(data) < at + _COUNT.size:
            raise ProtocolError(Status.INVALID_ARGUMENT, "truncated engine message")
        (count,) = _COUNT.unpack_from(data, at)
        at += _COUNT.size
        if count > MAX_WORDS or len(data) != at + 8 * count:
            raise ProtocolError(
                Status.INVALID_ARGUMENT, f"engine message announces {count} words but carries {(len(data) - at) // 8}"
            )
        words = np.frombuffer(data, dtype="<u8", count=count, offset=at).astype(np.uint64)
        return cls(bytes(data[_HEAD.size : _HEAD.size + sid_len]), rnd, sender, recipient, words)
