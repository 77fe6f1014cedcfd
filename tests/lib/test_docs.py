"""The README and docs/ point only inside the repository, and every path they name exists.

Users clone only the project: a link to ``../shared/`` or to a file that was renamed is a dead end for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
# a path in backquotes: from a top-level folder to a file with an extension, or a folder with a final "/"
# (labels such as `mpcdp/v1/prg`, a PRG domain string, are neither)
PATH = re.compile(
    r"`((?:mpcdp|services|tests|protos|benchmarks|docs|examples|interop|web)/(?:[A-Za-z0-9_./-]*\.[a-z]+|[A-Za-z0-9_./-]*/))`"
)


def _links(doc: Path) -> list[str]:
    return LINK.findall(doc.read_text())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(doc):
    bad = []
    for target in _links(doc):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            if not target.startswith("#"):
                bad.append(f"{target}: links outside the repository")
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if ROOT not in path.parents and path != ROOT:
            bad.append(f"{target}: outside the repository")
        elif not path.exists():
            bad.append(f"{target}: no such file")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_backquotes_exists(doc):
    missing = sorted({p for p in PATH.findall(doc.read_text()) if "*" not in p and not (ROOT / p.rstrip("/")).exists()})
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_checker_catches_a_dead_link_and_an_outside_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[a](../../shared/DESIGN.md) [b](https://example.org) [c](#top)")
    assert _links(doc) == ["../../shared/DESIGN.md", "https://example.org", "#top"]
    assert PATH.findall("see `mpcdp/nothing_here.py` and `services/cli.py`") == [
        "mpcdp/nothing_here.py",
        "services/cli.py",
    ]
