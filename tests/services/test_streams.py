"""The one chunker and assembler of every stream (services/streams.py): round trips and every refusal."""

import numpy as np
import pytest

from services import streams
from services.streams import Assembler, StreamError, batches, chunks


@pytest.mark.parametrize("n", [0, 1, 7, 131_072, 131_073, 400_000])
def test_ring_vectors_round_trip_in_whole_items_of_at_most_a_chunk(n):
    vector = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    pieces = list(chunks(vector, 8))
    assert all(len(p) % 8 == 0 and len(p) <= streams.CHUNK_BYTES for _, p in pieces)
    assert [o for o, _ in pieces] == list(np.cumsum([0] + [len(p) // 8 for _, p in pieces[:-1]]))
    assembler = Assembler(n, 8)
    for offset, piece in pieces:
        assembler.add(piece, offset)
    assert assembler.done
    got = assembler.array("<u8")
    np.testing.assert_array_equal(got, vector)
    assert got.flags.writeable  # the assembled message is the caller's to use in place


def test_big_endian_arrays_travel_little_endian():
    big = np.arange(3, dtype=">f8")
    [(_, piece)] = chunks(big, 8)
    assert bytes(piece) == np.arange(3, dtype="<f8").tobytes()


def test_id_lists_are_whole_16_byte_items_and_need_no_announced_length():
    ids = [bytes([i]) * 16 for i in range(100)]
    assembler = Assembler(None, 16, max_length=100)
    for _, piece in chunks(b"".join(ids), 16, chunk_bytes=16 * 7):
        assert len(piece) <= 16 * 7
        assembler.add(piece)
    blob = assembler.bytes()
    assert [bytes(blob[i : i + 16]) for i in range(0, len(blob), 16)] == ids
    with pytest.raises(StreamError, match="past"):
        assembler.add(b"x" * 16)


def test_a_sink_gets_each_piece_at_its_byte_offset_and_nothing_is_buffered():
    got = bytearray(10)

    def sink(at, piece):
        got[at : at + len(piece)] = piece

    assembler = Assembler(10, 1, sink=sink)
    for offset, piece in chunks(b"0123456789", 1, chunk_bytes=3):
        assembler.add(piece, offset)
    assert assembler.done and got == b"0123456789"
    with pytest.raises(StreamError, match="sink"):
        assembler.bytes()


@pytest.mark.parametrize(
    "steps, match",
    [
        ([(b"12345678", 1)], "in order"),  # first piece at the wrong offset
        ([(b"1234567", 0)], "whole 8-byte"),  # not whole items
        ([(b"12345678" * 3, 0)], "past"),  # more than announced
        ([(b"", 0)], "empty piece"),  # nothing while items are missing
    ],
)
def test_malformed_pieces_are_refused(steps, match):
    assembler = Assembler(2, 8)
    with pytest.raises(StreamError, match=match):
        for data, offset in steps:
            assembler.add(data, offset)


def test_an_incomplete_message_cannot_be_read_and_an_oversized_announcement_is_refused():
    assembler = Assembler(2, 8)
    assembler.add(b"12345678", 0)
    with pytest.raises(StreamError, match="1 of 2"):
        assembler.array("<u8")
    with pytest.raises(StreamError, match="at most 5"):
        Assembler(6, 8, max_length=5)


def test_batches_of_labels_stay_under_the_chunk_and_keep_their_order():
    labels = [f"label-{i}" * (i % 5 + 1) for i in range(1000)]
    out = list(batches(labels, len, chunk_bytes=200))
    assert [x for b in out for x in b] == labels
    assert all(sum(map(len, b)) <= 200 for b in out)
    assert list(batches([], len)) == [[]]
