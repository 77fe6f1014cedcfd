"""Text sanitisation throughput on the default vocabulary (GloVe 6B 50d, 50,000 words).

Measures, in one run and on one core (faiss and BLAS held to one thread):
tokens per second of the vectorised truncated Gumbel and multivariate Laplace
mechanisms against a straightforward per-token implementation (one
nearest-neighbour query per token); multivariate Laplace with exact search
against faiss IVF approximate search at several nprobe values (speed, and the
share of tokens decoded to the same word as exact search, on the same noisy
vectors); the end-to-end sanitiser (tokenise, look up, perturb, re-case,
join) on real review text, by wall clock and by CPU time; cold start with and
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

import numpy as np

from mpcdp.prg import Prg, system_random
from mpcdp.text import evaluate, samplers
from mpcdp.text.embeddings import load_default_glove
from mpcdp.text.mechanisms import MultivariateLaplace, TruncatedGumbel
from mpcdp.text.neighbours import load_or_build
from mpcdp.text.sanitizer import Sanitizer

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
    """Tokens/s of exact and IVF decoding, and their agreement on the same noisy vectors."""
    exact = MultivariateLaplace(emb, LAPLACE_EPSILON)
    points = exact._vectors64[words] + exact.noise(words.size, rng)
    noise_rate = words.size / best_of(lambda: exact.noise(words.size, rng), 1)
    seconds = best_of(lambda: exact._nearest(points), 1)
    truth = exact._nearest(points)
    rows = {
        "noise_only_tokens_per_second": noise_rate,
        "exact": {
            "decode_tokens_per_second": words.size / seconds,
            "end_to_end_tokens_per_second": 1 / (1 / noise_rate + seconds / words.size),
        },
    }
    for nprobe in (1, 4, MultivariateLaplace.DEFAULT_NPROBE, 16):
        approx = MultivariateLaplace(emb, LAPLACE_EPSILON, approximate=True, nprobe=nprobe)
        seconds = best_of(lambda: approx._nearest(points), 1)
        rows[f"ivf_nprobe_{nprobe}"] = {
            "decode_tokens_per_second": words.size / seconds,
            "end_to_end_tokens_per_second": 1 / (1 / noise_rate + seconds / words.size),
            "agreement_with_exact": float((approx._nearest(points) == truth).mean()),
        }
    rows["tokens"] = int(words.size)
    return rows


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
    os.environ["OMP_NUM_THREADS"] = "1"  # one core, the node subprocess included
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
        "neighbours_cached": 64,
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

    g_fast = args.tokens / best_of(lambda: gumbel.perturb(words, rng))
    n_slow = 2_000
    g_slow = n_slow / best_of(lambda: per_token_gumbel(emb, index, gumbel, words[:n_slow], rng), 1)
    n_lap = 20_000
    l_fast = n_lap / best_of(lambda: laplace.perturb(words[:n_lap], rng), 1)
    l_slow = n_slow / best_of(lambda: per_token_laplace(emb, index, laplace, words[:n_slow], rng), 1)
    result["multivariate_laplace_exact_vs_approximate"] = laplace_exact_vs_approximate(emb, words[:n_lap], rng)
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
    n_words = sum(
        r.cost.words_perturbed + r.cost.oov_words
        for r in sanitizer.sanitize(texts, "truncated-gumbel", GUMBEL_EPSILON, rng)
    )
    seconds = best_of(lambda: sanitizer.sanitize(texts, "truncated-gumbel", GUMBEL_EPSILON, rng))
    cpu = best_of(lambda: sanitizer.sanitize(texts, "truncated-gumbel", GUMBEL_EPSILON, rng), clock=time.process_time)
    result["end_to_end_sanitizer"] = {
        "texts": len(texts),
        "words": n_words,
        "words_per_second": n_words / seconds,
        "words_per_cpu_second": n_words / cpu,
        "note": "tokenise, look up, perturb, re-case, join (truncated Gumbel)",
    }
    best_approx = max(
        (v for k, v in result["multivariate_laplace_exact_vs_approximate"].items() if k.startswith("ivf")),
        key=lambda v: v["end_to_end_tokens_per_second"],
    )
    result["targets"] = {
        "end_to_end_words_per_second_ge_1e6": n_words / seconds >= 1e6,
        "gumbel_tokens_per_second_ge_1e6": g_fast >= 1e6,
        "gumbel_speedup_ge_100x": g_fast / g_slow >= 100,
        "laplace_approximate_tokens_per_second_ge_2e5": best_approx["end_to_end_tokens_per_second"] >= 2e5,
        "node_first_answer_with_warm_cache_le_1s": result["text_node_cold_start_with_cache_s"] <= 1.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=lambda x: x if math.isfinite(x) else None) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
