"""Calibration by N_w: the epsilon found keeps the target fraction of a corpus's words, or the
mechanism says it cannot."""

import json

import pytest

from mpcdp.prg import Prg
from mpcdp.text import calibrate, samplers
from mpcdp.text import neighbors as nb
from mpcdp.text.embeddings import Embedding
from mpcdp.text.evaluate import token_sample
from mpcdp.text.mechanisms import privacy_statistics
from mpcdp.text.sanitizer import Sanitizer
from services.cli import main

WORDS = tuple(f"w{i}" for i in range(80))


@pytest.fixture(scope="module")
def sanitizer():
    emb = Embedding(WORDS, samplers.standard_normal(Prg.from_int(0, "emb"), (len(WORDS), 5)))
    return Sanitizer(emb, nb.build_neighbor_table(emb, 10))


CORPUS = [" ".join(f"w{(i * 7 + j) % 30}" for j in range(12)) for i in range(40)]


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_laplace_epsilon_found_keeps_the_target_on_fresh_draws(sanitizer, target):
    words = token_sample(sanitizer, CORPUS, 300, Prg.from_int(1))
    result = calibrate.calibrate(sanitizer, "multivariate-laplace", target, words, draws=20)
    assert result.reached and abs(result.n_w - target) <= 0.02
    fresh = privacy_statistics(
        sanitizer.mechanism("multivariate-laplace", result.epsilon), words, 50, Prg.from_int(99, "fresh")
    )
    assert abs(fresh.n_w - target) < 0.04
    assert result.reachable[0] < target < result.reachable[1]


def test_an_unreachable_target_is_said_so(sanitizer, tmp_path):
    words = token_sample(sanitizer, CORPUS, 200, Prg.from_int(1))
    result = calibrate.calibrate(sanitizer, "truncated-gumbel", 0.99, words, draws=10)
    assert not result.reached and result.reachable[1] < 0.99
    assert result.curve[0][0] > 0  # the sweep starts above the mechanism's smallest valid epsilon
    calibrate.plot(result, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        calibrate.calibrate(sanitizer, "truncated-gumbel", 1.0, words)


def test_cli(tmp_path, sanitizer, capsys):
    emb = sanitizer.embedding
    glove = tmp_path / "e.txt"
    glove.write_text("".join(f"{w} {' '.join(map(repr, v.tolist()))}\n" for w, v in zip(emb.words, emb.vectors)))
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    base = [
        "text",
        "calibrate",
        "--embedding",
        str(glove),
        "--neighbors",
        "10",
        "--cache-dir",
        str(tmp_path / "c"),
        "--png",
        str(tmp_path / "curve.png"),
        "--words",
        "200",
        "--draws",
        "10",
    ]
    assert (
        main(
            base
            + [
                "--mechanism",
                "multivariate-laplace",
                "--target-nw",
                "0.5",
                "--corpus",
                str(tmp_path / "corpus.txt"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert abs(out["n_w"] - 0.5) < 0.03 and out["counted_over"].startswith("200 word occurrences")
    assert (tmp_path / "curve.png").exists()
    assert main(base + ["--mechanism", "truncated-gumbel", "--target-nw", "0.99"]) == 1
    assert "cannot keep 0.99 of the words" in capsys.readouterr().out
    assert main(base + ["--mechanism", "truncated-gumbel", "--target-nw", "1.5"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
