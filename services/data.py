"""A party's private data: a CSV file, a SQLite table, or values handed over directly.

A query names a column (or, for vector statistics, comma-separated columns,
one per dimension). Numeric statistics read floats; a histogram reads labels.
Errors name the source and column, never a value.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np

from mpcdp.names import is_name
from mpcdp.protocol import QuerySpec
from mpcdp.protocol.statistics import Reads, linear


class DataError(ValueError):
    """Local data that cannot answer a query. The message is for the node's operator (it may name the
    source and its shape); ``public`` is what may be told to the coordinator and the analyst."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public or "its data cannot answer this query"


class Table:
    """Columns of records; ``columns[name]`` is a list of strings or numbers, or a 2-D array of vectors."""

    def __init__(self, columns: dict[str, list], source: str = "inline values"):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise DataError(f"{source}: columns have different lengths")
        self.columns = columns
        self.source = source

    @classmethod
    def load(cls, source, table: str | None = None) -> Table:
        """Read a CSV file (with a header row) or ``sqlite:PATH`` (with ``table``)."""
        text = str(source)
        if text.endswith(".npy"):
            return cls._npy(Path(text))
        if text.startswith("sqlite:"):
            return cls._sqlite(Path(text[len("sqlite:") :]), table)
        path = Path(text)
        try:
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
        except FileNotFoundError:
            raise DataError(f"data file {path} does not exist") from None
        if not rows:
            raise DataError(f"{path}: empty CSV (a header row is required)")
        header, body = rows[0], rows[1:]
        if any(len(r) != len(header) for r in body):
            raise DataError(f"{path}: every row needs {len(header)} fields")
        return cls({h: [r[i] for r in body] for i, h in enumerate(header)}, str(path))

    @classmethod
    def _npy(cls, path: Path) -> Table:
        """A numpy array file: one record per row (a vector when 2-D), as the column ``value``."""
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"data file {path} does not exist") from None
        if arr.ndim not in (1, 2) or arr.dtype.kind not in "iuf":
            raise DataError(f"{path}: expected a 1-D or 2-D numeric array")
        return cls({"value": arr}, str(path))

    @classmethod
    def _sqlite(cls, path: Path, table: str | None) -> Table:
        if not is_name(table):
            raise DataError(f"sqlite data {path}: set `table` to a plain table name (letters, digits, '.', '_', '-')")
        if not path.exists():
            raise DataError(f"sqlite database {path} does not exist")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return cls({n: [r[i] for r in rows] for i, n in enumerate(names)}, f"{path}:{table}")

    def records(self, spec: QuerySpec):
        """The records ``spec`` asks for: labels (histogram), counts' rows, or an (m, d) float list."""
        reads = linear(spec.statistic).reads
        names = [c.strip() for c in spec.column.split(",")]
        missing = [c for c in names if c not in self.columns]
        if missing:
            text = f"column {', '.join(map(repr, missing))} is not offered by this party"
            raise DataError(text, text)
        if reads is Reads.LABELS:
            if len(names) != 1:
                text = f"a {spec.statistic} reads exactly one column of labels"
                raise DataError(text, text)
            return [str(v) for v in self.columns[names[0]]]
        column = self.columns[names[0]]
        if len(names) == 1 and isinstance(column, np.ndarray) and column.ndim == 2:  # vector records
            if reads is Reads.NUMBERS and column.shape[1] != spec.dimension:
                raise DataError(
                    f"column {names[0]!r} holds vectors of length {column.shape[1]}, not {spec.dimension}",
                    f"column {names[0]!r} does not hold vectors of dimension {spec.dimension}",
                )
            return column.astype(np.float64, copy=False)
        if reads is Reads.NUMBERS and len(names) != spec.dimension:
            text = f"dimension {spec.dimension} needs {spec.dimension} comma-separated columns, got {len(names)}"
            raise DataError(text, text)
        try:
            cols = [[float(v) for v in self.columns[c]] for c in names]
        except (TypeError, ValueError):
            raise DataError(
                f"{self.source}: column {spec.column!r} holds non-numeric values",
                f"column {spec.column!r} is not numeric",
            ) from None
        return np.asarray(cols, dtype=np.float64).reshape(len(names), -1).T
