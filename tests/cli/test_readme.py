"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace: dict = {}
    for block in BLOCKS[: index + 1]:  # later examples may build on earlier ones
        exec(compile(block, f"README.md example {index}", "exec"), namespace)
    if "print(run.release.value)" in BLOCKS[index]:
        assert "3171.5" in capsys.readouterr().out
