"""Sanitise a corpus (one text column of a CSV, JSON lines or Parquet file) partition by partition.

The column is read once, split into partitions of ``partition_rows`` rows,
and each partition is sanitised by :func:`sanitize_partition`, either in this
process (``engine="local"``) or on a dask.distributed cluster
(``engine="dask"``: a LocalCluster of this machine's cores by default, or any
running scheduler). The output is a Parquet dataset: a folder of
``part-NNNNN.parquet`` files, one per partition, each written atomically
(temporary file, then rename) once its partition is done, and a ``_job.json``
describing the job. Running the same job again skips the partitions already
written, so a crash costs only the partitions in flight; a folder holding a
different job is refused.

Every output row keeps its input row number (``row``) and carries its own
privacy cost (the columns of :class:`~mpcdp.text.sanitizer.PrivacyCost`). On
Dask the sanitiser (embedding and neighbour table) is sent to each worker once
and shared by all its tasks. Every partition draws from its own CSPRNG stream,
seeded afresh from the operating system by the task that runs it, so no
stream is ever reused: not across partitions, workers, retries after a lost
worker, nor re-runs. A partition recomputed after a lost worker never
releases twice: only the first finished result is written. Null cells stay
null (no text, no cost).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..prg import system_random
from .embeddings import StrPath
from .sanitizer import PrivacyCost, Sanitizer

INPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ENGINES = ("local", "dask")
DEFAULT_PARTITION_ROWS = 20_000
JOB_FILE = "_job.json"
COST_COLUMNS = tuple(f.name for f in fields(PrivacyCost) if f.name != "mechanism")


class CorpusError(ValueError):
    """Bad input or output for a corpus job, in words a user can act on."""


def input_format(path: StrPath) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise CorpusError(f"{path}: expected a .csv, .jsonl (or .ndjson) or .parquet file")
    return INPUT_FORMATS[suffix]


def read_texts(path: StrPath, column: str) -> list[str | None]:
    """The cells of ``column`` in ``path`` as Python strings (see :func:`read_column`)."""
    texts: list[str | None] = read_column(path, column).to_pylist()
    return texts


def read_column(path: StrPath, column: str) -> Any:
    """The cells of ``column`` in ``path`` as one Arrow array; every cell must be text (or null)."""
    import pyarrow as pa

    path = Path(path)
    fmt = input_format(path)
    if not path.is_file():
        raise CorpusError(f"input file {str(path)!r} does not exist")
    try:
        table = _read_table(path, fmt, column)
    except CorpusError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if fmt == "jsonl" and f"Column(/{column})" in detail:
            raise CorpusError(f"{path}: column {column!r} holds a cell that is not text ({detail})") from None
        raise CorpusError(f"cannot read {path} as {fmt.upper()}: {detail}") from None
    if table.num_rows == 0:
        raise CorpusError(f"{path}: the corpus is empty (no rows)")
    cells = table.column(0)
    if not (pa.types.is_string(cells.type) or pa.types.is_large_string(cells.type) or pa.types.is_null(cells.type)):
        raise CorpusError(f"{path}: column {column!r} holds {cells.type} values, not text")
    return cells.combine_chunks()


def _read_table(path: Path, fmt: str, column: str) -> Any:
    import pyarrow as pa

    if fmt == "csv":
        import pyarrow.csv as pcsv

        try:
            # CSV cells are text by nature: a cell reading 12 is the text "12".
            return pcsv.read_csv(
                path, convert_options=pcsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()})
            )
        except KeyError:  # pyarrow's ArrowKeyError for a missing column
            raise CorpusError(_missing(path, column, pcsv.open_csv(path).schema.names)) from None
    if fmt == "jsonl":
        import pyarrow.json as pjson

        table = pjson.read_json(path)
    else:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if column not in names:
            raise CorpusError(_missing(path, column, names))
        table = pq.read_table(path, columns=[column])
    if column not in table.column_names:
        raise CorpusError(_missing(path, column, table.column_names))
    return table.select([column])


def _missing(path: StrPath, column: str, names: Iterable[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:20]) or "none"
    return f"{path}: no column {column!r}; its columns are {shown} (choose one with --column)"


@dataclass(frozen=True)
class Job:
    """What is sanitised how: the identity of a job, checked before resuming it."""

    input: str
    input_sha256: str
    column: str
    rows: int
    partition_rows: int
    mechanism: str
    epsilon: float
    embedding_fingerprint: str
    oov: str
    symbols: str
    placeholder: str
    approximate_nn: bool

    @property
    def partitions(self) -> int:
        return -(-self.rows // self.partition_rows)


def file_digest(path: StrPath) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def part_path(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}.parquet"


def sanitize_partition(sanitizer: Sanitizer, cells: Any, first_row: int, mechanism: str, epsilon: float) -> Any:
    """One partition (an Arrow array of texts) as an Arrow table: row number, sanitised text and its
    privacy cost per row.

    The random stream is new for every call (a fresh seed from the OS), whatever
    runs it and however often.
    """
    import pyarrow as pa

    texts = cells.to_pylist()
    rng = system_random(f"text-corpus/partition-from-row-{first_row}")
    nulls = [i for i, t in enumerate(texts) if t is None]
    present = texts if not nulls else [t for t in texts if t is not None]
    batch = sanitizer.sanitize_batch(present, mechanism, epsilon, rng)
    columns = {"row": pa.array(np.arange(first_row, first_row + len(texts), dtype=np.int64))}
    where = np.setdiff1d(np.arange(len(texts)), nulls) if nulls else None
    out_text: list[str | None] = list(batch.texts)
    if where is not None:
        out_text = [None] * len(texts)
        for i, text in zip(where.tolist(), batch.texts, strict=True):
            out_text[i] = text
    columns["text"] = pa.array(out_text, type=pa.string())
    for name in COST_COLUMNS:
        values = np.full(len(present), batch.epsilon_per_word) if name == "epsilon_per_word" else getattr(batch, name)
        if where is not None:  # a null cell costs nothing
            full = np.zeros(len(texts), dtype=values.dtype)
            full[where] = values
            values = full
        columns[name] = pa.array(values)
    return pa.table(columns)


def _compact(cells: Any) -> Any:
    import pyarrow as pa

    return pa.concat_arrays([cells])


def _write_atomically(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_output(out: StrPath, job: Job) -> list[int]:
    """Create or check the output folder; the partitions still to do."""
    out = Path(out)
    manifest = out / JOB_FILE
    if out.exists():
        if not out.is_dir():
            raise CorpusError(f"--output {str(out)!r} exists and is not a folder")
        if manifest.exists():
            previous = json.loads(manifest.read_text())
            if previous != asdict(job):
                differs = sorted(k for k in asdict(job) if previous.get(k) != asdict(job)[k])
                raise CorpusError(
                    f"--output {str(out)!r} holds another job (its {', '.join(differs)} differ); "
                    "choose another folder, or delete it to start over"
                )
        elif any(out.iterdir()):
            raise CorpusError(f"--output {str(out)!r} is a folder that holds other files; choose a new one")
    else:
        if not out.parent.is_dir():
            raise CorpusError(f"output folder {str(out.parent)!r} does not exist")
        out.mkdir()
    if not manifest.exists():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".job.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(job), fh, indent=2)
        os.replace(tmp, manifest)
    return [i for i in range(job.partitions) if not part_path(out, i).exists()]


@dataclass(frozen=True)
class Summary:
    rows: int
    partitions: int
    partitions_skipped: int
    words_perturbed: int
    max_text_epsilon: float
    output: str


def run(
    sanitizer: Sanitizer,
    input_path: StrPath,
    column: str,
    output: StrPath,
    mechanism: str,
    epsilon: float,
    engine: str = "local",
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Summary:
    """Sanitise ``column`` of ``input_path`` into the Parquet dataset folder ``output``.

    ``progress(n)`` is called as partitions finish, ``on_total(n)`` once with the
    number to do. Returns totals over the whole output (resumed partitions included).
    """
    if engine not in ENGINES:
        raise CorpusError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if partition_rows < 1:
        raise CorpusError(f"partition rows must be at least 1, got {partition_rows}")
    sanitizer.mechanism(mechanism, epsilon)  # a bad epsilon fails before any reading
    cells = read_column(input_path, column)
    job = Job(
        input=str(Path(input_path).resolve()),
        input_sha256=file_digest(input_path),
        column=column,
        rows=len(cells),
        partition_rows=partition_rows,
        mechanism=mechanism,
        epsilon=float(epsilon),
        embedding_fingerprint=sanitizer.embedding.fingerprint(),
        oov=sanitizer.oov,
        symbols=sanitizer.symbols,
        placeholder=sanitizer.placeholder,
        approximate_nn=sanitizer.approximate_nn,
    )
    out = Path(output)
    todo = prepare_output(out, job)
    if on_total:
        on_total(len(todo))
    slices = {i: (cells.slice(i * partition_rows, partition_rows), i * partition_rows) for i in todo}
    if engine == "local":
        for i in todo:
            part, first = slices[i]
            _write_atomically(sanitize_partition(sanitizer, part, first, mechanism, epsilon), part_path(out, i))
            if progress:
                progress(1)
    else:
        _run_dask(sanitizer, slices, out, mechanism, epsilon, scheduler, workers, progress)
    return summarise(out, job, skipped=job.partitions - len(todo))


def _run_dask(
    sanitizer: Sanitizer,
    slices: dict[int, tuple[Any, int]],
    out: Path,
    mechanism: str,
    epsilon: float,
    scheduler: str | None,
    workers: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    dask: Any = importlib.import_module("distributed")  # untyped: used through Any

    from .dask_workers import ReuseFreedMemory

    if scheduler:
        cluster, client = None, dask.Client(scheduler, timeout="30s")
    else:
        cluster = dask.LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = dask.Client(cluster)
    try:
        client.register_plugin(ReuseFreedMemory())
        [shared] = client.scatter([sanitizer], broadcast=True)  # once per worker, shared by its tasks
        futures = {
            client.submit(
                sanitize_partition,
                shared,
                _compact(part),  # the partition's cells copied out: a pickled slice would carry the whole column
                first,
                mechanism,
                epsilon,
                pure=False,
                key=f"sanitize-partition-{i}-{os.urandom(4).hex()}",
            ): i
            for i, (part, first) in slices.items()
        }
        for future in dask.as_completed(futures):
            i = futures[future]
            _write_atomically(future.result(), part_path(out, i))
            future.release()
            if progress:
                progress(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def summarise(out: StrPath, job: Job, skipped: int = 0) -> Summary:
    """Totals over the partitions written, checking that each row appears once."""
    import pyarrow.parquet as pq

    out = Path(out)
    rows, words, worst = 0, 0, 0.0
    for i in range(job.partitions):
        table = pq.read_table(part_path(out, i), columns=["row", "words_perturbed", "epsilon_text_bound"])
        first = i * job.partition_rows
        expected = np.arange(first, min(first + job.partition_rows, job.rows))
        if not np.array_equal(table.column("row").to_numpy(), expected):
            raise CorpusError(f"{part_path(out, i)} does not hold rows {first}..{expected[-1]}: delete it and re-run")
        rows += table.num_rows
        words += int(np.sum(table.column("words_perturbed").to_numpy()))
        worst = max(worst, float(np.max(table.column("epsilon_text_bound").to_numpy(), initial=0.0)))
    return Summary(
        rows=rows,
        partitions=job.partitions,
        partitions_skipped=skipped,
        words_perturbed=words,
        max_text_epsilon=worst,
        output=str(out),
    )
