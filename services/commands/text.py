"""``mpcdp text sanitize|evaluate``: word-level metric-DP text sanitisation and its utility experiment."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from mpcdp.text.mechanisms import MECHANISMS, EpsilonTooSmallError
from services.text_node import add_embedding_arguments, sanitizer_from_args

BATCH_LINES = 2000
PROGRESS_MIN_BYTES = 1 << 20
GUMBEL_GRID = [80, 100, 200, 1000, 1e4, 1e6]
LAPLACE_GRID = [2, 3, 4, 5, 6, 8, 12, 80, 100, 1000]
RESULTS = Path("benchmarks/results")


def register(subparsers) -> None:
    p = subparsers.add_parser("text", help="sanitise text with word-level metric DP, or run the utility experiment")
    sub = p.add_subparsers(dest="text_command", metavar="ACTION", required=True)

    s = sub.add_parser("sanitize", help="sanitise each line of FILE (or stdin) to stdout",
                       description="Replace every word by a metric-DP draw near it in the embedding space; "
                                   "punctuation, spacing and capitalisation are kept. One text per line.")
    s.add_argument("input", nargs="?", default="-", help="input file, or - for stdin (default)")
    s.add_argument("--mechanism", choices=MECHANISMS, default="truncated-gumbel")
    s.add_argument("--epsilon", type=float, required=True,
                   help="metric-DP epsilon per word, per unit of embedding distance")
    s.add_argument("-o", "--output", default="-", help="output file, or - for stdout (default)")
    add_embedding_arguments(s)
    s.set_defaults(run=run_sanitize)

    e = sub.add_parser("evaluate", help="privacy-utility experiment on Rotten Tomatoes snippets",
                       description="Sanitise the training texts, train a classifier, score on clean test "
                                   "texts; accuracy, N_w and S_w per mechanism and epsilon.")
    e.add_argument("--gumbel-epsilons", type=float, nargs="*", default=GUMBEL_GRID)
    e.add_argument("--laplace-epsilons", type=float, nargs="*", default=LAPLACE_GRID)
    e.add_argument("--seeds", type=int, default=5, help="runs per point (default %(default)s)")
    e.add_argument("--stat-words", type=int, default=200, help="vocabulary words sampled for N_w, S_w")
    e.add_argument("--stat-draws", type=int, default=100, help="draws per sampled word for N_w, S_w")
    e.add_argument("--json", type=Path, default=RESULTS / "text_eval.json")
    e.add_argument("--png", type=Path, default=RESULTS / "text_eval.png")
    add_embedding_arguments(e)
    e.set_defaults(run=run_evaluate)


def _open(name: str, mode: str):
    if name == "-":  # never close the process's own streams
        return contextlib.nullcontext(sys.stdin if "r" in mode else sys.stdout)
    return open(name, mode, encoding="utf-8", newline="")


def run_sanitize(args) -> int:
    from tqdm import tqdm

    from mpcdp.prg import system_random

    try:
        if args.input != "-" and not os.path.isfile(args.input):
            raise ValueError(f"input file {args.input!r} does not exist")
        sanitizer = sanitizer_from_args(args)
        sanitizer.mechanism(args.mechanism, args.epsilon)  # validate before reading any input
    except (ValueError, OSError) as exc:  # EpsilonTooSmallError is a ValueError
        print(f"mpcdp text sanitize: {exc}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.input) if args.input != "-" else None
    rng = system_random("text-sanitize")
    with _open(args.input, "r") as src, _open(args.output, "w") as dst, tqdm(
            total=size, unit="B", unit_scale=True, desc="sanitising", file=sys.stderr,
            disable=size is not None and size < PROGRESS_MIN_BYTES or None) as bar:
        batch = []
        for line in src:
            batch.append(line)
            if len(batch) >= BATCH_LINES:
                _flush(sanitizer, batch, args, rng, dst, bar)
        _flush(sanitizer, batch, args, rng, dst, bar)
    return 0


def _flush(sanitizer, batch, args, rng, dst, bar) -> None:
    if not batch:
        return
    for result in sanitizer.sanitize(batch, args.mechanism, args.epsilon, rng):
        dst.write(result.text)
    dst.flush()
    bar.update(sum(len(line.encode("utf-8")) for line in batch))
    batch.clear()


def run_evaluate(args) -> int:
    from mpcdp.text import evaluate

    try:
        sanitizer = sanitizer_from_args(args)
        grid = {"truncated-gumbel": args.gumbel_epsilons, "multivariate-laplace": args.laplace_epsilons}
        for eps in args.gumbel_epsilons:
            sanitizer.mechanism("truncated-gumbel", eps)
    except (ValueError, OSError, EpsilonTooSmallError) as exc:
        print(f"mpcdp text evaluate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def progress(name, eps, seed):
        print(f"{time.perf_counter() - started:7.1f} s  {name} epsilon={eps:g} seed={seed}",
              file=sys.stderr, flush=True)

    result = evaluate.run(sanitizer, grid, seeds=args.seeds, stat_words=args.stat_words,
                          stat_draws=args.stat_draws, progress=progress)
    result["runtime_seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    evaluate.write_json(result, args.json)
    evaluate.plot(result, args.png)
    print(evaluate.markdown_table(result))
    print(f"wrote {args.json} and {args.png}", file=sys.stderr)
    return 0
