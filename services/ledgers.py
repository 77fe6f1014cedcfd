"""Each node's own persistent privacy ledger, as its federation file configures it.

A node with a ``ledger`` path keeps a :class:`mpcdp.dp.ledger.PrivacyLedger`
there for its dataset, with the ``epsilon_budget`` (and ``delta_budget``) of
its policy; without one it keeps no ledger and, having nothing to spend,
answers only what its policy allows (exact releases where permitted).
"""

from __future__ import annotations

from mpcdp.dp.ledger import PrivacyLedger
from services.federation import Federation, FederationError


def ledger_for(federation: Federation, name: str, dataset: str):
    node = federation.node(name)
    if node.ledger is None:
        return None
    policy = federation.policy_for(name)
    if "epsilon_budget" not in policy:
        raise FederationError(f"node {name!r} keeps a ledger: set policy epsilon_budget")
    node.ledger.parent.mkdir(parents=True, exist_ok=True)
    return PrivacyLedger(node.ledger, dataset, policy["epsilon_budget"], policy.get("delta_budget", 0.0))
