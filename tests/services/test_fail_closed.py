"""Privacy fails closed: every public way to release a DP result adds the noise by itself.

Each entry point (the in-memory driver, party and coordinator sessions driven
by hand, a survey aggregator's release) is run many times on the same data
at fixed seeds, and the released error is compared with the exact
distribution of the sum of the noise pieces (chi-square). On code that adds
noise only when a caller hands it in, the error is always 0 and every test
fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp.distributed import DistributedSkellam
from mpcdp.prg import Prg
from mpcdp.protocol import CoordinatorSession, PartyPolicy, PartySession, QuerySpec, Response, run_in_memory
from mpcdp.protocol.noise import mechanisms
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import id_set_digest
from services.survey.store import MemoryStore, SqliteStore, fold
from tests.support.survey_text import survey_text

PARTIES = ("alice", "bob")  # n = 2, t = 1: each party's piece is a whole discrete Laplace
DATA = {"alice": [1.0, 0.0, 1.0], "bob": [1.0, 1.0]}
TRUTH = 4
RUNS = 400


def spec(**kw) -> QuerySpec:
    args = dict(parties=PARTIES, bounds=(0, 1), frac_bits=0, max_records=3, epsilon=0.5)
    return QuerySpec("sum", **{**args, **kw})


def discrete_laplace_pmf(scale: float, support: np.ndarray) -> np.ndarray:
    a = math.exp(-1 / scale)
    return (1 - a) / (1 + a) * a ** np.abs(support)


def chi_square_p(errors, pmf) -> float:
    """p-value of ``errors`` against ``pmf(support)``, tails pooled until each bin expects >= 5."""
    errors = np.asarray(errors, dtype=np.int64)
    k = int(np.abs(errors).max()) + 40
    support = np.arange(-k, k + 1)
    expected = pmf(support) * len(errors)
    observed = np.array([(errors == s).sum() for s in support], dtype=float)
    bins_e, bins_o, acc_e, acc_o = [], [], 0.0, 0.0
    for e, o in zip(expected, observed):
        acc_e += e
        acc_o += o
        if acc_e >= 5:
            bins_e.append(acc_e)
            bins_o.append(acc_o)
            acc_e = acc_o = 0.0
    bins_e[-1] += acc_e
    bins_o[-1] += acc_o
    bins_e = np.array(bins_e) * sum(bins_o) / sum(bins_e)
    return stats.chisquare(bins_o, bins_e).pvalue


def two_piece_laplace(scale: float):
    """pmf of the sum of two independent discrete Laplace pieces (n = 2 parties)."""

    def pmf(support):
        k = int(np.abs(support).max())
        wide = np.arange(-2 * k, 2 * k + 1)
        one = discrete_laplace_pmf(scale, wide)
        both = np.convolve(one, one)  # support -4k .. 4k
        return both[support + 4 * k]

    return pmf


def laplace_scale(s: QuerySpec) -> float:
    ((_, mech),) = mechanisms(s)
    return float(mech.scale)


def test_in_memory_driver_adds_discrete_laplace_noise_by_itself():
    rng = Prg.from_int(1, "fail-closed")
    errors = [run_in_memory(spec(), DATA, rng=rng).release.value - TRUTH for _ in range(RUNS)]
    assert len(set(errors)) > 5
    assert chi_square_p(errors, two_piece_laplace(laplace_scale(spec()))) > 1e-3


def test_in_memory_driver_adds_skellam_noise_by_itself():
    rng = Prg.from_int(2, "fail-closed")
    s0 = spec(mechanism="skellam", delta=1e-6, epsilon=1.0)
    ((_, mech),) = mechanisms(s0)
    assert isinstance(mech, DistributedSkellam)
    mu = 2 * float(mech.piece_mean)  # two pieces: Skellam(2 mu_p, 2 mu_p)
    errors = [
        run_in_memory(spec(mechanism="skellam", delta=1e-6, epsilon=1.0), DATA, rng=rng).release.value - TRUTH
        for _ in range(RUNS)
    ]
    assert chi_square_p(errors, lambda k: stats.skellam.pmf(k, mu, mu)) > 1e-3


def test_in_memory_driver_without_a_random_source_uses_the_csprng():
    released = [run_in_memory(spec(), DATA).release.value for _ in range(40)]
    assert len(set(released)) > 3  # P(all 40 equal) is below 1e-20


def test_the_noise_hook_is_gone():
    with pytest.raises(TypeError):
        run_in_memory(spec(), DATA, noise=lambda p: np.zeros(1, dtype=np.int64))
    party = PartySession("alice", spec(), DATA["alice"], rng=Prg.from_int(3))
    party.accept()
    with pytest.raises(TypeError):
        party.make_shares(np.zeros(1, dtype=np.int64))


def _by_hand(s: QuerySpec, rngs: dict) -> float:
    """One query with the state machines driven directly, no driver in between."""
    coordinator = CoordinatorSession(s)
    parties = {p: PartySession(p, s, DATA[p], PartyPolicy(), rng=rngs[p]) for p in PARTIES}
    for name, party in parties.items():
        party.accept()
        coordinator.record_response(Response(s.session_id, name, True))
    for msg in [m for party in parties.values() for m in party.make_shares()]:
        parties[msg.recipient].receive_share(msg)
    for party in parties.values():
        coordinator.receive_partial(party.partial_sum())
    return coordinator.release().value


def test_party_and_coordinator_sessions_add_noise_by_themselves():
    rngs = {p: Prg.from_int(i, "by-hand") for i, p in enumerate(PARTIES)}
    errors = [_by_hand(spec(), rngs) - TRUTH for _ in range(RUNS)]
    assert chi_square_p(errors, two_piece_laplace(laplace_scale(spec()))) > 1e-3


SURVEY = parse_survey(
    survey_text(
        """
[[question]]
id = "q"
kind = "yesno"
central = { mechanism = "discrete_laplace", epsilon = 0.5 }
""",
        head="min_respondents = 1",
    )
)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_survey_release_adds_central_noise_by_itself(backend, tmp_path):
    """An aggregator's release: one discrete Laplace piece (m = 2, t = 1), scale = sensitivity / epsilon = 2."""
    rng = Prg.from_int(4, "survey-noise")
    shares = [(bytes([i]) * 16, np.array([i % 2], dtype="<u8").tobytes()) for i in range(1, 6)]
    exact = int(fold([b for _, b in shares], 1)[0])
    runs = RUNS if backend == "memory" else 60
    errors = []
    for run in range(runs):
        store = MemoryStore() if backend == "memory" else SqliteStore(str(tmp_path / f"{run}.db"))
        store.register(SURVEY.id, SURVEY.digest, SURVEY.width)
        store.put(SURVEY.id, shares)
        store.close(SURVEY.id)
        out = store.release(SURVEY, [], len(shares), id_set_digest(s for s, _ in shares), rng)
        errors.append(int(out.view(np.int64)[0]) - exact)
        store.shutdown()
    assert len(set(errors)) > 3
    assert chi_square_p(errors, lambda k: discrete_laplace_pmf(2.0, k)) > 1e-3


def test_survey_release_without_a_random_source_uses_the_csprng():
    shares = [(bytes([i]) * 16, np.array([1], dtype="<u8").tobytes()) for i in range(1, 4)]
    released = set()
    for _ in range(30):
        store = MemoryStore()
        store.register(SURVEY.id, SURVEY.digest, SURVEY.width)
        store.put(SURVEY.id, shares)
        store.close(SURVEY.id)
        released.add(int(store.release(SURVEY, [], 3, id_set_digest(s for s, _ in shares))[0]))
    assert len(released) > 3
