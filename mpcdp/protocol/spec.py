"""The query spec: everything the parties must agree on before any share moves.

A spec is immutable and validated on construction; each invalid field raises a
:class:`SpecError` that names the field, so a party or an analyst can see at
once what to fix. The same spec object (or its wire encoding) is what the
coordinator proposes and each party checks against its own policy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

from .. import ring
from ..dp.rational import epsilon_in_range, exact

STATISTICS = ("sum", "count", "mean", "variance", "histogram")
MECHANISMS = ("discrete_laplace", "skellam")
SHARING_MODES = ("seeded", "full")
SESSION_ID_BYTES = 16
MAX_PARTIES = 1024
MAX_DIMENSION = 1 << 24
MAX_DEADLINE_SECONDS = 600.0  # default cap on how far ahead a session's deadline may be


class SpecError(ValueError):
    """An invalid query spec. ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"invalid query spec: {field_name}: {message}")
        self.field = field_name


def new_session_id() -> bytes:
    """A fresh, unguessable session id from the OS CSPRNG."""
    return os.urandom(SESSION_ID_BYTES)


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class QuerySpec:
    """One secure-sum query.

    statistic   sum, count, mean, variance (per coordinate) or histogram
    parties     the party names, in the order shares are indexed
    column      the data column each party reads (informational for the library)
    dimension   length of each record vector (sum/mean/variance); 1 for scalars
    bounds      (lo, hi): every record coordinate is clipped to this range
    categories  the declared categories of a histogram
    frac_bits   fixed-point fractional bits for real values
    max_records most records any one party may contribute (sizes the ring headroom)
    epsilon     DP parameter of the release; None means an exact (non-DP) release. Decimal
                text, a Fraction or a number; stored as a float and read everywhere (ledger
                charge, noise calibration) as the decimal it prints as: 0.1 is exactly 1/10
    delta       approximate-DP slack (0 for pure DP), read like epsilon
    mechanism   distributed noise: discrete_laplace (pure DP) or skellam (zCDP)
    colluders   assumed number t of colluding parties (1 <= t < n); noise is sized
                so that the pieces of the n - t honest parties alone suffice
    sharing     seeded (n - 1 PRG seeds + one kept vector per party) or full vectors
    deadline    absolute UNIX time after which the session is dead
    session_id  fresh random bytes binding every message and PRG of the session
    """

    statistic: str
    parties: tuple[str, ...]
    session_id: bytes = field(default_factory=new_session_id)
    column: str = "value"
    dimension: int = 1
    bounds: tuple[float, float] = (0.0, 1.0)
    categories: tuple[str, ...] = ()
    frac_bits: int = 16
    max_records: int = 1
    epsilon: float | None = None
    delta: float = 0.0
    mechanism: str = "discrete_laplace"
    colluders: int = 1
    sharing: str = "seeded"
    deadline: float = math.inf

    def __post_init__(self):
        for name in ("epsilon", "delta"):
            value = getattr(self, name)
            if isinstance(value, (str, Fraction)):  # decimal text or an exact rational: as the nearest float
                try:
                    object.__setattr__(self, name, float(exact(value, name)))
                except (TypeError, ValueError, OverflowError) as exc:
                    raise SpecError(name, str(exc).removeprefix(f"{name} ")) from None
        object.__setattr__(self, "parties", tuple(self.parties))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "bounds", tuple(self.bounds))
        self._validate()

    def _validate(self) -> None:
        if self.statistic not in STATISTICS:
            raise SpecError("statistic", f"unknown statistic {self.statistic!r}; choose one of {', '.join(STATISTICS)}")
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise SpecError("session_id", f"must be {SESSION_ID_BYTES} random bytes")
        self._validate_parties()
        if not isinstance(self.column, str) or not self.column:
            raise SpecError("column", "must be a non-empty column name")
        if not isinstance(self.dimension, int) or not 1 <= self.dimension <= MAX_DIMENSION:
            raise SpecError("dimension", f"must be an integer in [1, {MAX_DIMENSION}], got {self.dimension!r}")
        self._validate_bounds()
        self._validate_categories()
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 52:
            raise SpecError("frac_bits", f"must be an integer in [0, 52], got {self.frac_bits!r}")
        if not isinstance(self.max_records, int) or self.max_records < 1:
            raise SpecError("max_records", f"must be a positive integer, got {self.max_records!r}")
        self._validate_privacy()
        if self.sharing not in SHARING_MODES:
            raise SpecError("sharing", f"must be one of {', '.join(SHARING_MODES)}, got {self.sharing!r}")
        if not isinstance(self.deadline, (int, float)) or math.isnan(self.deadline) or self.deadline <= 0:
            raise SpecError("deadline", "must be a positive UNIX time (or infinity for no deadline)")
        self._validate_headroom()

    def _validate_parties(self) -> None:
        if len(self.parties) < 2:
            raise SpecError("parties", "a secure sum needs at least 2 parties")
        if len(self.parties) > MAX_PARTIES:
            raise SpecError("parties", f"at most {MAX_PARTIES} parties")
        for p in self.parties:
            if not isinstance(p, str) or not p or not p.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise SpecError("parties", f"party names are non-empty [A-Za-z0-9._-] strings, got {p!r}")
        if len(set(self.parties)) != len(self.parties):
            raise SpecError("parties", "party names must be distinct")

    def _validate_bounds(self) -> None:
        if self.statistic in ("count", "histogram"):
            return
        if len(self.bounds) != 2 or not all(_finite(b) for b in self.bounds):
            raise SpecError("bounds", "must be two finite numbers (lo, hi)")
        lo, hi = map(float, self.bounds)
        if lo > hi:
            raise SpecError("bounds", f"lo must not exceed hi, got ({lo:g}, {hi:g})")

    def _validate_categories(self) -> None:
        if self.statistic == "histogram":
            if not self.categories:
                raise SpecError("categories", "a histogram needs its categories declared up front")
            if len(set(self.categories)) != len(self.categories):
                raise SpecError("categories", "categories must be distinct")
            if len(self.categories) > MAX_DIMENSION:
                raise SpecError("categories", f"at most {MAX_DIMENSION} categories")
        elif self.categories:
            raise SpecError("categories", f"only a histogram takes categories, not {self.statistic}")

    def _validate_privacy(self) -> None:
        if self.epsilon is not None:
            if isinstance(self.epsilon, bool) or not _finite(self.epsilon):
                raise SpecError(
                    "epsilon", f"must be a finite number > 0 (or None for an exact release), got {self.epsilon!r}"
                )
            try:
                epsilon_in_range(float(self.epsilon))
            except ValueError as exc:
                raise SpecError("epsilon", str(exc).removeprefix("epsilon ")) from None
        if not _finite(self.delta) or not 0 <= self.delta < 1:
            raise SpecError("delta", f"must be in [0, 1), got {self.delta!r}")
        if self.mechanism not in MECHANISMS:
            raise SpecError("mechanism", f"unknown mechanism {self.mechanism!r}; choose one of {', '.join(MECHANISMS)}")
        if self.epsilon is not None and self.mechanism == "skellam" and self.delta <= 0:
            raise SpecError("delta", "skellam noise gives approximate DP: set delta > 0")
        if not isinstance(self.colluders, int) or not 1 <= self.colluders < len(self.parties):
            raise SpecError(
                "colluders",
                f"must be an integer in [1, {len(self.parties) - 1}] (at least one honest party), got {self.colluders!r}",
            )

    def _validate_headroom(self) -> None:
        # the codec and the noise calibration both depend on an otherwise valid spec
        from .noise import check_noise_headroom
        from .statistics import statistic_for

        try:
            statistic_for(self).check_headroom(len(self.parties) * self.max_records)
        except ValueError as exc:  # HeadroomError included: the bounds do not fit the ring
            raise SpecError("bounds", str(exc)) from None
        if self.is_exact:
            return
        try:
            check_noise_headroom(self)
        except ring.HeadroomError as exc:
            raise SpecError("bounds", str(exc)) from None
        except ValueError as exc:  # the noise cannot be calibrated at these parameters
            raise SpecError("epsilon", f"{exc}; try fewer frac_bits or tighter bounds") from None

    def check_deadline(self, now: float, max_seconds: float = MAX_DEADLINE_SECONDS) -> None:
        """Refuse (SpecError) a session that has no deadline, is already past it, or whose
        deadline lies more than ``max_seconds`` ahead of ``now``: what a node on a network checks."""
        if math.isinf(self.deadline):
            raise SpecError("deadline", f"a session needs a deadline, at most {max_seconds:g} s ahead")
        if self.deadline <= now:
            raise SpecError("deadline", "the session's deadline has already passed")
        if self.deadline - now > max_seconds:
            raise SpecError(
                "deadline", f"is {self.deadline - now:.0f} s ahead; this node allows at most {max_seconds:g} s"
            )

    @property
    def n_parties(self) -> int:
        return len(self.parties)

    @property
    def is_exact(self) -> bool:
        return self.epsilon is None
