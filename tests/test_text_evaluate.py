"""The utility experiment's task loaders and split: sizes, labels, determinism (no embedding needed)."""

import numpy as np
import pytest

from mpcdp.text.evaluate import (MIN_SENTENCE_WORDS, SUBJECTIVITY_PER_CLASS, TASKS, fixed_split, load_rotten_tomatoes,
                                 load_subjectivity, read_results, write_results)


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
    assert np.mean([t.rstrip()[-1] in '.!?"\')' for t in objective]) > 0.95
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
