"""The full-mesh batch in memory (:class:`mpcdp.protocol.spec.Batch`): several statistics in one session, one
concatenated vector per party. Exact sums of batches of 1, 2 and 16 statistics (scalars and vectors) under
every sharing; each statistic's own noise (statistically); the composed loss reserved once, all or nothing; a
refusal naming the statistic; and the replay attack on keyed batch masks (the same specs in another order,
another batch, or twice in one batch never get equal masks)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mpcdp import ring
from mpcdp.prg import Prg
from mpcdp.protocol import PartyPolicy, PartySession, ProtocolError, QuerySpec, SpecError, Status, run_in_memory
from mpcdp.protocol.noise import describe
from mpcdp.protocol.spec import MAX_BATCH, Batch
from mpcdp.sharing import mask_pairwise

PARTIES = ("alice", "bob", "carol")
SID = b"b" * 16
SCALARS = {"alice": [1.5, 2.0], "bob": [3.0], "carol": [0.25, 4.0, 1.0]}
VECTORS = {"alice": [[1.0, 2.0, 3.0]], "bob": [[0.5, 0.0, 9.0]], "carol": [[2.0, 2.0, 2.0], [1.0, 0.0, 1.0]]}


def scalar(statistic="sum", **kw):
    fields = dict(parties=PARTIES, session_id=SID, bounds=(0, 10), max_records=4)
    fields.update(kw)
    return QuerySpec(statistic, **fields)


def vector(**kw):
    return scalar("sum", dimension=3, **kw)


def mixed(n: int, **kw) -> tuple[list[QuerySpec], dict]:
    """``n`` statistics alternating scalar sums, counts, means and vector sums, and each party's records for
    each: (specs, {party: records per spec})."""
    kinds = [
        (lambda: scalar("sum", **kw), SCALARS),
        (lambda: scalar("count", **kw), SCALARS),
        (lambda: vector(**kw), VECTORS),
        (lambda: scalar("mean", **kw), SCALARS),
    ]
    chosen = [kinds[i % len(kinds)] for i in range(n)]
    specs = [make() for make, _ in chosen]
    return specs, {p: [data[p] for _, data in chosen] for p in PARTIES}


def clear(spec: QuerySpec) -> object:
    if spec.dimension > 1:
        return list(np.sum([r for p in PARTIES for r in VECTORS[p]], axis=0))
    values = [v for p in PARTIES for v in SCALARS[p]]
    return {"sum": sum(values), "count": len(values), "mean": sum(values) / len(values)}[spec.statistic]


def run(specs, records, **kw):
    return run_in_memory(
        specs[0],
        {p: records[p][0] for p in PARTIES},
        batch=specs[1:],
        batch_data={p: tuple(records[p][1:]) for p in PARTIES},
        **kw,
    )


@pytest.mark.parametrize("sharing", ["keyed", "seeded", "full"])
@pytest.mark.parametrize("n", [1, 2, 16])
def test_an_exact_batch_gives_every_statistic_exactly(sharing, n):
    specs, records = mixed(n, sharing=sharing)
    released = run(specs, records, rng=Prg.from_int(n)).releases
    assert [r.statistic for r in released] == [s.statistic for s in specs]
    for spec, r in zip(specs, released, strict=True):
        assert r.value == pytest.approx(clear(spec), abs=1e-3), spec.statistic
        assert r.loss is None


@pytest.mark.parametrize("sharing", ["keyed", "seeded"])
def test_each_statistic_of_a_dp_batch_gets_its_own_noise(sharing):
    """16 copies of one DP sum in a batch, 60 batches: each statistic's error has the described spread, and the
    errors of different statistics of one batch are uncorrelated (a noise piece drawn once and reused, or one
    statistic's noise leaking into another's segment, would correlate them fully)."""
    specs = [scalar(epsilon=1.0, sharing=sharing) for _ in range(16)]
    records = {p: [SCALARS[p]] * 16 for p in PARTIES}
    truth = clear(specs[0])
    errors = np.array(
        [[r.value - truth for r in run(specs, records, rng=Prg.from_int(100 + i)).releases] for i in range(60)]
    )
    std = describe(specs[0], {"sum": truth}).noise_std["sum"]
    assert 0.8 < errors.std() / std < 1.2  # 960 draws: the ratio is within 1 +- 0.1 (3 sigma) when it holds
    corr = np.corrcoef(errors.T)[np.triu_indices(16, 1)]
    assert np.abs(corr).mean() < 0.15  # 120 pairs of 60 draws: |r| ~ 0.1 on average if independent
    assert len({tuple(row) for row in errors.T.round(6)}) == 16


def test_the_batch_loss_is_every_statistic_composed():
    """What a party's node reserves and charges once for the whole batch (charged once, at the nodes:
    tests/services/test_mesh_batch.py)."""
    specs = [scalar(epsilon=0.5, sharing="keyed"), scalar("count", epsilon=0.25, sharing="keyed")]
    specs.append(vector(epsilon=1.0, sharing="keyed"))
    batch = Batch(specs)
    assert batch.loss is not None and math.isclose(float(batch.loss.epsilon), 1.75)
    party = PartySession(
        "alice",
        specs[0],
        SCALARS["alice"],
        PartyPolicy(),
        batch=tuple(specs[1:]),
        batch_records=(SCALARS["alice"], VECTORS["alice"]),
    )
    assert party.batch.loss == batch.loss


def test_a_party_refusing_one_statistic_refuses_the_batch_naming_it():
    specs = [scalar(epsilon=0.5), scalar("count", epsilon=0.5), scalar(epsilon=5.0)]
    party = PartySession(
        "carol",
        specs[0],
        SCALARS["carol"],
        PartyPolicy(max_epsilon=1.0),
        batch=tuple(specs[1:]),
        batch_records=(SCALARS["carol"],) * 2,
    )
    with pytest.raises(ProtocolError) as info:
        party.accept()
    assert info.value.status is Status.PERMISSION_DENIED
    assert str(info.value).startswith("statistic 2 of the batch (sum): epsilon 5 exceeds")
    with pytest.raises(ProtocolError, match="statistic 1 of the batch \\(count\\): statistic 'count' is not allowed"):
        run(*mixed(2), policies={"bob": PartyPolicy(allow_exact=True, statistics=("sum",))})


def test_a_batch_longer_than_the_policy_allows_is_refused():
    specs = [vector(), vector()]
    party = PartySession(
        "alice",
        specs[0],
        VECTORS["alice"],
        PartyPolicy(allow_exact=True, max_length=5),
        batch=(specs[1],),
        batch_records=(VECTORS["alice"],),
    )
    with pytest.raises(ProtocolError, match="the batch needs vectors of 6 elements; this party allows at most 5"):
        party.accept()


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(parties=("alice", "bob")), "parties"),
        (dict(colluders=2), "colluders"),
        (dict(sharing="full"), "sharing"),
        (dict(session_id=b"c" * 16), "session_id"),
        (dict(deadline=1e10), "deadline"),
    ],
)
def test_a_batch_shares_one_session(change, field):
    first = scalar()
    with pytest.raises(SpecError) as info:
        Batch([first, scalar("count"), dataclasses.replace(scalar("count"), **change)])
    assert info.value.field == "batch[2]" and field in str(info.value)
    with pytest.raises(SpecError, match=f"at most {MAX_BATCH} statistics"):
        Batch([first] * (MAX_BATCH + 1))


# -- the replay attack on keyed batch masks ------------------------------------------------------------------


def masked(specs, records, keys=None) -> np.ndarray:
    """alice's keyed partial sum for ``specs`` (exact: no noise) under fixed pair keys: what the coordinator
    receives."""
    party = PartySession(
        "alice",
        specs[0],
        records[0],
        PartyPolicy(allow_exact=True),
        batch=tuple(specs[1:]),
        batch_records=tuple(records[1:]),
    )
    party.accept()
    return party.masked_partial(keys or {"bob": b"k" * 32, "carol": b"l" * 32}).vector


def looks_uniform(diff: np.ndarray) -> bool:
    """A difference of two masked vectors that is spread over the ring (not 0, not a small number): masks that
    do not cancel. Equal masks would leave the difference of the encoded inputs, small and known."""
    signed = np.abs(diff.view(np.int64).astype(np.float64))
    return bool(np.all(signed > 2.0**40))


def test_the_coordinator_learns_nothing_from_the_same_specs_reordered_rebatched_or_repeated():
    """The attack of review S1 on batches: a coordinator that obtains two vectors of alice masked alike reads
    their difference, i.e. her input. Here alice's salary sum s and a count c (whose value the coordinator
    knows) are asked in one session as (s, c), in another order (c, s), in another batch (s alone, or s with a
    mean), and s twice in one batch: no two segments covering the same statistic are masked alike."""
    s, c, m = (scalar(name, sharing="keyed") for name in ("sum", "count", "mean"))
    x = SCALARS["alice"]
    sc = masked([s, c], [x, x])
    cs = masked([c, s], [x, x])
    alone = masked([s], [x])
    with_mean = masked([s, m], [x, x])
    twice = masked([s, s], [x, x])
    n = s.codec.length
    segments = {"(s, c)": sc[:n], "(c, s)": cs[c.codec.length :], "(s)": alone, "(s, m)": with_mean[:n]}
    segments |= {"(s, s)[0]": twice[:n], "(s, s)[1]": twice[n:]}
    names = list(segments)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert looks_uniform(np.subtract(segments[a], segments[b])), (a, b)
    # the attack itself, were the masks bound to the session alone: the difference of two alikes is 0 here
    same = PartySession("alice", s, x, PartyPolicy(allow_exact=True))
    same.accept()
    again = PartySession("alice", s, x, PartyPolicy(allow_exact=True))
    again.accept()
    keys = {"bob": b"k" * 32, "carol": b"l" * 32}
    assert not np.subtract(same.masked_partial(keys).vector, again.masked_partial(keys).vector).any()


def test_a_batch_of_one_is_masked_as_its_spec_and_a_longer_one_as_one_stream_bound_to_every_spec():
    s, c = scalar("sum", sharing="keyed"), scalar("count", sharing="keyed")
    assert Batch([s]).digest == s.digest  # a plain session's masks are unchanged
    assert len({Batch([s, c]).digest, Batch([c, s]).digest, Batch([s, s]).digest, s.digest, c.digest}) == 5
    keys = {"bob": b"k" * 32, "carol": b"l" * 32}
    x = SCALARS["alice"]
    encoded = np.concatenate([s.codec.encode(x), c.codec.encode(x)])
    expected = mask_pairwise(encoded.copy(), "alice", keys, Batch([s, c]).digest)
    assert np.array_equal(masked([s, c], [x, x], keys), expected)
    assert expected.dtype == ring.DTYPE


def test_a_statistic_the_policy_refuses_is_refused_before_any_record_is_read():
    reads: list[int] = []
    specs = [scalar(), scalar("count"), vector()]
    party = PartySession(
        "alice",
        specs[0],
        None,
        PartyPolicy(allow_exact=True, statistics=("sum",)),
        batch=tuple(specs[1:]),
        read=lambda i: reads.append(i) or [SCALARS, SCALARS, VECTORS][i]["alice"],
    )
    with pytest.raises(ProtocolError, match="statistic 1 of the batch \\(count\\)"):
        party.accept()
    assert reads == [] and party.state == "refused"
    allowed = PartySession(
        "alice",
        specs[0],
        None,
        PartyPolicy(allow_exact=True),
        batch=tuple(specs[1:]),
        read=lambda i: reads.append(i) or [SCALARS, SCALARS, VECTORS][i]["alice"],
    )
    allowed.check()
    assert reads == []
    allowed.read()  # one statistic at a time, in order
    assert reads == [0, 1, 2]
    allowed.accept()
    assert allowed.state == "accepted"
