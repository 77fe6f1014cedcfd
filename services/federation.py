"""Federation files: which nodes exist, where they listen, what they do.

A federation file is TOML. It lists nodes, each with a name (its TLS
identity), an address (host:port; omitted for clients) and roles, plus
optional shared policy and per-node settings::

    [federation]
    name = "engineers"
    certs = "certs"                 # folder of ca.pem, <name>.pem, <name>.key

    [policy]                        # defaults for every party (a node may override)
    allow_exact = true
    max_epsilon = 5.0
    max_records = 10000
    max_length = 2097152            # ring elements per query vector (memory per query)
    max_timeout = 300.0             # longest session deadline, in seconds from now
    one_round = true                # share on accepting, without waiting for the others' answers
    allow_exact_nonlinear = false   # exact max/min/argmax/threshold under MPC (services/mpc_node.py)
    epsilon_budget = 10.0

    [[node]]
    name = "coordinator"
    address = "127.0.0.1:50050"
    roles = ["coordinator"]
    ledger = "state/coordinator.db"  # its state (ledger, released results) lives beside it

    [[node]]
    name = "alice"
    address = "127.0.0.1:50051"
    roles = ["party"]
    data = "data/alice.csv"         # a CSV with a header, or sqlite:PATH with `table`
    ledger = "state/alice.db"       # and its used session ids beside it

    [[node]]
    name = "analyst"
    roles = ["client"]

A node's state directory is its ``state`` key, or else the folder of its
ledger. Relative paths are relative to the file. Keys this module does not know are
kept in ``Node.extra`` for the services that use them.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("coordinator", "party", "aggregator", "text", "client")
SERVING_ROLES = ("coordinator", "party", "aggregator", "text")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NODE_KEYS = {"name", "address", "roles", "data", "table", "ledger", "state", "policy"}
DEFAULT_MAX_TIMEOUT = 300.0  # seconds: the longest session deadline a node accepts unless its policy says
POLICY_KEYS = {
    "allow_exact": bool,
    "max_epsilon": float,
    "max_records": int,
    "min_colluders": int,
    "statistics": list,
    "columns": list,
    "epsilon_budget": float,
    "delta_budget": float,
    "max_length": int,
    "max_timeout": float,
    "one_round": bool,
    "allow_exact_nonlinear": bool,
}


class FederationError(ValueError):
    """A malformed federation file; the message names the file and the field."""


@dataclass(frozen=True)
class Node:
    name: str
    roles: tuple[str, ...]
    address: str | None = None
    data: Path | str | None = None
    table: str | None = None
    ledger: Path | None = None
    state: Path | None = None
    policy: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def state_dir(self) -> Path | None:
        """Where this node keeps what must survive a restart: ``state``, else its ledger's folder."""
        if self.state is not None:
            return Path(self.state)
        return None if self.ledger is None else Path(self.ledger).parent

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Federation:
    name: str
    nodes: tuple[Node, ...]
    certs: Path
    policy: dict = field(default_factory=dict)
    path: Path | None = None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise FederationError(f"{self._where}: no node named {name!r}; nodes are {', '.join(self.names())}")

    def names(self, role: str | None = None) -> list[str]:
        return [n.name for n in self.nodes if role is None or n.has(role)]

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has(role)]

    def coordinator(self) -> Node:
        found = self.with_role("coordinator")
        if len(found) != 1:
            raise FederationError(f"{self._where}: expected exactly one coordinator, found {len(found)}")
        return found[0]

    def policy_for(self, name: str) -> dict:
        """The federation's policy overlaid with the node's own."""
        return {**self.policy, **self.node(name).policy}

    @property
    def _where(self) -> str:
        return str(self.path) if self.path else f"federation {self.name!r}"


def _check_address(where: str, address) -> str:
    if not isinstance(address, str) or ":" not in address:
        raise FederationError(f"{where}: address must be 'host:port', got {address!r}")
    host, port = address.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FederationError(f"{where}: address must be 'host:port' with a port in 1..65535, got {address!r}")
    return address


def _check_policy(where: str, policy) -> dict:
    if not isinstance(policy, dict):
        raise FederationError(f"{where}: policy must be a table")
    out = {}
    for key, value in policy.items():
        kind = POLICY_KEYS.get(key)
        if kind is None:
            raise FederationError(f"{where}: unknown policy key {key!r}; known: {', '.join(sorted(POLICY_KEYS))}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FederationError(f"{where}: policy {key} must be a {kind.__name__}, got {value!r}")
        if kind is float and (not math.isfinite(value) or value < 0):
            raise FederationError(f"{where}: policy {key} must be a finite non-negative number, got {value!r}")
        if key == "max_timeout" and value <= 0:
            raise FederationError(f"{where}: policy max_timeout must be a positive number of seconds, got {value!r}")
        out[key] = tuple(value) if kind is list else value
    return out


def _resolve(base: Path, value) -> Path | str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise FederationError(f"expected a path string, got {value!r}")
    if value.startswith("sqlite:"):
        return "sqlite:" + str(base / value[len("sqlite:") :])
    return base / value


def parse(doc: dict, base: Path, path: Path | None = None) -> Federation:
    """A federation from parsed TOML; ``base`` anchors relative paths."""
    where = str(path) if path else "federation"
    head = doc.get("federation", {})
    name = head.get("name", "federation")
    policy = _check_policy(f"{where}: [policy]", doc.get("policy", {}))
    raw_nodes = doc.get("node", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise FederationError(f"{where}: list the nodes as [[node]] tables")
    nodes, seen = [], set()
    for i, raw in enumerate(raw_nodes):
        at = f"{where}: node #{i + 1}"
        nm = raw.get("name")
        if not isinstance(nm, str) or not _NAME.match(nm):
            raise FederationError(f"{at}: name must be 1-63 characters [A-Za-z0-9._-], got {nm!r}")
        at = f"{where}: node {nm!r}"
        if nm in seen:
            raise FederationError(f"{at}: duplicate node name")
        seen.add(nm)
        roles = raw.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise FederationError(f"{at}: roles must be a non-empty list of {', '.join(ROLES)}, got {roles!r}")
        address = raw.get("address")
        if any(r in SERVING_ROLES for r in roles) or address is not None:
            address = _check_address(at, address)
        try:
            data = _resolve(base, raw.get("data"))
            ledger = _resolve(base, raw.get("ledger"))
            state = _resolve(base, raw.get("state"))
        except FederationError as exc:
            raise FederationError(f"{at}: {exc}") from None
        nodes.append(
            Node(
                name=nm,
                roles=tuple(roles),
                address=address,
                data=data,
                table=raw.get("table"),
                ledger=ledger,
                state=state,
                policy=_check_policy(f"{at}: policy", raw.get("policy", {})),
                extra={k: v for k, v in raw.items() if k not in _NODE_KEYS},
            )
        )
    certs = base / head.get("certs", "certs")
    return Federation(name=name, nodes=tuple(nodes), certs=certs, policy=policy, path=path)


def load(path) -> Federation:
    """Read and validate a federation file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FederationError(f"federation file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise FederationError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, path.resolve().parent, path)
