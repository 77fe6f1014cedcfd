"""Corpus sanitisation: inputs, clear errors, atomic partitions and resuming, per-row costs, and Dask
(a LocalCluster of 2 workers, one of them killed mid-run)."""

import json
import os
import signal
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mpcdp.prg import Prg
from mpcdp.text import corpus, samplers
from mpcdp.text import neighbors as nb
from mpcdp.text.embeddings import Embedding
from mpcdp.text.sanitizer import Sanitizer
from services.cli import main

WORDS = ("the", "film", "was", "good", "bad", "movie", "great", "plot", "it", "is", "not", "a")
EPSILON = 1e4  # truncated Gumbel on this vocabulary needs more than ~30


@pytest.fixture(scope="module")
def sanitizer():
    emb = Embedding(WORDS, samplers.standard_normal(Prg.from_int(0, "emb"), (len(WORDS), 4)))
    return Sanitizer(emb, nb.build_neighbor_table(emb, 6))


@pytest.fixture(scope="module")
def glove_file(tmp_path_factory, sanitizer):
    path = tmp_path_factory.mktemp("emb") / "tiny.txt"
    emb = sanitizer.embedding
    path.write_text("".join(f"{w} {' '.join(map(repr, v.tolist()))}\n" for w, v in zip(emb.words, emb.vectors)))
    return path


def texts(n):
    return [f"The film was good, it isn't bad {i}" for i in range(n)]


def read(out):
    return pq.read_table(out).sort_by("row")


def test_formats_give_the_same_rows(tmp_path, sanitizer):
    docs = texts(7) + [None]
    table = pa.table({"id": list(range(8)), "text": docs})
    pq.write_table(table, tmp_path / "c.parquet")
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(docs)))
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, tmp_path / "c.csv")
    for name in ("c.parquet", "c.jsonl", "c.csv"):
        summary = corpus.run(
            sanitizer, tmp_path / name, "text", tmp_path / f"{name}.out", "truncated-gumbel", EPSILON, partition_rows=3
        )
        out = read(tmp_path / f"{name}.out")
        assert summary.rows == out.num_rows == 8 and summary.partitions == 3
        assert out.column("row").to_pylist() == list(range(8))
        words = out.column("words_perturbed").to_pylist()
        assert (
            words[:7] == [8] * 7
            and out.column("text")[7].as_py() == (None if name != "c.csv" else "")
            and words[7] == 0
        )
        bound = out.column("epsilon_text_bound").to_numpy()
        assert bound[0] == pytest.approx(EPSILON * 8 * sanitizer.diameter)
        assert all(t.endswith("<unk>") for t in out.column("text").to_pylist()[:7])  # the numbers are OOV


