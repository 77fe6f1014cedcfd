"""The wire: the committed generated code is what protoc makes from protos/; enums, optional epsilon and typed
release entries survive the trip and refuse what is not set."""

from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from mpcdp.prg import Prg
from mpcdp.protocol import QuerySpec, SpecError, run_in_memory
from mpcdp.protocol.coordinator import CoordinatorSession, KeptTotals
from services import convert, releases
from services.analyst import QueryResult, _ReleaseStream
from services.streams import CHUNK_BYTES
from services.wire import generate
from services.wire.mpcdp.v1 import federation_pb2 as pb

COMMITTED = Path(generate.__file__).resolve().parent


def test_generated_code_matches_protos(tmp_path):
    written = generate.generate(tmp_path)
    assert written, "no .proto files found under protos/"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in written}
    committed = {p.relative_to(COMMITTED): p.read_bytes() for p in (COMMITTED / "mpcdp").rglob("*_pb2*.py*")}
    stale = sorted(str(k) for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k))
    assert not stale, f"regenerate with `python -m services.wire.generate` and commit: {stale}"


# -- the tightened wire: enums, optional epsilon, typed release entries --------------------------------


PARTIES = ("alice", "bob", "carol")


def test_unspecified_enum_values_are_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"statistic.*must be set"):
        convert.spec_fields(pb.QuerySpec(sharing=pb.SHARING_SEEDED))
    with pytest.raises(SpecError, match=r"sharing.*must be set"):
        convert.spec_fields(pb.QuerySpec(statistic=pb.STATISTIC_SUM))
    with pytest.raises(SpecError, match=r"mechanism.*must be set"):  # an epsilon needs its mechanism
        convert.spec_fields(pb.QuerySpec(statistic=pb.STATISTIC_SUM, sharing=pb.SHARING_SEEDED, epsilon=1.0))
    with pytest.raises(SpecError, match=r"statistic.*unknown wire value 99"):
        convert.spec_fields(pb.QuerySpec(statistic=99, sharing=pb.SHARING_SEEDED))
    assert convert.status_name(pb.REFUSAL_STATUS_UNSPECIFIED) is None


def test_an_absent_epsilon_is_an_exact_release_and_zero_is_refused_not_read_as_exact():
    exact = convert.spec_fields(pb.QuerySpec(statistic=pb.STATISTIC_COUNT, sharing=pb.SHARING_FULL))
    assert exact["epsilon"] is None and exact["sharing"] == "full" and "mechanism" not in exact
    zero = pb.QuerySpec(
        statistic=pb.STATISTIC_COUNT, sharing=pb.SHARING_SEEDED, mechanism=pb.MECHANISM_SKELLAM, epsilon=0.0
    )
    assert zero.HasField("epsilon")
    fields = convert.spec_fields(zero)
    assert fields["epsilon"] == 0.0 and fields["mechanism"] == "skellam"
    with pytest.raises(SpecError, match="epsilon"):
        convert.build_spec({**fields, "parties": PARTIES, "session_id": bytes(16)})


@pytest.mark.parametrize(
    "spec",
    [
        QuerySpec("mean", parties=PARTIES, bounds=(0, 10), dimension=3, max_records=4, sharing="full"),
        QuerySpec("histogram", parties=PARTIES, categories=("a", "b"), epsilon=0.5),
        QuerySpec("sum", parties=PARTIES, epsilon=1.0, delta=1e-6, mechanism="skellam", colluders=2),
    ],
)
def test_a_spec_survives_the_wire(spec):
    back = convert.build_spec(convert.spec_fields(convert.spec_to_proto(spec)))
    assert back == spec


def messages(parts: list) -> list:
    """The parts as the analyst reads them (a part made in its wire form, parsed)."""
    return [pb.QueryReplyPart.FromString(releases.wire_form(p)) for p in parts]


def received(parts: list) -> QueryResult:
    """What the analyst makes of the parts, through its release stream."""
    parts = messages(parts)
    stream = _ReleaseStream()
    for part in parts[1:]:
        stream.add(part)
    vectors = stream.finish()
    return QueryResult.from_proto(parts[0].reply, vectors, stream.categories)


