"""Text sanitisation throughput on the default vocabulary (GloVe 6B 50d, 50,000 words).

Measures, in one run and on one core (faiss and BLAS held to one thread), by CPU time (robust on a shared
machine) and where said by wall clock: tokens per second of the vectorised truncated Gumbel and
multivariate Laplace mechanisms against a straightforward per-token implementation (one
nearest-neighbour query per token); multivariate Laplace's noise, exact decoding and inverted-list
decoding at several nprobe values (speed, and the share of tokens decoded to the same word as exact
search, on the same noisy vectors), against faiss's own IVF at the same lists; the end-to-end sanitiser
(tokenise, look up, perturb, re-case, join) on real review text against the per-text implementation it
replaced; cold start with and
without the neighbour cache; and the text node's launch to first answered
request with a warm cache. Writes benchmarks/results/text_throughput.json.
``--node-only`` measures only the node's first answer and updates that figure
in the file (with the load average it was taken at).

Usage: python benchmarks/text_throughput.py [--out PATH] [--node-only]
Targets: end to end >= 1,000,000 words/s (truncated Gumbel); truncated Gumbel
mechanism >= 100x the per-token baseline; multivariate Laplace >= 200,000
tokens/s with approximate search; text node first answer with a warm cache <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib.one_core  # noqa: F401  (first: one BLAS thread, before numpy loads)
import numpy as np

from mpcdp.prg import Prg, system_random
from mpcdp.text import evaluate, samplers
from mpcdp.text.embeddings import load_default_glove
from mpcdp.text.mechanisms import MultivariateLaplace, TruncatedGumbel
from mpcdp.text.nearest import ListSearch, VocabularySearch
from mpcdp.text.neighbors import load_or_build
from mpcdp.text.sanitizer import Sanitizer
from mpcdp.text.tokenize import apply_case, case_pattern, split

ROOT = Path(__file__).resolve().parents[1]
GUMBEL_EPSILON, LAPLACE_EPSILON = 200.0, 10.0


def best_of(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def laplace_exact_vs_approximate(emb, words, rng) -> dict:
    """Tokens per CPU second of noise, exact decoding and inverted-list decoding (ours, and faiss's IVF at the
    same lists and nprobe), and their agreement with exact decoding on the same noisy vectors."""
    import faiss

    exact = MultivariateLaplace(emb, LAPLACE_EPSILON)
    points = exact.noisy_vectors(words, rng)
    noise_rate = words.size / best_of(lambda: exact.noisy_vectors(words, rng), 3, time.process_time)
    seconds = best_of(lambda: exact.nearest(points), 1, time.process_time)
    truth = exact.nearest(points)
    rows = {
        "noise_tokens_per_cpu_second": noise_rate,
        "exact": {
            "decode_tokens_per_cpu_second": words.size / seconds,
            "end_to_end_tokens_per_cpu_second": 1 / (1 / noise_rate + seconds / words.size),
        },
    }
    search = ListSearch(emb.vectors)
    for nprobe in (2, 4, ListSearch.DEFAULT_NPROBE, 16):
        seconds = best_of(lambda nprobe=nprobe: search.nearest(points, nprobe), 3, time.process_time)
        rows[f"lists_nprobe_{nprobe}"] = {
            "lists": search.lists,
            "decode_tokens_per_cpu_second": words.size / seconds,
            "end_to_end_tokens_per_cpu_second": 1 / (1 / noise_rate + seconds / words.size),
            "agreement_with_exact": float((search.nearest(points, nprobe) == truth).mean()),
        }
    default = rows[f"lists_nprobe_{ListSearch.DEFAULT_NPROBE}"]
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(emb.dim), emb.dim, default["lists"])
    ivf.train(emb.vectors)
    ivf.add(emb.vectors)
    ivf.nprobe = ListSearch.DEFAULT_NPROBE
    queries = points.astype(np.float32)
    seconds = best_of(lambda: ivf.search(queries, 1), 3, time.process_time)
    rows["faiss_ivf_same_lists_and_nprobe"] = {
        "decode_tokens_per_cpu_second": words.size / seconds,
        "agreement_with_exact": float((ivf.search(queries, 1)[1][:, 0] == truth).mean()),
        "ours_vs_faiss_decode_speed": default["decode_tokens_per_cpu_second"] * seconds / words.size,
    }
    approximate = MultivariateLaplace(emb, LAPLACE_EPSILON, approximate=True)
    cpu = best_of(lambda: approximate.perturb(words, rng), 3, time.process_time)
    wall = best_of(lambda: approximate.perturb(words, rng), 3)
    rows["perturb_approximate_default"] = {
        "tokens_per_cpu_second": words.size / cpu,
        "tokens_per_second": words.size / wall,
    }
    rows["tokens"] = int(words.size)
    return rows


def laplace_new_epsilon(emb) -> dict:
    """Seconds to a ready approximate multivariate Laplace at one more epsilon: with the vocabulary's searches
    shared (what a sanitiser does), against building them for the mechanism (what it did before)."""
    searches = VocabularySearch(emb.vectors)
    MultivariateLaplace(emb, LAPLACE_EPSILON, approximate=True, searches=searches)  # the first builds them
    shared = best_of(lambda: MultivariateLaplace(emb, 2 * LAPLACE_EPSILON, approximate=True, searches=searches))
    own = best_of(lambda: MultivariateLaplace(emb, 2 * LAPLACE_EPSILON, approximate=True), 3)
    return {"shared_searches_s": shared, "own_searches_s": own, "ratio": own / shared}


def per_token_gumbel(emb, index, mech: TruncatedGumbel, words, rng) -> np.ndarray:
    """The straightforward implementation: per token one k-NN query, then noise and argmin."""
    cal, bound = mech.calibration, mech.table.delta_max
    out = np.empty_like(words)
    for i, w in enumerate(words):
        k = int(mech.candidate_count.sample(rng, 1)[0])
        dist, ids = index.search(emb.vectors[w : w + 1], k)
        noisy = np.sqrt(np.maximum(dist[0], 0)) + samplers.truncated_gumbel(rng, k, cal.scale, bound)
        out[i] = ids[0][np.argmin(noisy)]
    return out


def per_token_laplace(emb, index, mech: MultivariateLaplace, words, rng) -> np.ndarray:
    out = np.empty_like(words)
    for i, w in enumerate(words):
        point = emb.vectors[w : w + 1] + mech.noise(1, rng).astype(np.float32)
        out[i] = index.search(point, 1)[1][0, 0]
    return out


def per_text_sanitizer(sanitizer: Sanitizer, texts, mechanism, rng) -> list[str]:
    """The straightforward sanitiser the batch path replaced: per text a regular-expression split, a
    dictionary lookup and str methods per word (one vectorised draw for the whole input, as before)."""
    split_texts = [split(t) for t in texts]
    ids = np.array([sanitizer.embedding.index.get(k, -1) for _, keys, _ in split_texts for k in keys])
    known = ids >= 0
    ids[known] = mechanism.perturb(ids[known], rng)
    words = iter(ids.tolist())
    out = []
    for pieces, _, glued in split_texts:
        for i, word in enumerate(pieces[1::2]):
            index = next(words)
            new = sanitizer.embedding.words[index] if index >= 0 else sanitizer.placeholder
            if index >= 0 and word != word.lower():
                new = apply_case(new, case_pattern(word))
            pieces[2 * i + 1] = " " + new if i in glued and new[:1].isalnum() else new
        out.append("".join(pieces))
    return out


def node_cold_start(cache: Path) -> float:
    """Seconds from launching `mpcdp text-node` to its first answered Sanitize request."""
    import grpc

    from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "text-node", "--port", "0", "--insecure"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, MPCDP_CACHE=str(cache)),
    )
    try:
        port = None
        while port is None:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("text node exited during start-up")
            found = re.search(r"serving on [\d.]+:(\d+)", line)
            port = found and int(found.group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = text_pb2.SanitizeRequest(
                id="1", text="a fine film", mechanism="truncated-gumbel", epsilon=GUMBEL_EPSILON
            )
            list(text_pb2_grpc.TextSanitizerStub(channel).Sanitize(iter([request]), timeout=30))
        return time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def node_only(out: Path) -> int:
    """Re-measure the node's first answer (best of 3 launches, each listed) and update it in ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        load_or_build(load_default_glove(), 64, cache)
        load = os.getloadavg()
        runs = [node_cold_start(cache) for _ in range(3)]
    result = json.loads(out.read_text()) if out.exists() else {}
    result["text_node_cold_start_with_cache_s"] = min(runs)
    result["text_node_cold_start_runs"] = {"seconds": runs, "load_average_at_start": load}
    result.setdefault("targets", {})["node_first_answer_with_warm_cache_le_1s"] = min(runs) <= 1.0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"text_node_cold_start_with_cache_s": min(runs), **result["text_node_cold_start_runs"]}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "text_throughput.json")
    ap.add_argument("--tokens", type=int, default=2_000_000, help="tokens for the vectorised runs")
    ap.add_argument(
        "--node-only",
        action="store_true",
        help="measure only the text node's first answer with a warm cache; update it in --out",
    )
    args = ap.parse_args(argv)
    if args.node_only:
        return node_only(args.out)
    import faiss

    faiss.omp_set_num_threads(1)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "load_average_at_start": os.getloadavg(),
        },
        "vocabulary": "GloVe 6B 50d, 50,000 most frequent words",
        "neighbors_cached": 64,
        "epsilon": {"truncated-gumbel": GUMBEL_EPSILON, "multivariate-laplace": LAPLACE_EPSILON},
        "randomness": "system_random (AES-256-CTR CSPRNG) for every mechanism run",
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        t = time.perf_counter()
        emb = load_default_glove()
        table = load_or_build(emb, 64, cache)
        result["cold_start_without_cache_s"] = time.perf_counter() - t
        t = time.perf_counter()
        emb = load_default_glove()
        table = load_or_build(emb, 64, cache)
        result["cold_start_with_cache_s"] = time.perf_counter() - t
        result["text_node_cold_start_with_cache_s"] = min(node_cold_start(cache) for _ in range(3))

    words = (Prg.from_int(0, "bench").uint64(args.tokens) % np.uint64(emb.size)).astype(np.int64)
    gumbel = TruncatedGumbel(emb, table, GUMBEL_EPSILON)
    laplace = MultivariateLaplace(emb, LAPLACE_EPSILON)
    index = faiss.IndexFlatL2(emb.dim)
    index.add(emb.vectors)
    rng = system_random("bench")

    g_fast = args.tokens / best_of(lambda: gumbel.perturb(words, rng), clock=time.process_time)
    n_slow = 2_000
    g_slow = n_slow / best_of(lambda: per_token_gumbel(emb, index, gumbel, words[:n_slow], rng), 1, time.process_time)
    n_lap = 20_000
    l_fast = n_lap / best_of(lambda: laplace.perturb(words[:n_lap], rng), 1, time.process_time)
    l_slow = n_slow / best_of(lambda: per_token_laplace(emb, index, laplace, words[:n_slow], rng), 1, time.process_time)
    result["multivariate_laplace_exact_vs_approximate"] = laplace_exact_vs_approximate(emb, words[:n_lap], rng)
    result["multivariate_laplace_new_epsilon"] = laplace_new_epsilon(emb)
    result["tokens_per_second"] = {
        "truncated-gumbel": {
            "vectorised": g_fast,
            "per_token_baseline": g_slow,
            "speedup": g_fast / g_slow,
            "tokens": args.tokens,
            "baseline_tokens": n_slow,
        },
        "multivariate-laplace": {
            "vectorised": l_fast,
            "per_token_baseline": l_slow,
            "speedup": l_fast / l_slow,
            "tokens": n_lap,
            "baseline_tokens": n_slow,
        },
    }
    texts, _ = evaluate.load_rotten_tomatoes()
    sanitizer = Sanitizer(emb, table)
    n_words = int(
        sanitizer.vocabulary_ids(texts).size
        + sanitizer.sanitize_batch(texts, "truncated-gumbel", GUMBEL_EPSILON, rng).oov_words.sum()
    )

    def batch():
        return sanitizer.sanitize_batch(texts, "truncated-gumbel", GUMBEL_EPSILON, rng)

    seconds = best_of(batch, 5)
    cpu = best_of(batch, 5, clock=time.process_time)
    baseline = best_of(lambda: per_text_sanitizer(sanitizer, texts, gumbel, rng), 3, clock=time.process_time)
    result["end_to_end_sanitizer"] = {
        "texts": len(texts),
        "words": n_words,
        "words_per_second": n_words / seconds,
        "words_per_cpu_second": n_words / cpu,
        "per_text_baseline_words_per_cpu_second": n_words / baseline,
        "speedup_over_per_text_baseline": baseline / cpu,
        "note": "tokenise, look up, perturb, re-case, join (truncated Gumbel), the whole input as one batch",
    }
    laplace_default = result["multivariate_laplace_exact_vs_approximate"]["perturb_approximate_default"]
    result["targets"] = {
        "end_to_end_words_per_second_ge_1e6": n_words / seconds >= 1e6,
        "end_to_end_words_per_cpu_second_ge_1e6": n_words / cpu >= 1e6,
        "gumbel_tokens_per_second_ge_1e6": g_fast >= 1e6,
        "gumbel_speedup_ge_100x": g_fast / g_slow >= 100,
        "laplace_approximate_tokens_per_cpu_second_ge_2e5": laplace_default["tokens_per_cpu_second"] >= 2e5,
        "node_first_answer_with_warm_cache_le_1s": result["text_node_cold_start_with_cache_s"] <= 1.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=lambda x: x if math.isfinite(x) else None) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
