"""The query spec: everything the parties must agree on before any share moves.

A spec is immutable and validated on construction; each invalid field raises a
:class:`SpecError` that names the field, so a party or an analyst can see at
once what to fix. The same spec object (or its wire encoding) is what the
coordinator proposes and each party checks against its own policy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cached_property

from .. import ring
from ..dp.loss import Measure, PrivacyLoss, Relation
from ..dp.mechanisms import CENTRAL_MECHANISMS
from ..dp.rational import epsilon_in_range, exact
from ..names import is_name
from .errors import SpecError
from .noise import check_noise_headroom
from .statistics import MAX_DIMENSION, QueryCodec, codec_for, linear


class Sharing(StrEnum):
    """How a party's vector reaches its peers."""

    SEEDED = "seeded"  # n - 1 PRG seeds, one full correction vector kept
    FULL = "full"  # n - 1 full random vectors
    KEYED = "keyed"  # no share message: pairwise masks expanded from per-link pair keys (mpcdp.sharing.mask_pairwise)


SHARING_MODES = tuple(m.value for m in Sharing)
SESSION_ID_BYTES = 16
MAX_PARTIES = 1024
MAX_KEYED_PARTIES = 64  # a keyed session costs each party n - 1 pair keys and the coordinator n^2 key id checks
MAX_DEADLINE_SECONDS = 600.0  # default cap on how far ahead a session's deadline may be
MAX_BATCH = 256  # statistics asked in one session (a party decodes, checks and encodes each)
_VALID_SHAPES: dict[tuple[object, ...], tuple[Sharing, QueryCodec]] = {}  # QuerySpec._shape of specs that passed
# _validate -> their sharing and codec
_MAX_VALID_SHAPES = 4096  # then forgotten all at once (a node sees a few shapes: its analysts' queries)
_MAX_VALID_BYTES = 8 << 20  # or once their estimated size (QuerySpec._shape_bytes) would pass this
_MAX_SHAPE_ITEMS = 64  # parties, and categories, of a shape remembered: a larger spec is validated whole each time
_MAX_SHAPE_CHARS = 1024  # characters of a remembered shape's column, party names and categories, together
_valid_bytes = 0  # the remembered shapes' estimated size

__all__ = [
    "MAX_BATCH",
    "MAX_DEADLINE_SECONDS",
    "MAX_DIMENSION",
    "MAX_KEYED_PARTIES",
    "MAX_PARTIES",
    "SESSION_ID_BYTES",
    "SHARING_MODES",
    "Batch",
    "QuerySpec",
    "Sharing",
    "SpecError",
    "new_session_id",
]