def test_a_dp_release_travels_as_typed_entries_with_noise_and_every_kind_of_interval():
    data = {p: np.full((40, 2), 3.0 + i) for i, p in enumerate(PARTIES)}
    spec = QuerySpec("mean", parties=PARTIES, bounds=(0, 10), dimension=2, max_records=40, epsilon=10.0)
    release = run_in_memory(spec, data, rng=Prg.from_int(7, "wire-test")).release
    parts = list(releases.parts(spec, release, 0.9))
    reply = parts[0].reply
    assert reply.HasField("epsilon") and reply.epsilon == 10.0 and reply.mechanism == pb.MECHANISM_DISCRETE_LAPLACE
    entries = {e.name: e for e in reply.entries}
    assert entries["count"].value.WhichOneof("values") == "scalar" and entries["count"].HasField("noise_std")
    assert entries["sum"].interval.WhichOneof("bounds") == "half_width"
    assert entries["mean"].interval.ends.lower.WhichOneof("values") == "packed"
    r = received(parts)
    np.testing.assert_array_equal(r.result["sum"], release.result["sum"])
    assert r.result["count"] == release.result["count"] and r.epsilon == 10.0 and not r.exact
    assert r.confidence == 0.9 and set(r.noise_std) == {"sum", "count"}
    assert set(r.intervals["mean"]) == {"lower", "upper"} and "half_width" in r.intervals["sum"]
    assert "95%" not in r.to_text() and "90% interval for count" in r.to_text()


def test_an_exact_release_has_no_epsilon_no_mechanism_and_no_intervals():
    spec = QuerySpec("count", parties=PARTIES, max_records=5)
    release = run_in_memory(spec, {p: [1.0, 2.0] for p in PARTIES}).release
    parts = list(releases.parts(spec, release, 0.95))
    reply = parts[0].reply
    assert not reply.HasField("epsilon") and reply.mechanism == pb.MECHANISM_UNSPECIFIED
    assert all(not e.HasField("interval") and not e.HasField("noise_std") for e in reply.entries)
    r = received(parts)
    assert r.exact and r.epsilon is None and r.mechanism is None and r.value == 6.0 and r.intervals == {}


def test_large_vectors_and_many_labels_stream_and_come_back_whole():
    n = CHUNK_BYTES // 8 + 3  # just over one chunk
    categories = tuple(f"category-{i:07d}" for i in range(n))
    cells = np.arange(n, dtype=float)
    spec = QuerySpec("histogram", parties=PARTIES, categories=categories, epsilon=1.0)
    release = type("Release", (), {"result": {"histogram": dict(zip(categories, cells.tolist(), strict=True))}})
    parts = messages(list(releases.parts(spec, release, 0.95)))
    kinds = [p.WhichOneof("part") for p in parts]
    assert kinds[0] == "reply" and kinds.count("labels") >= 2 and kinds.count("vector") == 3  # value, lower, upper
    assert max(p.ByteSize() for p in parts) < CHUNK_BYTES + 1024
    r = received(parts)
    assert list(r.value) == list(categories) and r.value[categories[-1]] == n - 1
    lo, hi = r.intervals["histogram"][categories[5]]
    assert lo < 5 < hi


