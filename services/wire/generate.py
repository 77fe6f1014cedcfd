"""Regenerate the Python code for every .proto under protos/ into services/wire/.

protoc emits ``from mpcdp.v1 import x_pb2``, which would resolve to the library
package; the imports are rewritten to ``services.wire.mpcdp.v1`` so generated
code lives in one place and never inside ``mpcdp/``.

Usage: python -m services.wire.generate [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OUT = Path(__file__).resolve().parent
_IMPORT = re.compile(r"^from mpcdp\.v1 import ", re.M)


def generate(out: Path = OUT) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    if not sources:
        return []
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(sources))
    written = []
    for pkg in {out / Path(s).parent for s in sources} | {out / "mpcdp"}:
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text("")
    for path in sorted((out / "mpcdp").rglob("*_pb2*.py*")):
        text = path.read_text()
        path.write_text(_IMPORT.sub("from services.wire.mpcdp.v1 import ", text))
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: services/wire)")
    args = ap.parse_args(argv)
    for p in generate(args.out):
        print(p.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