def new_session_id() -> bytes:
    """A fresh, unguessable session id from the OS CSPRNG."""
    return os.urandom(SESSION_ID_BYTES)


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
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
                text, a Fraction or a number; stored as a float (the wire form) and read as the
                decimal it prints as: 0.1 is exactly 1/10
    delta       approximate-DP slack (0 for pure DP), read like epsilon
    mechanism   distributed noise, a name in mpcdp.dp.mechanisms.CENTRAL_MECHANISMS:
                discrete_laplace (pure DP) or skellam (zCDP within (epsilon, delta))
    colluders   assumed number t of colluding parties (1 <= t < n); noise is sized
                so that the pieces of the n - t honest parties alone suffice
    sharing     keyed (no share message: each pair's masks come from its pair key), seeded (n - 1 PRG
                seeds + one kept vector per party) or full vectors
    deadline    absolute UNIX time after which the session is dead
    session_id  fresh random bytes binding every message and PRG of the session

    ``epsilon`` may also be given as a :class:`~mpcdp.dp.loss.PrivacyLoss` (pure, or (epsilon,
    delta); relation RECORD), which then sets ``delta`` too. The property :attr:`loss` is the
    release's privacy loss as a value (None: exact): what the ledgers charge and the noise is
    calibrated on. The floats are its wire form, so every node derives the same loss.
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
    sharing: Sharing = Sharing.SEEDED  # or its name
    deadline: float = math.inf

    def __post_init__(self) -> None:
        if isinstance(self.epsilon, PrivacyLoss):
            self._from_loss(self.epsilon)
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
        shape = self._shape()
        known = _VALID_SHAPES.get(shape) if shape is not None else None
        if known is None:
            self._validate()
            if shape is not None:
                global _valid_bytes
                size = self._shape_bytes()
                if len(_VALID_SHAPES) >= _MAX_VALID_SHAPES or _valid_bytes + size > _MAX_VALID_BYTES:
                    _VALID_SHAPES.clear()
                    _valid_bytes = 0
                _VALID_SHAPES[shape] = (self.sharing, self.codec)
                _valid_bytes += size
            return
        sharing, codec = known
        object.__setattr__(self, "sharing", sharing)  # every other field passed _validate before, alike
        self._validate_session()
        self.__dict__["codec"] = codec  # a codec reads only the fields of the shape: one per shape

    def _shape(self) -> tuple[object, ...] | None:
        """Every field but the session id and the deadline, each with its type (so 1, 1.0 and True differ; the
        sharing as its mode, named or not): what :meth:`_validate` decides on besides those two, so a spec of a
        shape validated before needs only :meth:`_validate_session` (specs differing only in their session arrive
        once per query). None if a field cannot be a key (it then fails validation), or if the shape is large (more
        than _MAX_SHAPE_ITEMS parties or categories, or _MAX_SHAPE_CHARS characters: not remembered, so an analyst
        cannot make a node keep megabytes per shape at no budget cost)."""
        if len(self.parties) > _MAX_SHAPE_ITEMS or len(self.categories) > _MAX_SHAPE_ITEMS:
            return None
        try:
            if self._chars() > _MAX_SHAPE_CHARS:
                return None
        except TypeError:  # a column, party or category that is no text: it fails validation
            return None
        values = (
            self.statistic,
            self.parties,
            self.column,
            self.dimension,
            self.bounds,
            self.categories,
            self.frac_bits,
            self.max_records,
            self.epsilon,
            self.delta,
            self.mechanism,
            self.colluders,
        )
        try:
            sharing = Sharing(self.sharing)  # its name or itself: alike
            shape = (
                *values,
                sharing,
                tuple(map(type, values)),
                tuple(map(type, self.parties)),
                tuple(map(type, self.bounds)),
                tuple(map(type, self.categories)),
            )
            hash(shape)
        except (TypeError, ValueError):
            return None
        return shape

    def _chars(self) -> int:
        return len(self.column) + sum(map(len, self.parties)) + sum(map(len, self.categories))

    def _shape_bytes(self) -> int:
        """A remembered shape's size in memory, generously: the spec and codec, each party and category."""
        return 2048 + 96 * (len(self.parties) + len(self.categories)) + self._chars()

    def _from_loss(self, loss: PrivacyLoss) -> None:
        if loss.relation is not Relation.RECORD:
            raise SpecError("epsilon", f"a query's loss is per added or removed record, not {loss.relation.describe}")
        if loss.measure is Measure.ZCDP:
            raise SpecError("epsilon", "give the query's loss as epsilon (pure DP) or (epsilon, delta), not zCDP rho")
        object.__setattr__(self, "epsilon", float(loss.epsilon))
        object.__setattr__(self, "delta", float(loss.delta))

    def _validate(self) -> None:
        statistic = linear(self.statistic)  # unknown or not computed by a secure sum: SpecError
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise SpecError("session_id", f"must be {SESSION_ID_BYTES} random bytes")
        self._validate_parties()
        if not isinstance(self.column, str) or not self.column:
            raise SpecError("column", "must be a non-empty column name")
        if not isinstance(self.dimension, int) or not 1 <= self.dimension <= MAX_DIMENSION:
            raise SpecError("dimension", f"must be an integer in [1, {MAX_DIMENSION}], got {self.dimension!r}")
        statistic.validate(self)  # its bounds and categories
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 52:
            raise SpecError("frac_bits", f"must be an integer in [0, 52], got {self.frac_bits!r}")
        if not isinstance(self.max_records, int) or self.max_records < 1:
            raise SpecError("max_records", f"must be a positive integer, got {self.max_records!r}")
        self._validate_privacy()
        try:
            object.__setattr__(self, "sharing", Sharing(self.sharing))
        except ValueError:
            raise SpecError("sharing", f"must be one of {', '.join(SHARING_MODES)}, got {self.sharing!r}") from None
        if self.sharing is Sharing.KEYED and len(self.parties) > MAX_KEYED_PARTIES:
            raise SpecError("sharing", f"keyed sessions take at most {MAX_KEYED_PARTIES} parties; use seeded")
        self._validate_deadline()
        self._validate_headroom()

    def _validate_session(self) -> None:
        """The two fields that change from query to query (the rest: :meth:`_shape`)."""
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise SpecError("session_id", f"must be {SESSION_ID_BYTES} random bytes")
        self._validate_deadline()

    def _validate_deadline(self) -> None:
        if not isinstance(self.deadline, (int, float)) or math.isnan(self.deadline) or self.deadline <= 0:
            raise SpecError("deadline", "must be a positive UNIX time (or infinity for no deadline)")

    def _validate_parties(self) -> None:
        if len(self.parties) < 2:
            raise SpecError("parties", "a secure sum needs at least 2 parties")
        if len(self.parties) > MAX_PARTIES:
            raise SpecError("parties", f"at most {MAX_PARTIES} parties")
        for p in self.parties:
            if not is_name(p):
                raise SpecError("parties", f"party names are 1-63 characters of [A-Za-z0-9._-], got {p!r}")
        if len(set(self.parties)) != len(self.parties):
            raise SpecError("parties", "party names must be distinct")

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
        try:
            mechanism = CENTRAL_MECHANISMS.get(self.mechanism)
        except ValueError as exc:
            raise SpecError("mechanism", str(exc)) from None
        if self.loss is not None:
            try:
                mechanism.check(self.loss)
            except ValueError as exc:
                raise SpecError("delta", str(exc)) from None
        if not isinstance(self.colluders, int) or not 1 <= self.colluders < len(self.parties):
            raise SpecError(
                "colluders",
                f"must be an integer in [1, {len(self.parties) - 1}] (at least one honest party), "
                f"got {self.colluders!r}",
            )

    def _validate_headroom(self) -> None:
        # the codec and the noise calibration both depend on an otherwise valid spec
        try:
            self.codec.check_headroom(len(self.parties) * self.max_records)
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

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the whole spec in a canonical form (every field; numbers as floats): what a keyed
        session's pairwise masks are bound to (:func:`mpcdp.sharing.mask_pairwise`), so that masks cancel only
        between parties that took part in exactly this proposal, and a session id replayed with any field
        changed (a new deadline, other bounds) gets unrelated masks."""
        fields = [
            self.statistic,
            list(self.parties),
            self.session_id.hex(),
            self.column,
            self.dimension,
            [float(b) for b in self.bounds],
            list(self.categories),
            self.frac_bits,
            self.max_records,
            None if self.epsilon is None else float(self.epsilon),
            float(self.delta),
            self.mechanism,
            self.colluders,
            self.sharing.value,
            float(self.deadline),
        ]
        return hashlib.sha256(b"mpcdp/v1/spec\0" + json.dumps(fields, separators=(",", ":")).encode()).digest()

    @cached_property
    def codec(self) -> QueryCodec:
        """The statistic's codec for this spec (made once per spec: a spec is immutable; specs of one shape share
        the first one's, :meth:`_shape`: a codec reads the statistic, dimension, bounds, categories, frac_bits and
        max_records of its spec, never its session id, deadline or sharing)."""
        return codec_for(self)

    @cached_property
    def loss(self) -> PrivacyLoss | None:
        """The release's privacy loss, per added or removed record (None: an exact release)."""
        if self.epsilon is None:
            return None
        return PrivacyLoss.of(exact(self.epsilon, "epsilon"), exact(self.delta, "delta"), Relation.RECORD)

    @property
    def is_exact(self) -> bool:
        return self.epsilon is None