@pytest.mark.parametrize("length", [0, 1, 300, CHUNK_BYTES // 8, 3 * CHUNK_BYTES // 8 + 17])
def test_vector_parts_made_in_their_wire_form_are_the_messages_the_protobuf_api_builds(length):
    values = np.linspace(-1.0, 1.0, length)
    made = list(releases.vector_parts("sum", pb.ReleaseVector.PART_UPPER, values))
    # each part is its header's bytes, then its chunk's bytes where they lie in ``values`` (not copied)
    assert all(isinstance(head, bytes) and len(head) < 64 for head, _ in made)
    assert all(np.shares_memory(np.frombuffer(data, dtype=np.uint8), values) for _, data in made if len(data))
    expected = []
    for at in range(0, max(values.nbytes, 1), CHUNK_BYTES):
        chunk = pb.VectorChunk(offset=at // 8, data=values.tobytes()[at : at + CHUNK_BYTES])
        if at == 0:
            expected.append(
                pb.QueryReplyPart(
                    vector=pb.ReleaseVector(name="sum", part=pb.ReleaseVector.PART_UPPER, length=length, first=chunk)
                )
            )
        else:
            expected.append(pb.QueryReplyPart(chunk=chunk))
    assert messages(made) == expected


def test_the_analyst_reads_a_chunk_in_place_and_every_other_part_through_protobuf():
    values = np.arange(3 * CHUNK_BYTES // 8 + 5, dtype=float)
    made = list(releases.vector_parts("sum", pb.ReleaseVector.PART_VALUE, values))
    read = [releases.read_part(releases.wire_form(p)) for p in made]
    assert isinstance(read[0], pb.QueryReplyPart) and read[0].vector.first.data == values.tobytes()[:CHUNK_BYTES]
    for at, chunk in zip(range(CHUNK_BYTES, values.nbytes, CHUNK_BYTES), read[1:], strict=True):
        assert isinstance(chunk, releases.Chunk) and chunk.offset == at // 8
        assert bytes(chunk.data) == values.tobytes()[at : at + CHUNK_BYTES]
    # protobuf's own encoding of a chunk (offset 0 left out), other parts, garbage: protobuf decides
    other = pb.QueryReplyPart(chunk=pb.VectorChunk(offset=0, data=b"12345678"))
    assert releases.read_part(other.SerializeToString()) == other
    reply = pb.QueryReplyPart(reply=pb.QueryReply(session_id=b"s" * 16))
    assert releases.read_part(reply.SerializeToString()) == reply
    with pytest.raises(DecodeError):
        releases.read_part(releases.wire_form(made[1])[:-3])  # a chunk whose length runs past its end


def test_the_coordinator_service_is_served_and_called_with_every_method_of_its_proto():
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Coordinator"].methods}
    registered = {}

    class Server:
        def add_generic_rpc_handlers(self, handlers):
            assert len(handlers) == 1

        def add_registered_method_handlers(self, service, handlers):
            assert service == "mpcdp.v1.Coordinator"
            registered.update(handlers)

    releases.add_coordinator_to_server(type("Servicer", (), {m: None for m in methods})(), Server())
    assert set(registered) == methods
    channel = type("Channel", (), {"unary_stream": lambda self, *a, **k: a[0]})()
    assert {m for m in methods if getattr(releases.CoordinatorStub(channel), m, None)} == methods


def test_the_release_store_keeps_and_returns_each_part_in_its_wire_form(tmp_path):
    spec = QuerySpec("sum", parties=PARTIES, bounds=(0, 10), dimension=CHUNK_BYTES // 8 + 5, max_records=1)
    release = type("Release", (), {"result": {"sum": np.arange(spec.dimension, dtype=float)}})
    parts = list(releases.parts(spec, release, 0.95))
    store = releases.ReleaseStore(tmp_path)
    store.put("ab" * 16, "analyst", True, parts)
    meta, kept = store.get("ab" * 16)
    assert meta["client"] == "analyst" and meta["exact"]
    assert kept == [releases.wire_form(p) for p in parts]
    np.testing.assert_array_equal(received(kept).value, release.result["sum"])


def keyed_release(totals: KeptTotals, seed: int, length: int = 300_000):
    """A two-party keyed sum of ``length`` elements folded by a coordinator session on ``totals``: (spec, release)."""
    parties = ("alice", "bob")
    spec = QuerySpec(
        "sum",
        parties=parties,
        sharing="keyed",
        bounds=(0, 1000),
        dimension=length,
        frac_bits=0,
        max_records=1,
        session_id=bytes([seed]) * 16,
    )
    session = CoordinatorSession(spec, totals=totals)
    rng = np.random.default_rng(seed)
    for p in parties:
        partial = rng.integers(0, 1000, length).astype(np.uint64)
        for at in range(0, length, 100_000):
            session.receive_piece(spec.session_id, p, at, partial[at : at + 100_000])
        session.end_partial(spec.session_id, p)
        session.record_key_ids(p, {q: b"k" * 8 for q in parties if q != p})
    (release,) = session.releases(arrays=True)
    return spec, release


async def test_a_release_made_of_pieces_is_kept_and_fetched_back_byte_for_byte_after_its_total_is_reused(tmp_path):
    """A long release's parts are pieces (a header, then a view of its float64 values): kept, then the coordinator's
    kept total is taken by the next session of the same length and written over; the first release's pieces are
    unchanged and the store returns exactly their wire form."""
    totals = KeptTotals(smallest=1)
    spec, release = keyed_release(totals, 1)
    parts = releases.batch_parts([spec], [release], 0.95)
    assert sum(isinstance(p, tuple) for p in parts) >= 2  # the chunks, as pieces
    first = [releases.wire_form(p) for p in parts]
    store = releases.ReleaseStore(tmp_path)
    try:
        await store.keep(spec.session_id.hex(), "analyst", True, parts)
        assert len(totals) == 1
        keyed_release(totals, 2)  # takes the kept total and writes over it
        assert len(totals) == 1
        assert [releases.wire_form(p) for p in parts] == first
        _, kept = store.get(spec.session_id.hex())
        assert [bytes(b) for b in kept] == first
        np.testing.assert_array_equal(received(kept).value, release.result["sum"])
    finally:
        store.close()


def test_labels_whole_numbers_and_undefined_values_are_typed():
    entries = releases.entries({"second-price": 2**53 + 1, "winner": "carol", "mean": None, "share": 0.25})
    kinds = {e.name: e.value.WhichOneof("values") for e in entries}
    assert kinds == {"second-price": "integer", "winner": "label", "mean": None, "share": "scalar"}
    reply = pb.QueryReply(statistic=pb.STATISTIC_SECOND_PRICE, entries=entries)
    r = QueryResult.from_proto(reply)
    assert r.result == {"second-price": 2**53 + 1, "winner": "carol", "mean": None, "share": 0.25} and r.exact


def test_unavailable_intervals_say_so():
    entries = releases.entries({"mean": None}, intervals={"mean": None})
    assert entries[0].interval.unavailable
    reply = pb.QueryReply(statistic=pb.STATISTIC_MEAN, epsilon=1.0, mechanism=pb.MECHANISM_SKELLAM, entries=entries)
    r = QueryResult.from_proto(reply)
    assert r.intervals == {"mean": None} and "interval for mean: none" in r.to_text()


# -- malformed chunks on the analyst's in-place path (review-wire M7) ----------------------------------------------


def first_part(length: int, *values: float) -> pb.QueryReplyPart:
    first = pb.VectorChunk(offset=0, data=np.asarray(values, dtype="<f8").tobytes())
    vector = pb.ReleaseVector(name="sum", part=pb.ReleaseVector.PART_VALUE, length=length, first=first)
    return pb.QueryReplyPart(vector=vector)


def chunk_bytes(offset: int, *values: float, tail: bytes = b"") -> bytes:
    """A chunk part in the layout vector_parts writes, so that read_part takes its in-place path."""
    body = b"".join(releases._chunk(offset, memoryview(np.asarray(values, dtype="<f8").tobytes() + tail)))
    return releases._key(releases._CHUNK, len(body)) + body


@pytest.mark.parametrize(
    "parts",
    [
        [first_part(3, 1), chunk_bytes(2, 3)],
        [first_part(3, 1), chunk_bytes(1, 2, 3, 4)],
        [chunk_bytes(0, 1)],
        [first_part(3, 1), chunk_bytes(1, 2), chunk_bytes(1, 2)],
        [first_part(3, 1), chunk_bytes(1, 2, tail=b"\x00" * 3)],
        [first_part(3, 1), chunk_bytes(1 + 2**64, 2, 3)],
    ],
    ids=["gap", "overrun", "no-vector", "duplicate", "not-whole-float64s", "offset-beyond-uint64"],
)
def test_a_malformed_chunk_read_in_place_is_refused(parts):
    """What a coordinator sends after a vector's first part takes read_part's in-place path, not protobuf: each
    malformed chunk is still refused (the stream's assembler checks offsets, lengths and whole items)."""
    stream = _ReleaseStream()
    assert all(isinstance(releases.read_part(p), releases.Chunk) for p in parts if isinstance(p, bytes))
    with pytest.raises(ValueError):
        for p in parts:
            stream.add(releases.read_part(p) if isinstance(p, bytes) else p)
        stream.finish()


def test_a_chunk_read_in_place_is_little_endian_float64():
    stream = _ReleaseStream()
    stream.add(first_part(2, 1.5))
    stream.add(releases.read_part(chunk_bytes(1, 2.5)))
    out = stream.finish()[("sum", pb.ReleaseVector.PART_VALUE)]
    assert out.dtype.byteorder in "<=" and list(out) == [1.5, 2.5]
