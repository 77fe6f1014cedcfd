"""How many parties must finish a query, and the privacy guarantee of a release from those who did.

A many-party query names a quorum q: it completes when at least q of its n parties finish, whoever dropped
after accepting, and aborts below that. Each party's noise piece is sized, as always, so that the pieces of
n - t honest parties give the query's loss (t the spec's colluders; :mod:`mpcdp.dp.distributed`). When only
m < n parties are counted, m - t honest pieces reach the sum, and the release's loss is restated for them
by each block's ``guarantee(m)``: still pure DP for discrete Laplace (a larger epsilon, from the negative
binomial with r = (m - t) / (n - t) < 1), zCDP with a proportionally smaller Skellam mean for Skellam. The
same neighbouring relation as the query: one record of one counted party added or removed.

Every party is charged the worst case a release may have, the loss at m = q (:meth:`Quorum.charge`), since
who drops is known only after the shares moved; the release reports the loss at the m actually counted,
which is never more.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dp.loss import PrivacyLoss
from .errors import ProtocolError, Status
from .noise import mechanisms
from .spec import QuerySpec


def survivor_loss(spec: QuerySpec, counted: int) -> PrivacyLoss | None:
    """The release's loss when ``counted`` of the spec's parties added their noise pieces (None: exact, or no
    honest piece among them), composed over the statistic's blocks; zCDP converted at the spec's delta."""
    if spec.is_exact:
        return None
    total: PrivacyLoss | None = None
    for _, mechanism in mechanisms(spec):
        block = mechanism.guarantee(counted)
        if block is None:
            return None
        total = block if total is None else total + block
    return None if total is None else total.to_approx(spec.delta)


@dataclass(frozen=True)
class Quorum:
    """At least ``size`` of the spec's parties must finish; more than the colluders, so an honest piece remains."""

    spec: QuerySpec
    size: int

    def __post_init__(self) -> None:
        n, t = self.spec.n_parties, self.spec.colluders
        if not isinstance(self.size, int) or not t < self.size <= n:
            raise ValueError(
                f"the quorum must be an integer in [{t + 1}, {n}]: more parties than the {t} assumed colluders "
                f"(so at least one honest noise piece is counted), at most all {n}; got {self.size!r}"
            )

    @property
    def dropouts(self) -> int:
        """The most parties that may drop after accepting."""
        return self.spec.n_parties - self.size

    def charge(self) -> PrivacyLoss | None:
        """What each party's ledger is charged: the loss of a release counting only ``size`` parties."""
        return survivor_loss(self.spec, self.size)

    def check(self, counted: int, doing: str) -> None:
        """Raise ABORTED if fewer than ``size`` parties are left ``doing`` (e.g. "sent a masked input")."""
        if counted < self.size:
            raise ProtocolError(
                Status.ABORTED,
                f"only {counted} of {self.spec.n_parties} parties {doing}; the query's quorum is {self.size}: "
                "session aborted, no result released",
            )