@dataclass(frozen=True)
class Batch:
    """The statistics asked in one session (the batch API): one spec or more, sharing parties, colluders,
    sharing, session id and deadline (else SpecError naming ``batch[i]``), at most ``MAX_BATCH``, their vectors
    at most ``MAX_DIMENSION`` elements together (what one message on a link carries). A party
    concatenates their encoded aggregates (each with its own noise piece) into one vector, shared or masked as
    one; the coordinator decodes one release per statistic from its segment (:attr:`slices`).

    Its :attr:`digest` binds a keyed session's masks to the whole batch: a batch of one is its spec's digest, a
    longer one the hash of every spec's digest in order, so the same specs in another order, or in another
    batch, get unrelated masks; within the batch each statistic's mask is its own segment of one mask stream,
    so no two statistics are masked alike (two vectors masked alike reveal their difference)."""

    specs: tuple[QuerySpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", tuple(self.specs))
        if not self.specs:
            raise SpecError("batch", "a session asks at least one statistic")
        if len(self.specs) > MAX_BATCH:
            raise SpecError("batch", f"at most {MAX_BATCH} statistics in one session, got {len(self.specs)}")
        first = self.specs[0]
        for i, other in enumerate(self.specs[1:], 1):
            for name in ("parties", "colluders", "sharing", "session_id", "deadline"):
                if getattr(other, name) != getattr(first, name):
                    raise SpecError(f"batch[{i}]", f"has another {name}: the statistics of a batch share one session's")
        if self.length > MAX_DIMENSION:  # what one message on a link carries
            raise SpecError(
                "batch", f"its statistics need vectors of {self.length} elements together; at most {MAX_DIMENSION}"
            )

    @property
    def spec(self) -> QuerySpec:
        """The first statistic's spec: the session's parties, session id, deadline, sharing."""
        return self.specs[0]

    def __len__(self) -> int:
        return len(self.specs)

    @cached_property
    def slices(self) -> tuple[slice, ...]:
        """Each statistic's segment of the concatenated vector."""
        out: list[slice] = []
        at = 0
        for spec in self.specs:
            length = spec.codec.length
            out.append(slice(at, at + length))
            at += length
        return tuple(out)

    @property
    def length(self) -> int:
        """Ring elements of the concatenated vector."""
        stop: int = self.slices[-1].stop
        return stop

    @cached_property
    def digest(self) -> bytes:
        """What a keyed session's masks are bound to: the spec's digest for a batch of one, else SHA-256 of
        every spec's digest in order (a batch of one is a plain session: its masks are unchanged)."""
        if len(self.specs) == 1:
            return self.spec.digest
        return hashlib.sha256(b"mpcdp/v1/batch\0" + b"".join(s.digest for s in self.specs)).digest()

    @cached_property
    def loss(self) -> PrivacyLoss | None:
        """Every statistic's loss composed (None: every one exact): what a ledger reserves and charges, at once."""
        total: PrivacyLoss | None = None
        for spec in self.specs:
            if spec.loss is not None:
                total = spec.loss if total is None else total + spec.loss
        return total

    @property
    def is_exact(self) -> bool:
        return self.loss is None

    def label(self, index: int) -> str:
        """How a refusal names statistic ``index``: "" for a batch of one."""
        if len(self.specs) == 1:
            return ""
        return f"statistic {index} of the batch ({self.specs[index].statistic}): "
