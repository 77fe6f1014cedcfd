"""Vectors folded in as their pieces arrive over a link (services.convert.RingPieces), with no assembly buffer."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from mpcdp.protocol import CoordinatorSession, PartialSum, ProtocolError, QuerySpec, Response, Status
from services.convert import RingPieces
from services.link import Hub
from services.server import start
from services.tls import Identity, init_certs

LENGTH = 3001


@pytest.fixture(scope="module")
def link_certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    init_certs(["alice", "bob"], out)
    return out


def _collecting(length: int = LENGTH) -> CoordinatorSession:
    spec = QuerySpec("sum", parties=("alice", "bob"), dimension=length, bounds=(0, 1), frac_bits=0)
    session = CoordinatorSession(spec)
    for p in spec.parties:
        session.record_response(Response(spec.session_id, p, True))
    return session


def _pieces_at(data: bytes, cuts: list[int]):
    bounds = [0, *cuts, len(data)]
    return [(a, memoryview(data)[a:b]) for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("cuts", [[], [8, 16], [3, 11, 12, 8003], list(range(1, 9))])
def test_a_vector_cut_anywhere_folds_to_the_same_sum_as_the_assembled_vector(cuts):
    rng = np.random.default_rng(len(cuts))
    alice, bob = (rng.integers(0, 2**63, LENGTH, dtype=np.uint64) * 2 + 1 for _ in range(2))
    folded, assembled = _collecting(), _collecting()
    sid = folded.spec.session_id
    for name, vec in (("alice", alice), ("bob", bob)):
        sink = RingPieces(lambda offset, piece, name=name: folded.receive_piece(sid, name, offset, piece))
        for offset, piece in _pieces_at(vec.tobytes(), cuts):
            sink(offset, piece)
        assert sink.finish() == LENGTH
        folded.end_partial(sid, name)
        assembled.receive_partial(
            PartialSum(assembled.spec.session_id, name, np.frombuffer(vec.tobytes(), dtype="<u8"))
        )
    assert np.array_equal(folded.release(arrays=True).value, assembled.release(arrays=True).value)


def test_a_refused_piece_stops_the_folding_and_a_torn_element_is_refused():
    session = _collecting()
    sid = session.spec.session_id
    sink = RingPieces(lambda offset, piece: session.receive_piece(sid, "alice", offset, piece))
    too_long = np.zeros(LENGTH + 1, np.uint64).tobytes()
    for offset, piece in _pieces_at(too_long, [800]):
        sink(offset, piece)  # the second piece runs past the vector: refused, never raised into the link
    with pytest.raises(ProtocolError) as err:
        sink.finish()
    assert err.value.status == Status.INVALID_ARGUMENT
    torn = RingPieces(lambda offset, piece: None)
    torn(0, memoryview(bytes(13)))
    with pytest.raises(ProtocolError, match="whole uint64 words"):
        torn.finish()


async def test_a_hub_hands_a_vectors_frames_to_the_fold_as_they_come(link_certs):
    addresses: dict[str, str] = {}
    hubs, servers = {}, []
    for name in ("alice", "bob"):
        ident = Identity(name, link_certs)
        hubs[name] = Hub(ident, addresses.__getitem__, lambda who: True, chunk_bytes=1001)  # frames cut elements
        server, port = await start(ident, "127.0.0.1:0", [hubs[name].service()])
        servers.append(server)
        addresses[name] = f"127.0.0.1:{port}"
    try:
        session = _collecting()
        sid = session.spec.session_id
        vec = np.arange(LENGTH, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        await hubs["alice"].send("bob", sid, 0, "partial", vec)  # frames arrive before anyone asks: held
        sink = RingPieces(lambda offset, piece: session.receive_piece(sid, "alice", offset, piece))
        assert await hubs["bob"].expect("alice", sid, 0, "partial", sink, timeout=5) == vec.nbytes
        assert sink.finish() == LENGTH
        session.end_partial(sid, "alice")
        second = RingPieces(lambda offset, piece: session.receive_piece(sid, "bob", offset, piece))
        asking = asyncio.ensure_future(hubs["alice"].expect("bob", sid, 0, "partial", second, timeout=5))
        await asyncio.sleep(0.05)  # asked before it is sent: every frame goes straight to the fold
        await hubs["bob"].send("alice", sid, 0, "partial", vec)
        assert await asking == vec.nbytes and second.finish() == LENGTH
        session.end_partial(sid, "bob")
        assert np.array_equal(session.release(arrays=True).value, (vec + vec).view(np.int64).astype(float))
    finally:
        for hub in hubs.values():
            await hub.close()
        for server in servers:
            await server.stop(None)
