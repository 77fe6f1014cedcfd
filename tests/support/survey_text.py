"""A small survey file for tests: two aggregators on loopback, the questions given."""

from __future__ import annotations


def survey_text(questions: str, survey_id: str = "poll", head: str = "") -> str:
    """The text of a survey ``survey_id`` with aggregators ``a`` and ``b``; ``head`` adds lines to ``[survey]``,
    ``questions`` is the ``[[question]]`` tables."""
    return f"""
[survey]
id = "{survey_id}"
{head}
[[aggregator]]
name = "a"
address = "127.0.0.1:1"
[[aggregator]]
name = "b"
address = "127.0.0.1:2"
{questions}"""
