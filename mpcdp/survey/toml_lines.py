"""Line numbers for the keys of a TOML document, so errors can point at the line.

``tomllib`` parses but forgets positions. This scan records, for every table
header and ``key =`` line, the path it opens: ``("survey", "min_respondents")``,
``("question", 2, "local")`` (the third ``[[question]]``). Keys inside inline
tables and multi-line arrays map to the line of the key that holds them.
"""

from __future__ import annotations

import re

_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\- ]+?)\s*\]\]")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\- ]+?)\s*\]")
KeyPath = tuple[str | int, ...]  # ("question", 1, "local", "epsilon")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")
_MULTILINE_STRING = re.compile(r'"""|\'\'\'')


def _split(dotted: str) -> list[str]:
    return [part.strip() for part in dotted.split(".")]


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path to the (1-based) line that first defines it."""
    lines: dict[KeyPath, int] = {}
    array_counts: dict[KeyPath, int] = {}
    table: KeyPath = ()
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if len(_MULTILINE_STRING.findall(line)) % 2 == 1:
                in_string = False
            continue
        if m := _ARRAY_HEADER.match(line):
            name = tuple(_split(m.group(1)))
            index = array_counts.get(name, -1) + 1
            array_counts[name] = index
            table = _resolve(name, array_counts) + (index,)
        elif m := _HEADER.match(line):
            table = _resolve(tuple(_split(m.group(1))), array_counts)
        elif m := _KEY.match(line):
            lines.setdefault(table + tuple(_split(m.group(1))), number)
            if len(_MULTILINE_STRING.findall(line)) % 2 == 1:
                in_string = True
            continue
        else:
            continue
        lines.setdefault(table, number)
    return lines


def _resolve(name: KeyPath, array_counts: dict[KeyPath, int]) -> KeyPath:
    """Insert the current element index after each array-of-tables prefix of ``name``."""
    out: list[str | int] = []
    for i, part in enumerate(name):
        out.append(part)
        prefix = name[: i + 1]
        if prefix in array_counts and i + 1 < len(name):
            out.append(array_counts[prefix])
    return tuple(out)


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path`` or of its nearest enclosing key or table."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
