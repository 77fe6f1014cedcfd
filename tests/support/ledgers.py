"""Forked processes hammering one ledger file: run them, collect what each reports."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable


def run_forked(target: Callable[..., None], args: list[tuple], timeout: float = 120.0) -> list:
    """Run ``target(*a, done, results)`` in one forked process per ``a`` of ``args`` (``done``: a barrier they all
    pass before reporting; ``results``: the queue each puts its report on); the reports, once all exited cleanly."""
    ctx = mp.get_context("fork")
    results, done = ctx.Queue(), ctx.Barrier(len(args))
    procs = [ctx.Process(target=target, args=(*a, done, results)) for a in args]
    for p in procs:
        p.start()
    reports = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    return reports
