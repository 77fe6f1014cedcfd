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
    link_port = 50150               # optional: where its links to the parties listen (default: a free port)
    client_link_port = 50151        # optional: where its clients' query links listen (default: a free port)

    [[node]]
    name = "alice"
    address = "127.0.0.1:50051"
    roles = ["party"]
    data = "data/alice.csv"         # a CSV with a header, or sqlite:PATH with `table`
    ledger = "state/alice.db"       # and its used session ids beside it
    link_port = 50152               # optional: where its links listen, on its address's host

    [[node]]
    name = "analyst"
    roles = ["client"]

The file is read into typed models (pydantic, unknown keys refused, every
number range-checked); an error names the file, the line and the field. A
node's state directory is its ``state`` key, or else the folder of its
ledger. Relative paths are relative to the file. A party's answer policy is
the library's one :class:`mpcdp.protocol.PartyPolicy` (:meth:`Policy.party`), for
its secure sums and what it computes under MPC alike. A node's links
(:mod:`services.link`) listen on a free port of its address's host, which peers
ask over gRPC, unless ``link_port`` names one (for a firewall); the coordinator's
clients' query links likewise, or on ``client_link_port``. Each is in 1..65535
and differs from the node's gRPC port and from the other.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mpcdp.names import InvalidName, check_name
from mpcdp.survey.toml_lines import key_lines

if TYPE_CHECKING:
    from mpcdp.protocol import PartyPolicy