@pytest.mark.parametrize(
    "content, column, message",
    [
        ('{"text": "good film"}\n{"text": 5}\n', "text", "holds a cell that is not text"),
        ('{"text": 1}\n{"text": 5}\n', "text", "holds int64 values, not text"),
        ('{"body": "good film"}\n', "text", "no column 'text'; its columns are 'body'"),
        ('{"text": "good film"\n', "text", "cannot read"),
        ("", "text", "cannot read"),
    ],
)
def test_bad_jsonl_input_is_named(tmp_path, sanitizer, content, column, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(corpus.CorpusError, match=message):
        corpus.run(sanitizer, path, column, tmp_path / "out", "truncated-gumbel", EPSILON)


def test_bad_csv_parquet_and_paths(tmp_path, sanitizer):
    (tmp_path / "c.csv").write_text("body,n\nhello,1\n")
    with pytest.raises(corpus.CorpusError, match="no column 'text'; its columns are 'body', 'n'"):
        corpus.run(sanitizer, tmp_path / "c.csv", "text", tmp_path / "o1", "truncated-gumbel", EPSILON)
    (tmp_path / "e.csv").write_text("text\n")
    with pytest.raises(corpus.CorpusError, match="the corpus is empty"):
        corpus.run(sanitizer, tmp_path / "e.csv", "text", tmp_path / "o2", "truncated-gumbel", EPSILON)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(corpus.CorpusError, match="holds int64 values, not text"):
        corpus.run(sanitizer, tmp_path / "n.parquet", "text", tmp_path / "o3", "truncated-gumbel", EPSILON)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(corpus.CorpusError, match=r"cannot read .*bad\.parquet as PARQUET"):
        corpus.run(sanitizer, tmp_path / "bad.parquet", "text", tmp_path / "o4", "truncated-gumbel", EPSILON)
    with pytest.raises(corpus.CorpusError, match="does not exist"):
        corpus.run(sanitizer, tmp_path / "missing.csv", "text", tmp_path / "o5", "truncated-gumbel", EPSILON)
    with pytest.raises(corpus.CorpusError, match=r"expected a \.csv"):
        corpus.run(sanitizer, tmp_path / "c.txt", "text", tmp_path / "o6", "truncated-gumbel", EPSILON)


class Crash(Exception):
    """The process dying in the middle of a partition."""


def test_a_crashed_run_resumes_without_redoing_finished_partitions(tmp_path, sanitizer, monkeypatch):
    pq.write_table(pa.table({"text": texts(10)}), tmp_path / "c.parquet")
    out = tmp_path / "out.parquet"
    calls, crashed = [], []
    real = corpus.sanitize_partition

    def crash_on_third(*args):
        calls.append(args[2])
        if args[2] == 4 and not crashed:
            crashed.append(True)
            raise Crash()
        return real(*args)

    monkeypatch.setattr(corpus, "sanitize_partition", crash_on_third)
    with pytest.raises(Crash):
        corpus.run(sanitizer, tmp_path / "c.parquet", "text", out, "truncated-gumbel", EPSILON, partition_rows=2)
    done = sorted(p.name for p in out.glob("part-*.parquet"))
    assert done == ["part-00000.parquet", "part-00001.parquet"] and not list(out.glob(".*tmp"))
    before = {p: p.stat().st_mtime_ns for p in out.glob("part-*")}
    calls.clear()
    summary = corpus.run(sanitizer, tmp_path / "c.parquet", "text", out, "truncated-gumbel", EPSILON, partition_rows=2)
    assert calls == [4, 6, 8] and summary.partitions_skipped == 2
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert read(out).column("row").to_pylist() == list(range(10))
    with pytest.raises(corpus.CorpusError, match=r"holds another job .*epsilon"):
        corpus.run(sanitizer, tmp_path / "c.parquet", "text", out, "truncated-gumbel", 2 * EPSILON, partition_rows=2)


def test_every_partition_draws_its_own_stream(tmp_path, sanitizer):
    pq.write_table(pa.table({"text": ["good film bad plot great movie it was"] * 40}), tmp_path / "c.parquet")
    first = corpus.run(
        sanitizer, tmp_path / "c.parquet", "text", tmp_path / "a", "truncated-gumbel", 40.0, partition_rows=20
    )
    assert first.partitions == 2
    texts_a = read(tmp_path / "a").column("text").to_pylist()
    assert texts_a[:20] != texts_a[20:]  # same input in both partitions, different draws
    corpus.run(sanitizer, tmp_path / "c.parquet", "text", tmp_path / "b", "truncated-gumbel", 40.0, partition_rows=20)
    assert read(tmp_path / "b").column("text").to_pylist() != texts_a  # and a re-run draws afresh


def test_cli_corpus_errors_and_success(tmp_path, glove_file, capsys):
    (tmp_path / "c.csv").write_text("text\n" + "".join(f'"{t}"\n' for t in texts(5)))
    base = [
        "text",
        "sanitize",
        "--epsilon",
        str(EPSILON),
        "--embedding",
        str(glove_file),
        "--neighbors",
        "6",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(base + ["--input", str(tmp_path / "c.csv"), "--column", "body", "--output", str(tmp_path / "o")]) == 2
    assert "no column 'body'; its columns are 'text'" in capsys.readouterr().err
    assert main(base + ["--input", str(tmp_path / "c.csv")]) == 2
    assert "a corpus needs --output" in capsys.readouterr().err
    assert main(base + ["--engine", "dask"]) == 2
    assert "need a corpus input" in capsys.readouterr().err
    assert main(base + ["--input", str(tmp_path / "c.csv"), "--output", str(tmp_path / "o.parquet"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == 5 and "Delta0 =" in captured.err


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_dask_ships_the_sanitizer_once_per_worker(sanitizer, cluster):
    from distributed import Client

    def where(shared, _):
        from distributed import get_worker

        return get_worker().address, id(shared)

    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        [shared] = client.scatter([sanitizer], broadcast=True)
        seen = client.gather([client.submit(where, shared, i, pure=False) for i in range(12)])
    per_worker = {}
    for address, ident in seen:
        per_worker.setdefault(address, set()).add(ident)
    assert all(len(ids) == 1 for ids in per_worker.values())  # one copy per worker, reused by every task


class SlowSanitizer(Sanitizer):
    """Sleeps per call so that a worker can be killed mid-run; reports where it runs."""

    def sanitize_batch(self, texts, *args, **kw):
        time.sleep(0.15)
        return super().sanitize_batch(texts, *args, **kw)


def test_dask_two_workers_one_killed_mid_run(tmp_path, sanitizer, cluster):
    from distributed import Client

    slow = SlowSanitizer(sanitizer.embedding, sanitizer.table)
    n = 200
    pq.write_table(pa.table({"text": texts(n)}), tmp_path / "c.parquet")
    with Client(cluster) as client:
        pids = client.run(os.getpid)
    assert len(pids) == 2
    done = []

    def progress(k):
        done.append(k)
        if len(done) == 4:  # kill one worker while the others are still in flight
            os.kill(next(iter(pids.values())), signal.SIGKILL)

    summary = corpus.run(
        slow,
        tmp_path / "c.parquet",
        "text",
        tmp_path / "out.parquet",
        "truncated-gumbel",
        EPSILON,
        engine="dask",
        partition_rows=10,
        scheduler=cluster.scheduler_address,
        progress=progress,
    )
    out = read(tmp_path / "out.parquet")
    assert summary.rows == n and len(done) == 20
    assert out.column("row").to_pylist() == list(range(n))  # no row missing, none twice
    assert all(w == 8 for w in out.column("words_perturbed").to_pylist())
