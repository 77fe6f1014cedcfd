"""A done-callback for futures nobody may await: their failure stays theirs, no asyncio "never retrieved" warning."""

from __future__ import annotations

import asyncio


def retrieved(future: asyncio.Future) -> None:
    """Mark ``future``'s exception retrieved (whoever needs its outcome awaits it, or its waiters were failed with it):
    for a write nobody awaits, a background step, a writing task whose waiters carry its failure."""
    if not future.cancelled():
        future.exception()
