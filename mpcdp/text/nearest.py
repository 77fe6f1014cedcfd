"""The vocabulary word nearest to each of many points: exact, or approximate by inverted lists.

:class:`ExactSearch` scans the whole vocabulary (a faiss flat index in float32, the best few candidates
re-measured in float64). :class:`ListSearch` splits the vocabulary into about sqrt(n) lists by k-means
(faiss, fixed seed, on the public embedding) and compares each point only with the words of the
``nprobe`` lists whose centroids are nearest to it. It visits the lists one at a time and compares all
the points that probe a list with its words in one matrix product, so the work runs in BLAS rather than
point by point (about 3x faster than faiss's own inverted-file scan here). Decoding a noisy vector to a
word is post-processing, so an approximate search leaves a mechanism's guarantee unchanged; it decodes some
points to another word than exact search would (``benchmarks/text_throughput.py`` measures how many).
:class:`VocabularySearch` builds each search once per vocabulary, on first use, for every mechanism and
epsilon to share.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
Points = npt.NDArray[np.float64]


class ExactSearch:
    """The nearest word by a full scan; ties and float32 rounding settled in float64 among the best few."""

    RERANK = 4

    def __init__(self, vectors: npt.NDArray[np.float32]):
        import faiss

        self.vectors64 = vectors.astype(np.float64)  # the vocabulary's one float64 copy (noisy points start here)
        self.vectors64.flags.writeable = False  # shared by every epsilon and thread: nothing may change it in place
        self.index: Any = faiss.IndexFlatL2(vectors.shape[1])
        self.index.add(vectors)

    def nearest(self, points: Points) -> Int64s:
        top = min(self.RERANK, self.vectors64.shape[0])
        _, ids = self.index.search(points.astype(np.float32), top)
        diff = self.vectors64[ids] - points[:, None, :]
        dist = np.einsum("ijk,ijk->ij", diff, diff)
        found: Int64s = ids[np.arange(ids.shape[0]), np.argmin(dist, axis=1)].astype(np.int64)
        return found


class ListSearch:
    """The nearest word among the words of the ``nprobe`` lists nearest to each point (see the module)."""

    DEFAULT_NPROBE = 8

    def __init__(self, vectors: npt.NDArray[np.float32], lists: int | None = None, exact: ExactSearch | None = None):
        import faiss

        n, dim = vectors.shape
        self.lists = lists or max(1, min(round(math.sqrt(n)), n // 40))
        kmeans = faiss.Kmeans(dim, self.lists, niter=20, seed=1234)
        kmeans.train(vectors)
        self.centroids: Any = faiss.IndexFlatL2(dim)
        self.centroids.add(kmeans.centroids)
        _, assigned = self.centroids.search(vectors, 1)
        order = np.argsort(assigned[:, 0], kind="stable")
        sizes = np.bincount(assigned[:, 0], minlength=self.lists)
        self.members = np.split(order, np.cumsum(sizes)[:-1])
        self.transposed = [np.ascontiguousarray(vectors[m].T) for m in self.members]
        self.norms = [np.einsum("ij,ij->i", vectors[m], vectors[m]) for m in self.members]
        self.exact = exact or ExactSearch(vectors)  # for a point whose probed lists are all empty

    def nearest(self, points: Points, nprobe: int = DEFAULT_NPROBE) -> Int64s:
        if nprobe < 1:
            raise ValueError(f"nprobe must be at least 1, got {nprobe!r}")
        nprobe = min(nprobe, self.lists)
        n = points.shape[0]
        queries = points.astype(np.float32)
        _, probed = self.centroids.search(queries, nprobe)
        lists = probed.ravel()
        order = np.argsort(lists, kind="stable")
        lists, asking = lists[order], np.repeat(np.arange(n), nprobe)[order]
        cuts = (np.flatnonzero(lists[1:] != lists[:-1]) + 1).tolist()
        best = np.full(n, np.inf, dtype=np.float32)
        found = np.full(n, -1, dtype=np.int64)
        for first, last in zip([0, *cuts], [*cuts, lists.size], strict=True):
            which, who = int(lists[first]), asking[first:last]
            if which < 0 or not self.members[which].size:
                continue
            dist = queries[who] @ self.transposed[which]  # |x|^2 - 2 q.x ranks like |x - q|^2
            dist *= -2
            dist += self.norms[which]
            column = dist.argmin(axis=1)
            value = dist[np.arange(who.size), column]
            better = value < best[who]
            best[who[better]] = value[better]
            found[who[better]] = self.members[which][column[better]]
        missing = np.flatnonzero(found < 0)
        if missing.size:
            found[missing] = self.exact.nearest(points[missing])
        return found


class VocabularySearch:
    """One vocabulary's searches, each built on first use and shared from then on (thread-safe).

    A mechanism at every epsilon decodes with the same index: building it (faiss k-means for the lists)
    costs far more than a mechanism, so a sanitiser builds it once. Pickled (to a worker), it carries
    only the vectors and builds again there on first use (faiss indexes do not pickle).
    """

    def __init__(self, vectors: npt.NDArray[np.float32]):
        self.vectors = vectors
        self._lock = threading.Lock()
        self._exact: ExactSearch | None = None
        self._lists: ListSearch | None = None

    def exact(self) -> ExactSearch:
        with self._lock:
            if self._exact is None:
                self._exact = ExactSearch(self.vectors)
            return self._exact

    def lists(self) -> ListSearch:
        exact = self.exact()
        with self._lock:
            if self._lists is None:
                self._lists = ListSearch(self.vectors, exact=exact)
            return self._lists

    def __getstate__(self) -> dict[str, Any]:
        return {"vectors": self.vectors}

    def __setstate__(self, state: dict[str, Any]) -> None:
        VocabularySearch.__init__(self, state["vectors"])