Role = Literal["coordinator", "party", "aggregator", "text", "client"]
ROLES: tuple[str, ...] = get_args(Role)
SERVING_ROLES = ("coordinator", "party", "aggregator", "text")

Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]  # an int is a number too
Count = Annotated[int, Field(strict=True, ge=1)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


class FederationError(ValueError):
    """A malformed federation file; the message names the file, the line and the field."""


class Policy(BaseModel):
    """A ``[policy]`` table: the federation's defaults, or a node's overrides of them.

    A setting the library's policy owns (:class:`mpcdp.protocol.PartyPolicy`, for secure sums and comparisons
    alike) is None when the file leaves it out: that class's own default then applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_exact: StrictBool = False  # exact (non-DP) secure sums
    allow_exact_nonlinear: StrictBool = False  # exact comparisons under MPC
    max_records: Count = 1  # records one party may contribute (the coordinator's default for a query)
    epsilon_budget: Number | None = None  # a ledger's total epsilon (required where a node keeps a ledger)
    delta_budget: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.0
    max_epsilon: Number | None = None  # per query
    min_colluders: Count | None = None
    statistics: tuple[StrictStr, ...] | None = None  # statistics a party answers
    columns: tuple[StrictStr, ...] | None = None  # columns a party offers (empty: any)
    max_length: Count | None = None  # ring elements per query vector
    max_timeout: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] | None = None  # seconds
    one_round: StrictBool | None = None  # share on accepting (one round trip)

    def over(self, defaults: Policy) -> Policy:
        """This table's settings over ``defaults``'."""
        return Policy.model_validate({**defaults.model_dump(exclude_unset=True), **self.model_dump(exclude_unset=True)})

    def _given(self, *names: str) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def party(self) -> PartyPolicy:
        """What a party agrees to answer and how it takes part, as the library's policy."""
        from mpcdp.protocol import PartyPolicy  # here: a node that answers no query need not load the protocol

        given = "statistics", "max_epsilon", "min_colluders", "columns", "max_length", "max_timeout", "one_round"
        return PartyPolicy(
            allow_exact=self.allow_exact, allow_exact_nonlinear=self.allow_exact_nonlinear, **self._given(*given)
        )


def check_link_ports(
    grpc_port: int | None,
    link_port: int | None,
    client_link_port: int | None = None,
    keys: tuple[str, str] = ("link_port", "client_link_port"),
    grpc_key: str = "its address",
) -> None:
    """ValueError naming the key unless each link port given is in 1..65535 and differs from the gRPC port and
    from the other (two listeners cannot share a port). ``keys``: what the user gave each port as (a file's key, a
    flag), ``grpc_key``: where the gRPC port came from."""
    for key, port in zip(keys, (link_port, client_link_port), strict=True):
        if port is None:
            continue
        if not 0 < port < 65536:
            raise ValueError(f"{key}: a port in 1..65535, got {port}")
        if port == grpc_port:
            raise ValueError(f"{key}: {port} is the node's gRPC port ({grpc_key}); links need a port of their own")
    if link_port is not None and link_port == client_link_port:
        raise ValueError(f"{keys[1]}: {link_port} is the {keys[0]} too; the two listeners need two ports")


def _resolve(value: str | None, base: Path) -> Path | str | None:
    if value is None:
        return None
    if value.startswith("sqlite:"):
        return "sqlite:" + str(base / value[len("sqlite:") :])
    return base / value


class Node(BaseModel):
    """A ``[[node]]``: its name (its TLS identity), roles, address and files."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: StrictStr
    roles: tuple[Role, ...] = Field(min_length=1)
    address: StrictStr | None = None
    data: Path | str | None = None  # a file, or sqlite:PATH (with `table`)
    table: StrictStr | None = None
    ledger: Path | None = None
    state: Path | None = None
    link_port: Port | None = None  # where its links listen (None: a free port, which peers ask over gRPC)
    client_link_port: Port | None = None  # a coordinator's: where its clients' query links listen
    policy: Policy = Policy()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "node name")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address must be 'host:port' with a port in 1..65535, got {value!r}")
        return value

    @model_validator(mode="after")
    def _ports(self) -> Node:
        grpc_port = self.port if self.address is not None else None
        check_link_ports(grpc_port, self.link_port, self.client_link_port)
        if self.client_link_port is not None and not self.has("coordinator"):
            raise ValueError("client_link_port: only a coordinator has clients' query links")
        return self

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
        return str(self.address).rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(str(self.address).rsplit(":", 1)[1])


class _Head(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = "federation"
    certs: StrictStr = "certs"


class _File(BaseModel):
    """The whole file, as written."""

    model_config = ConfigDict(extra="forbid")

    federation: _Head = _Head()
    policy: Policy = Policy()
    node: list[dict[str, Any]] = Field(min_length=1, description="the nodes, as [[node]] tables")


class Federation(BaseModel):
    """A federation: its nodes, certificate folder and policy."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    nodes: tuple[Node, ...]
    certs: Path
    policy: Policy = Policy()
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

    def address(self, name: str) -> str:
        """Where node ``name`` listens (FederationError for a node that does not: a client)."""
        address = self.node(name).address
        if address is None:
            raise FederationError(f"{self._where}: node {name!r} has no address")
        return address

    def link_ports(self, name: str) -> tuple[int, int]:
        """Where node ``name``'s links and (a coordinator's) clients' query links listen: its ``link_port`` and
        ``client_link_port``, 0 for one it leaves out (a free port), or for a name the file does not list."""
        node = next((n for n in self.nodes if n.name == name), None)
        if node is None:
            return 0, 0
        return node.link_port or 0, node.client_link_port or 0

    def policy_for(self, name: str) -> Policy:
        """The federation's policy overlaid with the node's own."""
        return self.node(name).policy.over(self.policy)

    @property
    def _where(self) -> str:
        return str(self.path) if self.path else f"federation {self.name!r}"


def _message(loc: tuple, error: dict) -> str:
    """One pydantic error in the file's words: the field (within its node), what is wrong."""
    within = loc[2:] if loc[:1] == ("node",) and len(loc) >= 2 and isinstance(loc[1], int) else loc
    field = ".".join(str(p) for p in within)
    if error["type"] == "extra_forbidden":
        if "policy" in loc[:-1]:
            return f"unknown policy key {loc[-1]!r}; known: {', '.join(Policy.model_fields)}"
        table = {(): "top-level", ("federation",): "[federation]"}.get(tuple(loc[:-1]), "node")
        return f"unknown {table} key {loc[-1]!r}"
    if loc == ("node",) and error["type"] in ("missing", "list_type", "too_short"):
        return "list the nodes as [[node]] tables"
    text = error["msg"].removeprefix("Value error, ")
    if isinstance(error.get("ctx", {}).get("error"), InvalidName):
        text = str(error["ctx"]["error"])
    if "roles" in loc and error["type"] != "literal_error":
        text += f" (roles are {', '.join(ROLES)})"
    return f"{field}: {text}" if field else text  # (a check of the whole node names its keys itself)


def _located(errors: list[Any], where: str, doc: dict, lines: dict, prefix: tuple = ()) -> FederationError:
    """The errors of one table as one FederationError: file:line, the node, each field and what is wrong."""
    locs = [tuple(prefix) + tuple(p for p in e["loc"] if not str(p).startswith("function-")) for e in errors]
    key = locs[0]
    line = next((lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in lines), None)
    at = f"{where}:{line}" if line else where
    node = ""
    if key[:1] == ("node",) and len(key) > 1 and isinstance(key[1], int):
        raw = doc["node"][key[1]] if isinstance(doc.get("node"), list) and len(doc["node"]) > key[1] else {}
        name = raw.get("name") if isinstance(raw, dict) else None
        node = f" node {name!r}:" if isinstance(name, str) else f" node #{key[1] + 1}:"
    return FederationError(f"{at}:{node} " + "; ".join(_message(loc, e) for loc, e in zip(locs, errors, strict=True)))


def _listeners(node: Node) -> list[tuple[str, str, int]]:
    """Where ``node`` listens: (key, host, port) of its gRPC address, link port and clients' link port."""
    if node.address is None:
        return []
    ports = [("address", node.port), ("link_port", node.link_port), ("client_link_port", node.client_link_port)]
    return [(key, node.host, port) for key, port in ports if port is not None]


def _port_clash(node: Node, before: list[Node]) -> tuple[str, str] | None:
    """The key of ``node`` whose port on its host an earlier node listens on too, and why that fails: a link port
    against any other port (two gRPC addresses alike are left as before: placeholders in generated files)."""
    for key, host, port in _listeners(node):
        for other in before:
            for other_key, other_host, other_port in _listeners(other):
                if (host, port) == (other_host, other_port) and (key, other_key) != ("address", "address"):
                    what = "its gRPC address" if other_key == "address" else other_key
                    return (
                        key,
                        f"{port} on {host} is where node {other.name!r} listens too ({what}); a port per listener",
                    )
    return None


def parse(doc: dict, base: Path, path: Path | None = None, text: str | None = None) -> Federation:
    """A federation from parsed TOML; ``base`` anchors relative paths; ``text`` (the file) gives line numbers."""
    where = str(path) if path else "federation"
    lines = key_lines(text) if text else {}
    try:
        head = _File.model_validate(doc)
    except ValidationError as exc:
        raise _located(exc.errors(), where, doc, lines) from None
    nodes: list[Node] = []
    seen: set[str] = set()
    for i, raw in enumerate(head.node):
        try:
            node = Node.model_validate(raw)
        except ValidationError as exc:
            raise _located(exc.errors(), where, doc, lines, ("node", i)) from None
        if node.name in seen:
            raise _located(
                [{"loc": ("name",), "msg": "duplicate node name", "type": "duplicate"}], where, doc, lines, ("node", i)
            )
        if any(r in SERVING_ROLES for r in node.roles) and node.address is None:
            raise _located(
                [{"loc": ("address",), "msg": "a serving node needs an address 'host:port'", "type": "missing"}],
                where,
                doc,
                lines,
                ("node", i),
            )
        seen.add(node.name)
        clash = _port_clash(node, nodes)
        if clash:
            key, why = clash
            raise _located([{"loc": (key,), "msg": why, "type": "clash"}], where, doc, lines, ("node", i))
        nodes.append(
            node.model_copy(
                update={
                    "data": _resolve(raw.get("data"), base),
                    "ledger": _resolve(raw.get("ledger"), base),
                    "state": _resolve(raw.get("state"), base),
                }
            )
        )
    return Federation(
        name=head.federation.name,
        nodes=tuple(nodes),
        certs=base / head.federation.certs,
        policy=head.policy,
        path=path,
    )


def load(path) -> Federation:
    """Read and validate a federation file."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise FederationError(f"federation file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise FederationError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, path.resolve().parent, path, text)
