"""Between the library's protocol objects and the mpcdp.v1 protobufs, adding no meaning.

Vectors travel as packed little-endian uint64 (:data:`RING_BYTES` per element);
:class:`RingPieces` hands the pieces of one arriving over a link on as ring
elements, with no assembly buffer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import grpc
import numpy as np

import mpcdp.mpc.queries  # noqa: F401 -- registers the comparison statistics in STATISTICS
from mpcdp.dp.mechanisms import CENTRAL_MECHANISMS
from mpcdp.protocol import ProtocolError, QuerySpec, SpecError, Status
from mpcdp.protocol.spec import Sharing
from mpcdp.protocol.statistics import STATISTICS
from mpcdp.registry import UnknownName
from services.wire.mpcdp.v1 import federation_pb2 as pb

RING_BYTES = 8  # one ring element (packed little-endian uint64), or one float64 value of a release

GRPC_CODES = {s: getattr(grpc.StatusCode, s.value) for s in Status}
_SHARING: dict[str, pb.Sharing] = {
    Sharing.KEYED: pb.SHARING_KEYED,
    Sharing.SEEDED: pb.SHARING_SEEDED,
    Sharing.FULL: pb.SHARING_FULL,
}


def _refusal(field: str, value: int) -> SpecError:
    """An enum value no one can use: UNSPECIFIED (0, what an unset field reads as) or one this node does not know."""
    if value == 0:
        return SpecError(field, "must be set (its zero value, UNSPECIFIED, is no choice)")
    return SpecError(field, f"unknown wire value {value}")


def _by_wire(registry, value: int, field: str):
    try:
        return registry.by_wire(value)
    except UnknownName:
        raise _refusal(field, value) from None


def statistic_wire(name: str) -> pb.Statistic:
    """The Statistic enum value of the statistic called ``name`` (SpecError listing the choices)."""
    try:
        return cast("pb.Statistic", STATISTICS.wire(name))
    except UnknownName as exc:
        raise SpecError("statistic", str(exc)) from None


def statistic_name(value: int) -> str:
    """The name of the statistic with Statistic enum value ``value`` (SpecError if there is none)."""
    return str(_by_wire(STATISTICS, value, "statistic").name)


def mechanism_wire(name: str) -> pb.Mechanism:
    try:
        return cast("pb.Mechanism", CENTRAL_MECHANISMS.wire(name))
    except UnknownName as exc:
        raise SpecError("mechanism", str(exc)) from None


def sharing_wire(name: str) -> pb.Sharing:
    try:
        return _SHARING[name]
    except KeyError:
        raise SpecError("sharing", f"must be one of {', '.join(_SHARING)}, got {name!r}") from None


def sharing_name(value: int) -> Sharing:
    for name, wire in _SHARING.items():
        if wire == value:
            return Sharing(name)
    raise _refusal("sharing", value)


def status_wire(status: Status | None) -> pb.RefusalStatus:
    """The RefusalStatus of a refusal's class (UNSPECIFIED for none)."""
    if status is None:
        return pb.REFUSAL_STATUS_UNSPECIFIED
    return cast("pb.RefusalStatus", pb.RefusalStatus.Value(f"REFUSAL_STATUS_{status.value}"))


def status_name(value: int) -> Status | None:
    """The refusal class of a RefusalStatus value (None for UNSPECIFIED or an unknown value)."""
    name = pb.RefusalStatus.Name(value) if value in pb.RefusalStatus.values() else ""
    return Status(name.removeprefix("REFUSAL_STATUS_")) if value else None


def spec_to_proto(spec: QuerySpec) -> pb.QuerySpec:
    lo, hi = (float(b) for b in spec.bounds) if len(spec.bounds) == 2 else (0.0, 0.0)
    return pb.QuerySpec(
        statistic=statistic_wire(spec.statistic),
        parties=spec.parties,
        session_id=spec.session_id,
        column=spec.column,
        dimension=spec.dimension,
        lower=lo,
        upper=hi,
        categories=spec.categories,
        frac_bits=spec.frac_bits,
        max_records=spec.max_records,
        epsilon=spec.epsilon,  # None: the field stays absent (an exact release)
        delta=spec.delta,
        mechanism=mechanism_wire(spec.mechanism),
        colluders=spec.colluders,
        sharing=sharing_wire(spec.sharing),
        deadline=spec.deadline,
    )


