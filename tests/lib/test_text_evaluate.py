"""The utility experiment's task loaders and split: sizes, labels, determinism (no embedding needed)."""

import numpy as np
import pytest

from mpcdp.text.evaluate import (
    MIN_SENTENCE_WORDS,
    SUBJECTIVITY_PER_CLASS,
    TASKS,
    fixed_split,
    load_rotten_tomatoes,
    load_subjectivity,
    read_results,
    write_results,
)


@pytest.fixture(scope="module")
def subjectivity():
    return load_subjectivity()


def test_subjectivity_is_balanced_and_labelled(subjectivity):
    texts, labels = subjectivity
    assert len(texts) == labels.size == 2 * SUBJECTIVITY_PER_CLASS
    assert set(labels.tolist()) == {0, 1}
    assert (labels == 1).sum() == (labels == 0).sum() == SUBJECTIVITY_PER_CLASS
    assert len(set(texts)) == len(texts)  # no text in both classes or twice
    assert all(len(t.split()) >= MIN_SENTENCE_WORDS for t, y in zip(texts, labels) if y == 0)
    assert all("\n" not in t for t in texts)


def test_subjectivity_classes_are_plot_sentences_and_review_snippets(subjectivity):
    texts, labels = subjectivity
    objective = [t for t, y in zip(texts, labels) if y == 0]
    subjective = [t for t, y in zip(texts, labels) if y == 1]
    # Plot sentences are single sentences cut from multi-sentence summaries: they end a sentence,
    # and are a few dozen words at most (whole summaries average over 100).
    assert np.mean([t.rstrip()[-1] in ".!?\"')" for t in objective]) > 0.95
    assert np.mean([len(t.split()) for t in objective]) < 40
    assert 10 < np.mean([len(t.split()) for t in subjective]) < 30


def test_subjectivity_sample_and_split_are_deterministic(subjectivity):
    texts, labels = subjectivity
    again_texts, again_labels = load_subjectivity()
    assert again_texts == texts and np.array_equal(again_labels, labels)
    smaller, _ = load_subjectivity(per_class=100)
    assert len(smaller) == 200
    train, test = fixed_split(len(texts))
    assert test.size == round(0.2 * len(texts)) and train.size + test.size == len(texts)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(texts)))
    train2, test2 = fixed_split(len(texts))
    assert np.array_equal(train, train2) and np.array_equal(test, test2)
    # The split mixes the classes: both are in the test set in roughly equal numbers.
    assert 0.4 < labels[test].mean() < 0.6


def test_subjectivity_refuses_more_than_available():
    with pytest.raises(ValueError, match="per_class"):
        load_subjectivity(per_class=10**6)


def test_sentiment_loader_sizes():
    texts, labels = load_rotten_tomatoes()
    assert len(texts) == labels.size == 4866 and set(labels.tolist()) == {0, 1}
    assert set(TASKS) == {"sentiment", "subjectivity"}


def test_results_file_keeps_tasks(tmp_path):
    path = tmp_path / "eval.json"
    assert read_results(path) == {}
    write_results({"subjectivity": {"points": []}, "sentiment": {"points": [1]}}, path)
    assert read_results(path) == {"sentiment": {"points": [1]}, "subjectivity": {"points": []}}
    path.write_text("[]")
    with pytest.raises(ValueError, match="tasks"):
        read_results(path)


def test_n_w_is_counted_over_the_corpus_tokens():
    """A frequent word far from the others is kept almost always; rare clustered words almost never.
    N_w over the corpus's tokens sees the frequent word as often as the text does; a vocabulary
    sample sees it once in ten."""
    from mpcdp.prg import Prg
    from mpcdp.text.embeddings import Embedding
    from mpcdp.text.evaluate import markdown_table, token_sample
    from mpcdp.text.mechanisms import privacy_statistics, vocabulary_sample
    from mpcdp.text.sanitizer import Sanitizer

    words = ("the", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9")
    vectors = np.zeros((10, 2), dtype=np.float32)
    vectors[0] = (50, 0)  # isolated
    vectors[1:, 1] = np.arange(1, 10) * 0.01  # a tight cluster
    sanitizer = Sanitizer(Embedding(words, vectors), None)
    texts = ["The w1 the, THE the w2!"] * 50 + ["the w3 Zorblax"] * 50
    tokens = token_sample(sanitizer, texts, 400, Prg.from_int(1))
    assert tokens.size == 400 and (tokens == 0).mean() == pytest.approx(6 / 9, abs=0.08)
    mech = sanitizer.mechanism("multivariate-laplace", 2.0)
    on_tokens = privacy_statistics(mech, tokens, 20, Prg.from_int(2))
    on_vocabulary = privacy_statistics(mech, vocabulary_sample(10, 10, Prg.from_int(3)), 20, Prg.from_int(4))
    assert on_tokens.n_w > 0.6 and on_vocabulary.n_w < 0.3
    with pytest.raises(ValueError, match="no vocabulary word"):
        token_sample(sanitizer, ["Zorblax!"], 10, Prg.from_int(1))
    table = markdown_table(
        {
            "clean_accuracy": 0.7,
            "points": [
                {
                    "mechanism": "m",
                    "epsilon": 1.0,
                    "accuracy_mean": 0.6,
                    "accuracy_sd": 0.01,
                    "n_w": 0.25,
                    "s_w": 3.0,
                    "n_w_vocabulary": 0.5,
                    "s_w_vocabulary": 2.0,
                }
            ],
        }
    )
    assert "N_w (tokens)" in table and "| 0.250 | 3.0 | 0.500 | 2.0 |" in table
