"""Nearest-neighbour lists for a whole vocabulary, with its extreme pairwise distances, cached on disk.

For every word the table holds its ``k`` nearest *other* words by Euclidean
distance (ascending; the word itself excluded), found once with an exact
faiss flat index and re-measured in float64. It also holds the global
extremes the truncated Gumbel calibration needs: Delta, the largest pairwise
distance, and Delta0, the smallest distance between two words. Both are
exact: Delta0 is the smallest first-neighbour distance (an embedding's vectors
are distinct), and
Delta comes from a blocked float64 scan pruned by the triangle inequality
around the centroid.

Tables are cached as ``.npz`` files named by the embedding's fingerprint and
``k`` in :func:`default_cache_dir`. The cache holds only public data derived
from the embedding (never user text).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embeddings import Embedding

DEFAULT_NEIGHBORS = 64
_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$MPCDP_CACHE``, else ``$XDG_CACHE_HOME/mpcdp``, else ``~/.cache/mpcdp``."""
    if os.environ.get("MPCDP_CACHE"):
        return Path(os.environ["MPCDP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mpcdp"


@dataclass(frozen=True)
class NeighborTable:
    """``ids[i]``/``distances[i]``: word i's k nearest other words, nearest first; global Delta, Delta0."""

    ids: np.ndarray  # (n, k) int32
    distances: np.ndarray  # (n, k) float64
    delta_max: float
    delta_min: float
    fingerprint: str

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])


def exact_neighbors(embedding: Embedding, word: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Word ``word``'s k nearest other words by a float64 scan of the whole vocabulary."""
    if not 0 <= word < embedding.size:
        raise ValueError(f"word index {word} is outside the vocabulary")
    if not 1 <= k < embedding.size:
        raise ValueError(f"k must be in [1, {embedding.size - 1}], got {k!r}")
    diff = embedding.vectors.astype(np.float64) - embedding.vectors[word].astype(np.float64)
    dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    dist[word] = np.inf
    order = np.argsort(dist, kind="stable")[:k]
    return order.astype(np.int32), dist[order]


def _knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n = vectors.shape[0]
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    found = min(k + 1, n)
    _, ids = index.search(vectors, found)
    # Drop each word itself (float32 ties may put a neighbour in column 0).
    own = ids == np.arange(n)[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), found - 1)
    keep = np.ones_like(ids, dtype=bool)
    keep[np.arange(n), drop] = False
    ids = ids[keep].reshape(n, found - 1)[:, :k]
    # Re-measure in float64 and re-sort: faiss ranks by float32 squared distances.
    v64 = vectors.astype(np.float64)
    diff = v64[ids] - v64[:, None, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(ids, order, 1).astype(np.int32), np.take_along_axis(dist, order, 1)


def max_pairwise_distance(vectors: np.ndarray, block: int = 512) -> float:
    """The exact largest Euclidean distance between two rows, in float64.

    Rows are visited by decreasing distance r_i from the centroid; since
    ||x_i - x_j|| <= r_i + max_j r_j, the scan stops once that bound cannot beat
    the best distance found so far.
    """
    v = vectors.astype(np.float64)
    centred = v - v.mean(axis=0)
    radius = np.linalg.norm(centred, axis=1)
    order = np.argsort(-radius, kind="stable")
    r_max = radius[order[0]]
    sq = np.einsum("ij,ij->i", v, v)
    best = 0.0
    for start in range(0, v.shape[0], block):
        rows = order[start : start + block]
        if radius[rows[0]] + r_max <= best:
            break
        d2 = sq[rows, None] + sq[None, :] - 2.0 * (v[rows] @ v.T)
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        # The expansion loses a little precision; re-measure the winning pair directly.
        best = max(best, float(np.linalg.norm(v[rows[i]] - v[j])))
    return best


def build_neighbor_table(embedding: Embedding, k: int = DEFAULT_NEIGHBORS) -> NeighborTable:
    """Compute the table (exact faiss kNN, exact Delta and Delta0); minutes at most for 50k words."""
    if not 1 <= k < embedding.size:
        raise ValueError(f"k (neighbours per word) must be in [1, {embedding.size - 1}], got {k!r}")
    ids, distances = _knn(embedding.vectors, k)
    return NeighborTable(
        ids=ids,
        distances=distances,
        delta_max=max_pairwise_distance(embedding.vectors),
        delta_min=float(distances[:, 0].min()),  # vectors are distinct (Embedding refuses duplicates)
        fingerprint=embedding.fingerprint(),
    )


def cache_path(cache_dir: Path, fingerprint: str, k: int) -> Path:
    return Path(cache_dir) / "text" / f"neighbours-v{_FORMAT_VERSION}-{fingerprint[:32]}-k{k}.npz"


def load_or_build(embedding: Embedding, k: int = DEFAULT_NEIGHBORS, cache_dir: Path | None = None) -> NeighborTable:
    """The cached table for this embedding and k, building and saving it on a miss."""
    fingerprint = embedding.fingerprint()
    path = cache_path(cache_dir or default_cache_dir(), fingerprint, k)
    if path.exists():
        with np.load(path) as data:
            if str(data["fingerprint"]) == fingerprint and data["ids"].shape == (embedding.size, k):
                return NeighborTable(
                    data["ids"], data["distances"], float(data["delta_max"]), float(data["delta_min"]), fingerprint
                )
    table = build_neighbor_table(embedding, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file and rename, so a concurrent reader never sees half a table.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez(
            fh,
            ids=table.ids,
            distances=table.distances,
            delta_max=table.delta_max,
            delta_min=table.delta_min,
            fingerprint=fingerprint,
        )
    os.replace(tmp, path)
    return table
