"""Truncated Gumbel and multivariate Laplace on small synthetic embeddings, at fixed seeds."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist
from scipy.special import lambertw

from mpcdp.prg import Prg
from mpcdp.text import mechanisms as m
from mpcdp.text import neighbors as nb
from mpcdp.text import samplers
from mpcdp.text.embeddings import Embedding
from mpcdp.text.nearest import VocabularySearch


def synthetic(n=300, dim=8, seed=0) -> Embedding:
    vectors = samplers.standard_normal(Prg.from_int(seed, "emb"), (n, dim)) * 2.0
    return Embedding(tuple(f"w{i}" for i in range(n)), vectors)


@pytest.fixture(scope="module")
def emb():
    return synthetic()


@pytest.fixture(scope="module")
def table(emb):
    return nb.build_neighbor_table(emb, 16)


def test_delta_and_delta0_are_the_exact_pairwise_extremes(emb, table):
    d = pdist(emb.vectors.astype(np.float64))
    assert table.delta_max == pytest.approx(d.max(), rel=1e-12)
    assert table.delta_min == pytest.approx(d[d > 0].min(), rel=1e-12)


def test_words_with_one_vector_have_one_output_distribution(tmp_path):
    """Metric DP at distance 0: two words with identical vectors must be indistinguishable.

    Before the fix the candidate list always put the input first, so P[output = a] was
    larger for input a than for input b (by P[k = 1], 0.16 here) although d(a, b) = 0.
    """
    vectors = samplers.standard_normal(Prg.from_int(7, "dup"), (20, 3))
    vectors[1] = vectors[0]
    words = tuple(f"w{i}" for i in range(20))
    with pytest.raises(ValueError, match="share a vector"):
        Embedding(words, vectors)
    path = tmp_path / "dup.txt"
    path.write_text("".join(f"{w} {' '.join(map(repr, v.tolist()))}\n" for w, v in zip(words, vectors)))
    from mpcdp.text.embeddings import load_glove_text

    merged = load_glove_text(path)
    assert merged.size == 19 and merged.aliases == {"w1": "w0"} and merged.index["w1"] == merged.index["w0"]
    table = nb.build_neighbor_table(merged, 8)
    assert table.delta_min > 0
    mech = m.TruncatedGumbel(merged, table, 2 * m.truncated_gumbel_min_epsilon(merged.size, table.delta_min))
    from mpcdp.text.sanitizer import Sanitizer

    sanitizer = Sanitizer(merged, table)
    sanitizer._mechanisms[(mech.name, mech.epsilon)] = mech
    n = 6000
    outs = {
        w: [r.text for r in sanitizer.sanitize([w] * n, mech.name, mech.epsilon, Prg.from_int(8, w))]
        for w in ("w0", "w1")
    }
    support = sorted(set(outs["w0"]) | set(outs["w1"]))
    counts = np.array([[outs[w].count(s) for s in support] for w in ("w0", "w1")])
    assert stats.chi2_contingency(counts[:, counts.sum(axis=0) >= 10]).pvalue > 1e-3


def test_delta0_is_the_smallest_distance_between_words():
    vectors = np.array([[0, 0], [0, 2], [3, 4], [0, 1]], dtype=np.float32)
    t = nb.build_neighbor_table(Embedding(("a", "b", "c", "d"), vectors), 2)
    assert t.delta_min == pytest.approx(1.0) and t.delta_max == pytest.approx(5.0)
    assert list(t.ids[0]) == [3, 1]


def test_cached_neighbors_agree_with_exact_search(emb, table):
    for w in range(emb.size):
        ids, dist = nb.exact_neighbors(emb, w, table.k)
        np.testing.assert_array_equal(ids, table.ids[w])
        np.testing.assert_allclose(dist, table.distances[w], rtol=1e-12)


def test_epsilon_validity_boundary(emb, table):
    minimum = m.truncated_gumbel_min_epsilon(emb.size, table.delta_min)
    assert minimum == pytest.approx((2 * (1 + math.log(emb.size)) + 3) / table.delta_min)
    for eps in (minimum, minimum * (1 - 1e-9), 1.0):
        with pytest.raises(m.EpsilonTooSmallError, match=f"epsilon > {minimum:.6g}"):
            m.TruncatedGumbel(emb, table, eps)
    mech = m.TruncatedGumbel(emb, table, minimum * (1 + 1e-9))
    assert math.isfinite(mech.calibration.scale) and mech.calibration.scale > 0
    assert mech.calibration.alpha * table.delta_min > 1
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="epsilon"):
            m.TruncatedGumbel(emb, table, bad)


def test_calibration_formula(emb, table):
    eps = 3 * m.truncated_gumbel_min_epsilon(emb.size, table.delta_min)
    c = m.GumbelCalibration.for_vocabulary(eps, emb.size, table.delta_max, table.delta_min)
    alpha = (eps - 2 * (1 + math.log(emb.size)) / table.delta_min) / 3
    # W0(x) solves w e^w = x
    w0 = float(lambertw(2 * alpha * table.delta_max).real)
    assert w0 * math.exp(w0) == pytest.approx(2 * alpha * table.delta_max)
    assert c.alpha == pytest.approx(alpha)
    assert c.scale == pytest.approx(2 * table.delta_max / min(w0, math.log(alpha * table.delta_min)))


def reference_truncated_gumbel(emb, table, eps, word, draws, rng):
    """A straightforward per-token implementation: one exact neighbour query per draw."""
    mech = m.TruncatedGumbel(emb, table, eps)
    out = np.empty(draws, dtype=np.int64)
    for i in range(draws):
        k = int(mech.candidate_count.sample(rng, 1)[0])
        ids, dist = nb.exact_neighbors(emb, word, k - 1) if k > 1 else (np.array([], int), np.array([]))
        cand = np.concatenate([[word], ids])
        noisy = np.concatenate([[0.0], dist]) + samplers.truncated_gumbel(
            rng, k, mech.calibration.scale, table.delta_max
        )
        out[i] = cand[np.argmin(noisy)]
    return out


def two_sample_chisquare(a, b) -> float:
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    rare = table.sum(axis=0) < 10
    pooled = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)]) if rare.any() else table
    return stats.chi2_contingency(pooled)[1]


def test_vectorised_truncated_gumbel_matches_per_token_reference(emb, table):
    eps = 1.5 * m.truncated_gumbel_min_epsilon(emb.size, table.delta_min)
    mech = m.TruncatedGumbel(emb, table, eps)
    fast = mech.perturb(np.full(20_000, 7), Prg.from_int(11))
    slow = reference_truncated_gumbel(emb, table, eps, 7, 3_000, Prg.from_int(12))
    assert two_sample_chisquare(fast, slow) > 1e-3
    # candidates are the word and its neighbours, nearest ones more likely
    assert set(fast) <= {7, *table.ids[7]}
    assert np.mean(fast == 7) > np.mean(fast == table.ids[7][-1])


def test_exact_fallback_beyond_the_cache_has_the_same_distribution(emb):
    eps = 1.5 * m.truncated_gumbel_min_epsilon(emb.size, nb.build_neighbor_table(emb, 1).delta_min)
    tiny = m.TruncatedGumbel(emb, nb.build_neighbor_table(emb, 2), eps)  # most k exceed 3
    full = m.TruncatedGumbel(emb, nb.build_neighbor_table(emb, 40), eps)
    a = tiny.perturb(np.full(6_000, 3), Prg.from_int(13))
    b = full.perturb(np.full(6_000, 3), Prg.from_int(14))
    assert two_sample_chisquare(a, b) > 1e-3


def test_truncated_gumbel_is_reproducible_and_seed_dependent(emb, table):
    mech = m.TruncatedGumbel(emb, table, 200.0)
    words = np.arange(emb.size)
    np.testing.assert_array_equal(mech.perturb(words, Prg.from_int(1)), mech.perturb(words, Prg.from_int(1)))
    assert (mech.perturb(words, Prg.from_int(1)) != mech.perturb(words, Prg.from_int(2))).any()


def test_bad_word_indices_are_refused(emb, table):
    mech = m.TruncatedGumbel(emb, table, 200.0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mech.perturb(np.array([emb.size]), Prg.from_int(1))
    with pytest.raises(ValueError, match="words"):
        mech.perturb(np.array([0.5]), Prg.from_int(1))


def test_laplace_keeps_words_at_large_epsilon_and_moves_them_at_small(emb):
    words = m.vocabulary_sample(emb.size, 50, Prg.from_int(3))
    high = m.privacy_statistics(m.MultivariateLaplace(emb, 1e6), words, 20, Prg.from_int(4))
    assert high.n_w == 1.0 and high.s_w == 1.0
    low = m.privacy_statistics(m.MultivariateLaplace(emb, 0.5), words, 20, Prg.from_int(4))
    assert low.n_w < 0.5 and low.s_w > 3


def test_laplace_empirical_metric_dp_ratio():
    # Four words on a line; P[M(a) = y] <= exp(eps * |a - b|) P[M(b) = y] for every output y.
    vectors = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]], dtype=np.float32)
    emb = Embedding(("a", "b", "c", "d"), vectors)
    eps, draws = 0.8, 200_000
    mech = m.MultivariateLaplace(emb, eps)
    pa = np.bincount(mech.perturb(np.zeros(draws, int), Prg.from_int(5)), minlength=4) / draws
    pb = np.bincount(mech.perturb(np.ones(draws, int), Prg.from_int(6)), minlength=4) / draws
    bound = math.exp(eps * 1.0)
    ratio = np.maximum(pa / pb, pb / pa)
    assert (ratio <= bound * 1.05).all()
    assert ratio.max() > 1.2  # the mechanism does distinguish the words


def test_approximate_index_is_explicit_and_close(emb):
    exact = m.MultivariateLaplace(emb, 1e6)
    approx = m.MultivariateLaplace(emb, 1e6, approximate=True)
    words = np.arange(emb.size)
    assert not exact.approximate and approx.approximate
    assert (approx.perturb(words, Prg.from_int(1)) == words).mean() > 0.95


def test_privacy_statistics_counts(emb, table):
    mech = m.TruncatedGumbel(emb, table, 150.0)
    stats_ = m.privacy_statistics(mech, np.arange(20), 200, Prg.from_int(9))
    assert 0 < stats_.n_w < 1 and 1 < stats_.s_w <= table.k + 1
    assert stats_.words == 20 and stats_.draws == 200
    with pytest.raises(ValueError, match="draws"):
        m.privacy_statistics(mech, np.arange(3), 0, Prg.from_int(9))


def test_make_mechanism_names():
    emb = synthetic(30, 3, 1)
    with pytest.raises(ValueError, match="unknown text mechanism"):
        m.make_mechanism("gaussian", emb, None, 1.0)
    with pytest.raises(ValueError, match="neighbour table"):
        m.make_mechanism("truncated-gumbel", emb, None, 1e4)
    assert m.make_mechanism("multivariate-laplace", emb, None, 1.0).name == "multivariate-laplace"


@pytest.mark.parametrize("x", [1e-300, 1e-8, 0.3, 1.0, math.e, 3.0, 17.5, 1e3, 2 * 3.7 * 25.0, 1e12, 1e300])
def test_lambert_w0_matches_scipy(x):
    assert m.lambert_w0(x) == pytest.approx(float(lambertw(x).real), rel=4e-15, abs=1e-300)


def test_approximate_laplace_decoder_mostly_agrees_with_exact_search():
    emb = synthetic(n=3000, dim=8, seed=3)
    exact = m.MultivariateLaplace(emb, 3.0)
    approx = m.MultivariateLaplace(emb, 3.0, approximate=True)
    words = np.arange(3000)
    points = exact.noisy_vectors(words, Prg.from_int(5))
    truth, found = exact.nearest(points), approx.nearest(points)
    assert ((found >= 0) & (found < emb.size)).all()
    assert 0.85 < (found == truth).mean() < 1.0
    assert approx.perturb(words, Prg.from_int(6)).shape == words.shape


def test_laplace_mechanisms_share_one_vocabulary_search():
    emb = synthetic(n=500, dim=4, seed=2)
    searches = VocabularySearch(emb.vectors)
    first = m.make_mechanism("multivariate-laplace", emb, None, 1.0, approximate=True, searches=searches)
    second = m.make_mechanism("multivariate-laplace", emb, None, 2.0, approximate=True, searches=searches)
    assert first._lists is second._lists is searches.lists() and first._exact is searches.exact()
    with pytest.raises(ValueError, match="not built for this embedding"):
        m.MultivariateLaplace(synthetic(n=500, dim=4, seed=3), 1.0, searches=searches)
    with pytest.raises(ValueError, match="nprobe"):
        m.MultivariateLaplace(emb, 1.0, approximate=True, nprobe=0, searches=searches)
