"""One rule for every name a user or a peer chooses: parties, nodes, surveys, questions, datasets, tables.

A name is 1 to 63 characters of ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
a digit: safe in a file name, a URL path segment, a PRG purpose string, a TLS certificate's common name
and a quoted SQL identifier, and never an option (``-x``) or a hidden file (``.x``).
"""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "InvalidName", "check_name", "is_name"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RULE = "1-63 characters among letters, digits, '.', '_' and '-', starting with a letter or digit"


class InvalidName(ValueError):
    """A name that breaks the rule; the message says what kind of name and the rule."""


def is_name(value: object) -> bool:
    """Whether ``value`` is a string that follows the rule."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def check_name(value: object, what: str = "name") -> str:
    """``value`` if it follows the rule; :class:`InvalidName` naming ``what`` otherwise."""
    if not is_name(value):
        raise InvalidName(f"{what} {value!r} is not a valid name: use {RULE}")
    assert isinstance(value, str)
    return value
