"""What a node keeps across restarts: its privacy ledger (with its budget reservations), the session ids it has seen.

A node with a ``ledger`` path keeps a :class:`mpcdp.dp.ledger.PrivacyLedger`
there for its dataset, with the ``epsilon_budget`` (and ``delta_budget``) of
its policy; without one it keeps no ledger and, having nothing to spend,
answers only what its policy allows (exact releases where permitted).
Its other state lives in its state directory (:attr:`Node.state_dir`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from mpcdp.dp.ledger import (
    BudgetExceeded,
    Charge,
    ChargeNow,
    ChargeReserved,
    Free,
    Operation,
    Outcome,
    PrivacyLedger,
    Reserve,
)
from mpcdp.dp.loss import PrivacyLoss
from services.federation import Federation, FederationError
from services.futures import retrieved

SESSION_KEEP_AFTER_DEADLINE = 3600.0  # seconds of clock skew a replayed, expired session id is still refused for
SETTLE_SECONDS = 35.0  # seconds a closing node waits for its ledger's queued changes (a commit waits <= 30 s)
RETRY_PAUSE = 0.05  # seconds between a failed session log write and the write of the ids appended during it


def ledger_for(federation: Federation, name: str, dataset: str):
    node = federation.node(name)
    if node.ledger is None:
        return None
    policy = federation.policy_for(name)
    if policy.epsilon_budget is None:
        raise FederationError(f"node {name!r} keeps a ledger: set policy epsilon_budget")
    node.ledger.parent.mkdir(parents=True, exist_ok=True)
    return PrivacyLedger(node.ledger, dataset, policy.epsilon_budget, policy.delta_budget)


class GroupCommit:
    """A node's privacy-ledger changes by group commit, off its event loop.

    Each request (:meth:`reserve`, :meth:`charge_reserved`, :meth:`charge_now`, :meth:`free`) is queued and answered
    by an awaitable; what is queued while a group commits goes in the next group. A group is one call of
    :meth:`mpcdp.dp.ledger.PrivacyLedger.apply` in a worker thread, one group at a time per ledger and event loop
    (:func:`group_commit`): one SQLite transaction and one sync for all of its requests, each with its own outcome, in
    the order they were made (a refused reservation is refused exactly as it would have been alone, after the
    requests before it). A request's awaitable is done once its group has committed (a charge is acknowledged only
    once it is on disk). A group whose transaction fails fails all of its requests and keeps none of them; a group
    whose wait is cancelled (its loop shutting down) fails its requests too, although its thread may still commit
    them: conservative, a reservation then holds budget until its deadline and a charge counts, never an
    overspend. A request queued once its caller is gone (a cancelled wait) is still applied. The budget checks are
    the ledger's own, inside that transaction, so other processes on the same file are serialised as before.
    """

    def __init__(self, ledger: PrivacyLedger):
        self._ledger = weakref.ref(ledger)  # the node keeps the ledger; this object (cached per ledger) must not
        self._queued: list[tuple[Operation, asyncio.Future]] = []
        self._committing: asyncio.Future | None = None
        _EVERY.add(self)

    async def reserve(self, session: bytes, loss: PrivacyLoss, until: float) -> None:
        """:meth:`PrivacyLedger.reserve`, awaited: raises its :class:`BudgetExceeded` (or any failure)."""
        await self.queue(Reserve(session, loss, until))

    async def charge_reserved(self, session: bytes) -> Charge:
        """:meth:`PrivacyLedger.charge_reserved`, awaited: done once the charge is on disk."""
        charge = await self.queue(ChargeReserved(session))
        assert isinstance(charge, Charge)
        return charge

    async def charge_now(self, loss: PrivacyLoss, label: str) -> Charge:
        """:meth:`PrivacyLedger.charge` (no reservation), awaited: done once the charge is on disk."""
        charge = await self.queue(ChargeNow(loss, label))
        assert isinstance(charge, Charge)
        return charge

    def free(self, session: bytes) -> asyncio.Future:
        """:meth:`PrivacyLedger.free`, queued (usable where a session ends, cancelled or not; awaiting the future it
        returns is optional): a free that fails leaves the reservation to lapse at its deadline, holding budget until
        then, never spending it."""
        waiter = self.queue(Free(session))
        waiter.add_done_callback(retrieved)
        return waiter

    async def freed(self, session: bytes) -> None:
        """:meth:`free`, awaited until applied (or failed: the reservation then lapses at its deadline), so that
        whoever hears next that the session ended finds its budget free."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.free(session))

    def queue(self, operation: Operation) -> asyncio.Future:
        """``operation``'s outcome, once its group has committed (its exception, if it was refused or the group
        failed)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._queued.append((operation, waiter))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self._commit())
            self._committing.add_done_callback(retrieved)
        return waiter

    async def drain(self, timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until every request queued so far is applied (a node's close: the frees
        its sessions queued as they ended must run before its loop stops, or their reservations would hold budget
        until their deadlines); whether they were."""
        task = self._committing
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    def _forget(self) -> None:
        """In a forked child: the parent's requests are the parent's to apply (applied here too, each would count
        twice), and its commit task and futures belong to the parent's loop."""
        self._queued = []
        self._committing = None

    async def _commit(self) -> None:
        try:
            await self._groups()
        finally:
            self._committing = None  # a loop's GroupCommit keeps no task of it once idle (the loop is its weak key)

    async def _groups(self) -> None:
        while self._queued:
            group, self._queued = self._queued, []
            ledger = self._ledger()
            try:
                if ledger is None:
                    raise RuntimeError("the ledger was closed")
                outcomes: list[Outcome] = await asyncio.to_thread(ledger.apply, [op for op, _ in group])
            except BaseException as exc:  # every request fails (a cancelled wait's group may still commit: only
                # fail-closed, a charge the caller does not count on)
                error = exc if isinstance(exc, Exception) else OSError("the commit was interrupted")
                for _, waiter in group:
                    if not waiter.done() and not waiter.get_loop().is_closed():
                        waiter.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, waiter), outcome in zip(group, outcomes, strict=True):
                if waiter.done() or waiter.get_loop().is_closed():  # its caller is gone (a loop since closed)
                    continue
                if isinstance(outcome, Exception):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)


_PerLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, "GroupCommit"]
_GROUPS: weakref.WeakKeyDictionary[PrivacyLedger, _PerLoop] = weakref.WeakKeyDictionary()
_EVERY: weakref.WeakSet[GroupCommit] = weakref.WeakSet()


def group_commit(ledger: PrivacyLedger) -> GroupCommit:
    """The one :class:`GroupCommit` of ``ledger`` on the running event loop (its groups must not interleave; each
    request's future is that loop's). Another loop gets one of its own, so requests a closed loop left queued are
    never applied by a later one, and a forked child starts with none of its parent's (:meth:`GroupCommit._forget`).
    """
    loop = asyncio.get_running_loop()
    per_loop = _GROUPS.get(ledger)
    if per_loop is None:
        per_loop = _GROUPS[ledger] = weakref.WeakKeyDictionary()
    group = per_loop.get(loop)
    if group is None:
        group = per_loop[loop] = GroupCommit(ledger)
    return group


async def settled(ledger: PrivacyLedger | None, timeout: float = SETTLE_SECONDS) -> bool:
    """At a node's close, once its sessions have ended: wait, at most ``timeout`` seconds, for the ledger changes
    they queued on this loop (the frees of what they held: left queued as the loop stops, they never ran, and a
    restarted node counted the reservations until their deadlines); whether every one was applied."""
    per_loop = _GROUPS.get(ledger) if ledger is not None else None
    group = per_loop.get(asyncio.get_running_loop()) if per_loop is not None else None
    return group is None or await group.drain(timeout)


def _forget_groups_in_child() -> None:
    for group in list(_EVERY):
        group._forget()
    _GROUPS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_groups_in_child)


def public_refusal(exc: Exception) -> str:
    """A ledger's refusal in words for the analyst: amounts, never the dataset (a local file path)."""
    if isinstance(exc, BudgetExceeded):
        return str(exc)
    return "the privacy ledger refused the charge"