def spec_fields(msg: pb.QuerySpec) -> dict:
    """QuerySpec keyword arguments from the wire (validation happens in QuerySpec itself).

    The statistic and the sharing mode must be set, and the mechanism too when an epsilon is (an absent
    epsilon is an exact release): their UNSPECIFIED value is refused (SpecError naming the field).
    """
    epsilon = msg.epsilon if msg.HasField("epsilon") else None
    fields = dict(
        statistic=statistic_name(msg.statistic),
        parties=tuple(msg.parties),
        session_id=msg.session_id,
        column=msg.column or "value",
        dimension=msg.dimension or 1,
        bounds=(msg.lower, msg.upper),
        categories=tuple(msg.categories),
        frac_bits=msg.frac_bits,
        max_records=msg.max_records or 1,
        epsilon=epsilon,
        delta=msg.delta,
        colluders=msg.colluders or 1,
        sharing=sharing_name(msg.sharing),
        deadline=msg.deadline or math.inf,
    )
    if epsilon is not None or msg.mechanism:
        fields["mechanism"] = _by_wire(CENTRAL_MECHANISMS, msg.mechanism, "mechanism").name
    return fields


def build_spec(fields: dict) -> QuerySpec:
    """``QuerySpec(**fields)``, any refusal of the library as a SpecError (INVALID_ARGUMENT on the wire)."""
    try:
        return QuerySpec(**fields)
    except SpecError:
        raise
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise SpecError("spec", f"cannot be represented: {exc}") from None


def spec_from_proto(msg: pb.QuerySpec, require_deadline: bool = False) -> QuerySpec:
    """The spec on the wire; ``require_deadline``: an unset (0) deadline is refused, not read as none."""
    if require_deadline and not msg.deadline > 0:
        raise SpecError(
            "deadline", "must be set to an absolute UNIX time; a session without one could be held open forever"
        )
    return build_spec(spec_fields(msg))


class RingPieces:
    """A link sink (:meth:`services.link.Hub.expect`) that hands a vector's bytes on as ring elements:
    ``fold(offset, elements)`` gets each piece as a read-only uint64 array over the frame's own bytes (no
    assembly buffer, no copy), in order; an element split across two pieces is carried over. A ProtocolError
    from ``fold`` stops the folding (later pieces are dropped) and is raised again by :meth:`finish`, so a bad
    vector fails its session, never the link."""

    def __init__(self, fold: Callable[[int, np.ndarray], None]):
        self._fold = fold
        self._carry = b""  # the first bytes of an element split across pieces
        self._elements = 0  # elements handed on so far
        self.error: ProtocolError | None = None

    def __call__(self, _offset: int, view: memoryview) -> None:
        if self.error is not None:
            return
        try:
            if self._carry:
                take = RING_BYTES - len(self._carry)
                self._carry += bytes(view[:take])
                view = view[take:]
                if len(self._carry) < RING_BYTES:
                    return
                self._hand_on(np.frombuffer(self._carry, dtype="<u8"))
                self._carry = b""
            whole = len(view) - len(view) % RING_BYTES
            if whole:
                self._hand_on(np.frombuffer(view[:whole], dtype="<u8"))
            self._carry = bytes(view[whole:])
        except ProtocolError as exc:
            self.error = exc

    def _hand_on(self, elements: np.ndarray) -> None:
        self._fold(self._elements, elements)
        self._elements += elements.size

    def finish(self) -> int:
        """The number of elements handed on, once the message is complete (ProtocolError if folding failed
        or the message was not whole elements)."""
        if self.error is not None:
            raise self.error
        if self._carry:
            raise ProtocolError(Status.INVALID_ARGUMENT, "a vector is whole uint64 words")
        return self._elements


def abort_message(session_id: bytes, sender: str, reason: str, culprit: str = "") -> pb.Abort:
    return pb.Abort(session_id=session_id, sender=sender, reason=reason, culprit=culprit)
