"""The committed generated code is exactly what protoc makes from protos/."""

from pathlib import Path

from services.wire import generate

COMMITTED = Path(generate.__file__).resolve().parent


def test_generated_code_matches_protos(tmp_path):
    written = generate.generate(tmp_path)
    assert written, "no .proto files found under protos/"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in written}
    committed = {p.relative_to(COMMITTED): p.read_bytes() for p in (COMMITTED / "mpcdp").rglob("*_pb2*.py*")}
    stale = sorted(str(k) for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k))
    assert not stale, f"regenerate with `python -m services.wire.generate` and commit: {stale}"
