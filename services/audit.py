"""Every node's audit log: refusals, aborts, releases and permission denials, one event per line.

    from services import audit
    audit.configure("alice", fmt="json", path="state/alice.audit.log")   # once, from the CLI
    audit.record("refused", session="3fa2...", reason="epsilon 5 exceeds ...", status="PERMISSION_DENIED")

An event is a kind and a few named fields: node names, session ids, statuses,
epsilon and delta, reasons meant for the analyst. Callers never pass a share,
a seed, a record value or a local file path or column list; :func:`record`
refuses fields named like those, so a slip fails loudly in tests rather than
writing secrets to disk. With ``fmt="json"`` each line is one JSON object
(``time``, ``node``, ``event`` and the fields), for log shippers; otherwise a
human-readable line. A log file is created owner-only (0600) and appended to.
The ordinary diagnostic log of the node (``logging``) goes to the same place.

What a stranger can cause without authenticating is written through a
:class:`Throttle`: a failed TLS handshake on a link (``handshake_failed``: the
peer's address, which listener or dialled link, the reason in words, never
certificate or key material) is written one by one up to 20 a minute per
link hub, and the rest as one event per listener counting them (``left_out``) when the
minute ends, so a flood of handshakes cannot fill the disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

EVENTS = (
    "started",
    "refused",
    "aborted",
    "released",
    "fetched",
    "denied",
    "invalid",
    "idle_closed",
    "error",
    "closed",
    "handshake_failed",
)
FORBIDDEN = frozenset(
    {
        "share",
        "shares",
        "seed",
        "seeds",
        "value",
        "values",
        "record",
        "records",
        "vector",
        "data",
        "path",
        "columns",
        "noise",
    }
)
FORMATS = ("text", "json")

_log = logging.getLogger("mpcdp.audit")
_node = ""
_handler: logging.StreamHandler | None = None  # what configure() installed
_level = logging.WARNING  # the root level before it


class _JsonLines(logging.Formatter):
    _second, _when = -1, ""  # the last second formatted, and its text up to the milliseconds

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "audit", None)
        # the fraction rounded as datetime rounds it (rounding the product put half-ms stamps 1 ms late)
        second, micros = divmod(int(record.created) * 1_000_000 + round(record.created % 1 * 1e6), 1_000_000)
        if second != self._second:
            self._second, self._when = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = {
            "time": f"{self._when}.{micros // 1000:03d}+00:00",  # ISO 8601, UTC
            "node": _node,
            "level": record.levelname.lower(),
        }
        if event is None:
            line.update(event="log", logger=record.name, message=record.getMessage())
        else:
            line.update(event)
        return json.dumps(line, sort_keys=False, default=str)


class _Text(logging.Formatter):
    _second, _when = -1, ""  # the last second formatted, and its text (a node writes many lines a second)

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._when = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        when = self._when
        event = getattr(record, "audit", None)
        if event is None:
            return f"{when} {_node} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={_quote(v)}" for k, v in event.items() if k != "event")
        return f"{when} {_node} AUDIT {event['event']} {fields}".rstrip()


_QUOTED = re.compile(r'[\s"=]')  # a field value with any of these (or empty) is written as a JSON string


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text) if (not text or _QUOTED.search(text)) else text


def _open_private(path: Path):
    """Append to ``path``, creating it owner-only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


class _StandardError(logging.StreamHandler):
    """Writes to the standard error of each moment, not the one at configuration (a caller may replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(node: str, fmt: str = "text", path=None, level: int = logging.INFO) -> None:
    """Send this process's audit events and its diagnostic log to ``path`` (default stderr) in ``fmt``.

    Called again, it replaces (and closes) what it installed before; other handlers of the root logger (a test
    runner's, say) are left alone. :func:`reset` undoes it."""
    global _node, _handler, _level
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = _StandardError() if path is None else logging.StreamHandler(_open_private(Path(path)))
    handler.setFormatter(_JsonLines() if fmt == "json" else _Text())
    root = logging.getLogger()
    reset()
    _node, _handler, _level = node, handler, root.level
    root.addHandler(handler)
    root.setLevel(level)


def reset() -> None:
    """Remove and close the handler :func:`configure` installed, and put back the root logger's level."""
    global _node, _handler
    if _handler is None:
        return
    root = logging.getLogger()
    root.removeHandler(_handler)
    _handler.close()
    if not isinstance(_handler, _StandardError):
        _handler.stream.close()  # the log file configure() opened (a StreamHandler leaves its stream open)
    root.setLevel(_level)
    _node, _handler = "", None


def record(event: str, **fields) -> None:
    """Write one audit event. ``fields`` hold names, ids, statuses, budgets and public reasons only."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; known: {', '.join(EVENTS)}")
    leaked = FORBIDDEN.intersection(fields)
    if leaked:
        raise ValueError(f"audit events never carry {', '.join(sorted(leaked))}")
    clean = {k: v for k, v in fields.items() if v is not None and v != ""}
    level = logging.WARNING if event in ("denied", "invalid", "error", "handshake_failed") else logging.INFO
    if _log.isEnabledFor(level):  # the record made here: Logger.log would walk the stack for its caller each time
        extra = {"audit": {"event": event, **clean}}
        made = _log.makeRecord(_log.name, level, __file__, 0, "%s %s", (event, clean), None, "record", extra)
        _log.handle(made)


class Throttle:
    """At most ``limit`` events per ``seconds`` through :meth:`record` (the rest counted, not written), so that a
    flood of what a stranger can cause (failed TLS handshakes) cannot fill the disk. The count left out is
    written as one event by :meth:`flush`: whoever throttles calls it once the window ends (or at close)."""

    def __init__(self, limit: int = 20, seconds: float = 60.0, clock=time.monotonic):
        self.limit, self.seconds, self._clock = limit, seconds, clock
        self._start = -math.inf
        self._count = 0
        self.left_out = 0
        # per event and listener (and port) left out, how many: each summarised under its own listener
        self._left: dict[tuple[str, tuple[tuple[str, Any], ...]], int] = {}

    def record(self, event: str, **fields) -> bool:
        """Write the event unless ``limit`` were written in this window (then counted); whether it was written.
        A new window first flushes the count of the last."""
        now = self._clock()
        if now >= self._start + self.seconds:
            self.flush()
            self._start, self._count = now, 0
        if self._count < self.limit:
            self._count += 1
            record(event, **fields)
            return True
        key = (event, tuple((k, v) for k, v in fields.items() if k in ("listener", "port")))
        self._left[key] = self._left.get(key, 0) + 1
        self.left_out += 1
        return False

    @property
    def window_left(self) -> float:
        """Seconds until the current window ends (when :meth:`flush` has a count to write)."""
        return max(self._start + self.seconds - self._clock(), 0.0)

    def flush(self) -> None:
        """Write how many events were left out since the last flush, one event per listener (nothing if none)."""
        left, self._left, self.left_out = self._left, {}, 0
        for (event, fields), n in left.items():
            why = f"{n} more like it in {self.seconds:g} s, not written one by one"
            record(event, **dict(fields), left_out=n, reason=why)