class SessionLog:
    """The session ids a node has used, kept durably so that none is accepted twice, even after a restart.

    One line per id (``hex deadline``) appended and fsynced to ``path`` (0600)
    before the session goes on (concurrent sessions share an fsync:
    :meth:`add_durably`). An id is remembered until an hour past its
    deadline: a replayed spec with a passed deadline is refused anyway. The
    file is compacted to the live ids when the node starts. A write that
    failed part-way (disk full) may leave a torn line: the next write starts
    on a fresh line, so the torn line never swallows the id after it, and
    the failed group's lines are written again with the next group. A failed
    write fails only the ids of its own group, never those appended during it
    (:meth:`_flush`).
    :meth:`close` waits for a write in progress in another thread, and writes a
    group whose write has not begun yet (its thread not started).
    """

    def __init__(self, path, clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self.ids: dict[bytes, float] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                sid, _, deadline = line.partition(" ")
                try:
                    self.ids[bytes.fromhex(sid)] = float(deadline)
                except ValueError:
                    continue  # a line torn by a crash or a failed write (its id was never acknowledged)
        self._forget_expired()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{sid.hex()} {deadline!r}\n" for sid, deadline in self.ids.items())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lines: list[str] = []  # appended, not yet written to the file
        self._written = 0  # lines appended, numbering the waiters of durable
        self._taken = 0  # lines taken by _flush so far (its group's waiters are its to settle)
        self._flushing: asyncio.Future | None = None
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()  # (line number, its caller's future), in order
        self._torn = False  # a write failed part-way: the file may not end in a newline
        self._group: bytes | None = None  # taken by _flush, its write not yet begun (close writes it if it comes first)
        self._lock = threading.Lock()  # one write at a time, and no close while one runs (in another thread)

    def _forget_expired(self) -> None:
        cutoff = self._clock() - SESSION_KEEP_AFTER_DEADLINE
        self.ids = {sid: d for sid, d in self.ids.items() if d >= cutoff}

    def __contains__(self, sid: bytes) -> bool:
        return sid in self.ids

    def _append(self, sid: bytes, deadline: float) -> None:
        """Remember ``sid``; its line waits in ``_lines`` for whoever syncs next."""
        self.ids[sid] = deadline if math.isfinite(deadline) else math.inf
        self._lines.append(f"{sid.hex()} {self.ids[sid]!r}\n")
        if len(self.ids) % 4096 == 0:
            self._forget_expired()

    def _take(self) -> bytes:
        data = "".join(self._lines).encode()
        self._lines.clear()
        return data

    def _write(self, data: bytes) -> None:
        """Append ``data`` and fsync (one write and one fsync for every line of a group), on a fresh line if
        a write failed before; under ``_lock``."""
        if self._fd < 0:
            raise OSError(errno.EBADF, "the session log is closed")
        view = memoryview(b"\n" + data if self._torn else data)
        self._torn = True
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self._torn = False

    def _write_group(self) -> None:
        """In a worker thread: write the group :meth:`_flush` took, unless :meth:`close` has written it meanwhile
        (the thread may start late, the workers busy: the group is close's to write then, before the file closes)."""
        with self._lock:
            data, self._group = self._group, None
            if data is not None:
                self._write(data)

    async def add_durably(self, sid: bytes, deadline: float) -> None:
        """:meth:`add` for an event loop, by group commit: the id is remembered at once (so a
        concurrent replay is refused), and the call returns once a write and fsync begun after it was
        appended have finished. Concurrent sessions share one write and fsync, done off the loop (the
        loop never waits on the file, not even on a write queued behind an fsync)."""
        await self.durable(sid, deadline)

    def durable(self, sid: bytes, deadline: float) -> asyncio.Future:
        """:meth:`add_durably` as a future (no task per id: one writing task per group): remembered at once,
        done once on disk (failed, as the write, if the write of its group fails)."""
        self._append(sid, deadline)
        self._written += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((self._written, waiter))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
            self._flushing.add_done_callback(retrieved)
        return waiter

    async def _flush(self) -> None:
        """Write the appended lines in groups (what is appended during a write goes in the next), each waiter done
        once its line is on disk. A failed write fails exactly its own group's waiters (their sessions stop; their
        ids stay remembered, so a replay is still refused, and their lines are written again with the next group);
        the ids appended during it get a write of their own after ``RETRY_PAUSE``. With nobody waiting, no write is
        tried again until a new id comes: a full disk is never written to in a loop."""
        while self._lines:
            upto = self._written
            data = self._group = self._take()
            self._taken = upto
            try:
                await asyncio.to_thread(self._write_group)
            except BaseException as exc:
                self._lines.insert(0, data.decode())  # written again with the next group
                self._settle(upto, exc)
                if not isinstance(exc, Exception):  # cancelled (the loop is closing): the others hear it too
                    self._settle(self._written, exc)
                    raise
                if not any(not waiter.done() for _, waiter in self._waiting):
                    return
                await asyncio.sleep(RETRY_PAUSE)
                continue
            self._settle(upto)

    def _settle(self, upto: int, error: BaseException | None = None, after: int = 0) -> None:
        """Settle the waiters of lines ``after`` + 1 to ``upto`` (those before ``after`` are left waiting)."""
        left: list[tuple[int, asyncio.Future]] = []
        while self._waiting and self._waiting[0][0] <= upto:
            line, waiter = self._waiting.popleft()
            if line <= after:
                left.append((line, waiter))
                continue
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error if isinstance(error, Exception) else OSError("the write was interrupted"))
        self._waiting.extendleft(reversed(left))

    def close(self) -> None:
        """Write what is remembered and not yet on disk (as a clean stop should) and close the file: the lines not
        yet taken, and a group its task took whose write has not begun in its thread (that thread then writes
        nothing); a write in progress in another thread is waited for. The waiters of the lines written here are
        settled here (those of a write in progress, by its own task)."""
        with self._lock:
            group, self._group = self._group, None
            after = self._taken if group is None else 0  # every waiter before a taken group's was settled already
            upto, data = self._written, (group or b"") + self._take()
            try:
                if data:
                    try:
                        self._write(data)
                    except BaseException as exc:
                        self._settle(upto, exc, after)
                        raise
                    self._settle(upto, after=after)
            finally:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
