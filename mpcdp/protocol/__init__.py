"""The peer protocol (docs/design.md, "The federation query") without I/O: specs, messages, state machines.

spec = QuerySpec("mean", parties=("alice", "bob", "carol", "dave"), bounds=(0, 10_000))
run_in_memory(spec, {"alice": [3800], "bob": [2514], ...}).release.value
"""

from .coordinator import CoordinatorSession, Release
from .errors import ProtocolError, Status
from .memory import Run, run_in_memory
from .messages import Abort, PartialSum, Response, ShareMessage
from .party import PartyPolicy, PartySession
from .spec import QuerySpec, SpecError, new_session_id
from .statistics import STATISTICS, LinearStatistic, QueryCodec, Statistic, codec_for

__all__ = [
    "STATISTICS",
    "Abort",
    "CoordinatorSession",
    "LinearStatistic",
    "PartialSum",
    "PartyPolicy",
    "PartySession",
    "ProtocolError",
    "QueryCodec",
    "QuerySpec",
    "Release",
    "Response",
    "Run",
    "ShareMessage",
    "SpecError",
    "Statistic",
    "Status",
    "codec_for",
    "new_session_id",
    "run_in_memory",
]
