"""Subcommands of ``mpcdp``: each module here defines ``register(subparsers)``.

The CLI discovers them, so adding a command is adding a module. This package
file holds what the commands share: argument types that refuse a bad value
with one clear line (argparse reports it as ``argument --flag: <message>``)
and the layout of an "examples:" epilog.
"""

from __future__ import annotations

import argparse
import math
import textwrap


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs (so example commands stay whole and copyable),
    wraps an unindented line too long for the terminal, and shows a docstring's ``code`` as `code`."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.replace("``", "`").splitlines():
            long_prose = len(line) > width and not line.startswith(" ")
            lines.extend(textwrap.wrap(line, width) if long_prose else [line])
        return "\n".join(indent + line for line in lines)


def examples(*lines: str) -> str:
    """An epilog listing real invocations, one per line (``#`` lines are comments)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(lo: int, hint: str = ""):
    """An integer type refusing values below ``lo``."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}{hint}, got {value}")
        return value
    return parse


def integer_in(lo: int, hi: int):
    """An integer type refusing values outside [lo, hi]."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {value}")
        return value
    return parse


def positive(text: str) -> float:
    """A finite number > 0 (durations, scales)."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def epsilon(text: str) -> float:
    """A DP epsilon: a finite number > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (smaller is more private, not 0), got {text}")
    return value


def delta(text: str) -> float:
    """A DP delta: a probability in [0, 1)."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0 for pure DP), got {text}")
    return value


def level(text: str) -> float:
    """A confidence level strictly between 0 and 1."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1 (e.g. 0.95), got {text}")
    return value


def address(text: str) -> str:
    """A host:port to listen on (port 0: any free port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"must be host:port (e.g. 0.0.0.0:50051), got {text!r}")
    return text
