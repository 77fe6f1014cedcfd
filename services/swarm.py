"""Many parties per process: the many-party query (:mod:`mpcdp.protocol.masked`) on asyncio loops, a simulation.

The drivers and the messages' byte form are :mod:`services.many_party`'s (the same as on a federation's nodes).
Each party and the coordinator is a task with its own inbox; every message goes through a
:class:`LocalNetwork` that delivers it (or not, if either end is gone) and counts its payload bytes per node.
Parties act as they would over links: a party sends its keys to its neighbours, reports once every
neighbour's keys are in or its round timer runs out, masks when its roster comes, and reveals once. The
coordinator closes each round when every party it waits for answered or no message came for the round's
timer, so parties that are killed (at a named phase, or by cancelling their task at any moment) only make
the rounds wait for their timers, and the query completes if the quorum is met.

Two ways to run it. :func:`run_swarm`: every node in this process on one loop (no TLS, one core): it
measures the protocol's own cost per party (CPU and payload bytes), which grows with the graph's
O(log n) degree, not with n. :func:`run_across_processes`: the parties spread over worker processes, many
each, the coordinator in the caller, and every message between processes batched on the mutually
authenticated links between them (:class:`LinkNetwork` over :class:`services.link.Hub`, in the byte form of
:func:`services.many_party.encode`). A process speaks only for the parties it hosts (a frame naming a
sender hosted elsewhere is dropped); within a process parties are not isolated from each other (a
simulation, not a deployment). Memory: the coordinator folds masked inputs into one running sum (O(L)) and, at the
release, makes the masks it removes in batches of at most 1 MiB, whatever their number (O(L) too);
each party holds its own vector until it masks it (O(n L / workers) per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mpcdp.prg import RandomSource
from mpcdp.protocol import PartyPolicy, ProtocolError, QuerySpec, Release
from mpcdp.protocol.masked import MaskedParty, MaskedQuery
from services.many_party import (
    COORDINATOR,
    CoordinatorDriver,
    PartyDriver,
    decode,
    encode,
    log,
    pack,
    payload_bytes,
    unpack,
)

ROUND_TIMEOUT = 1.0  # seconds without a message after which a round stops waiting for parties that dropped


class LocalNetwork:
    """In-process delivery between named nodes; a node marked gone neither sends nor receives."""

    def __init__(self, names: list[str]):
        self.inbox: dict[str, asyncio.Queue[tuple[str, object]]] = {n: asyncio.Queue() for n in names}
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.gone: set[str] = set()

    def send(self, sender: str, recipient: str, msg: object) -> None:
        if sender in self.gone or recipient in self.gone:
            return
        size = payload_bytes(msg)
        self.sent[sender] += size
        self.received[recipient] += size
        self.inbox[recipient].put_nowait((sender, msg))

    async def next(self, me: str, idle: float | None) -> tuple[str, object] | None:
        """The next message for ``me``, or None if none came for ``idle`` seconds (None: wait for ever)."""
        inbox = self.inbox[me]
        if not inbox.empty():  # the common case: no timer, no task
            return inbox.get_nowait()
        if idle is None:
            return await inbox.get()
        try:
            return await asyncio.wait_for(inbox.get(), idle)
        except TimeoutError:
            return None


@dataclass
class SwarmRun:
    release: Release | None
    error: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: the protocol's cost, whatever else runs on the machine
    sent: dict[str, int] = field(default_factory=dict)  # payload bytes sent per node
    received: dict[str, int] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)  # masked inputs refused because they came after the cut
    releases: list[Release] = field(default_factory=list)  # one per statistic of a batch
    failed: dict[str, str] = field(default_factory=dict)  # party -> the exception its task stopped on (a bug)

    def party_bytes(self) -> float:
        """Mean payload bytes sent plus received per party."""
        parties = [p for p in set(self.sent) | set(self.received) if p != COORDINATOR]
        if not parties:
            return 0.0
        return sum(self.sent.get(p, 0) + self.received.get(p, 0) for p in parties) / len(parties)


async def run_swarm(
    query: MaskedQuery,
    data: Mapping[str, Any],
    stop: Mapping[str, str] | None = None,
    rng: Callable[[str], RandomSource] | None = None,
    policy: PartyPolicy | None = None,
    round_timeout: float = ROUND_TIMEOUT,
    kill_after: Mapping[str, float] | None = None,
    batch_data: Mapping[str, tuple[Any, ...]] | None = None,
) -> SwarmRun:
    """Run ``query`` with one task per party; ``stop`` makes parties stop at a phase (see PHASES),
    ``kill_after`` cancels a party's task that many seconds after the start, wherever it is."""
    spec = query.spec
    net = LocalNetwork([COORDINATOR, *spec.parties])
    policy = policy or PartyPolicy(allow_exact=True)
    start, cpu = time.perf_counter(), time.process_time()
    parties = {
        p: PartyDriver(
            MaskedParty(
                p, query, data[p], policy, rng=rng(p) if rng else None, batch_records=(batch_data or {}).get(p, ())
            ),
            net,
            round_timeout,
            stop=(stop or {}).get(p),
        )
        for p in spec.parties
    }
    tasks = {p: asyncio.ensure_future(party.run()) for p, party in parties.items()}
    killers = [asyncio.ensure_future(_kill(tasks[p], p, net, after)) for p, after in (kill_after or {}).items()]
    coordinator = CoordinatorDriver(query, net, round_timeout)
    try:
        release: Release | None = await coordinator.run()
        error = ""
    except ProtocolError as exc:
        release, error = None, str(exc)
        coordinator.abort(error)
    finally:
        for t in killers:
            t.cancel()
    await asyncio.wait(tasks.values(), timeout=round_timeout)
    for t in tasks.values():
        t.cancel()
    failed = {p: t.exception() for p, t in tasks.items() if t.done() and not t.cancelled() and t.exception()}
    for p, stopped in failed.items():  # a party's bug, not a dropout: say so (as the workers do)
        log.error("party %s stopped: %r", p, stopped, exc_info=stopped)
    return SwarmRun(
        release,
        error,
        time.perf_counter() - start,
        time.process_time() - cpu,
        dict(net.sent),
        dict(net.received),
        coordinator.late,
        coordinator.session.releases,
        failed={p: repr(stopped) for p, stopped in failed.items()},
    )


async def _kill(task: asyncio.Task[None], party: str, net: LocalNetwork, after: float) -> None:
    await asyncio.sleep(after)
    net.gone.add(party)
    task.cancel()


def run_query(
    query: MaskedQuery,
    data: Mapping[str, Any],
    stop: Mapping[str, str] | None = None,
    round_timeout: float = ROUND_TIMEOUT,
) -> SwarmRun:
    """One many-party query in this process (a fresh event loop)."""
    return asyncio.run(run_swarm(query, data, stop=stop, round_timeout=round_timeout))


def in_the_clear(spec: QuerySpec, data: Mapping[str, Any], parties: tuple[str, ...]) -> Any:
    """The statistic computed directly over ``parties``' records, no noise: what a simulation checks against."""
    from mpcdp import ring
    from mpcdp.protocol.statistics import codec_for

    codec = codec_for(spec)
    total = ring.zeros(codec.length)
    for p in parties:
        total = ring.add(total, codec.encode(data[p]))
    return codec.decode(total)[spec.statistic]


def report(run: SwarmRun, spec: QuerySpec, data: Mapping[str, Any], confidence: float = 0.95) -> dict[str, Any]:
    """What ``mpcdp simulate`` prints of an in-process run (as JSON-ready values)."""
    from mpcdp.protocol.noise import describe

    release = run.release
    assert release is not None
    doc: dict[str, Any] = {
        "statistic": spec.statistic,
        "value": release.value,
        "result": release.result,
        "exact": spec.is_exact,
        "epsilon": release.epsilon,
        "delta": release.delta if not spec.is_exact else None,
        "mechanism": release.mechanism,
        "counted": len(release.parties),
        "dropped": release.extras["dropped"],
        "late": run.late,
        "quorum": release.extras["quorum"],
        "parties": spec.n_parties,
        "degree": release.extras["degree"],
        "threshold": release.extras["threshold"],
        "seconds": round(run.seconds, 3),
        "bytes_per_party": round(run.party_bytes()),
        "in_the_clear": in_the_clear(spec, data, release.parties),
    }
    if not spec.is_exact:
        d = describe(spec, release.result, confidence)
        doc["intervals"] = {k: v for k, v in d.intervals.items() if v is not None}
        doc["noise_std"] = d.noise_std
        doc["confidence"] = confidence
    return doc


def to_text(doc: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    lines = [f"{doc['statistic']}: {fmt(doc['value'])}"]
    lines += [f"  {k}: {fmt(v)}" for k, v in doc["result"].items() if k != doc["statistic"]]
    if doc["exact"]:
        lines.append("exact release (no differential privacy)")
    else:
        lines.append(
            f"epsilon for the {doc['counted']} counted parties: {fmt(doc['epsilon'])}"
            + (f", delta {fmt(doc['delta'])}" if doc["delta"] else "")
            + f" ({doc['mechanism']} noise, one piece from each counted party)"
        )
        level = f"{100 * doc['confidence']:g}%"
        for key, interval in doc["intervals"].items():
            if isinstance(interval, list):
                lines.append(f"  {level} interval on {key}: [{fmt(interval[0])}, {fmt(interval[1])}]")
    dropped = doc["dropped"]
    lines.append(
        f"counted {doc['counted']} of {doc['parties']} parties (quorum {doc['quorum']})"
        + (f"; dropped: {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}" if dropped else "")
    )
    lines.append(
        f"each party exchanged secrets with {doc['degree']} neighbours (threshold {doc['threshold']}); "
        f"{doc['bytes_per_party']} payload bytes per party; {doc['seconds']:.2f} s"
    )
    lines.append(f"check, computed in the clear over the counted parties: {fmt(doc['in_the_clear'])}")
    return "\n".join(lines)


# -- across processes: parties spread over worker processes, messages over the links ------------------------

LINK_KIND = "swarm"  # the link message kind of a batch of many-party messages
BYE = "swarm/bye"  # the coordinator to each worker: the query is over, its links may close
DIAL_ATTEMPTS = 100  # 0.2 s apart: how long a process waits for another to start listening


class LinkNetwork(LocalNetwork):
    """A :class:`Network` whose nodes live in several processes: messages for a node hosted elsewhere
    travel over the link (services.link.Hub) to its process, batched, in order, one link message per batch."""

    def __init__(self, hub: Any, session: bytes, local: list[str], host_of: Mapping[str, str]):
        super().__init__(local)
        self.hub = hub
        self.session = session
        self.host_of = dict(host_of)
        self._out: dict[str, list[bytes]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._idle: dict[str, asyncio.Event] = {}  # set while nothing is queued for or being sent to a host
        self._tasks: list[asyncio.Task[None]] = []
        self.failed: list[str] = []

    def start(self, hosts: list[str]) -> None:
        """Pump messages to and from each other process in ``hosts``."""
        for host in hosts:
            self._out[host] = []
            self._wake[host] = asyncio.Event()
            self._idle[host] = asyncio.Event()
            self._idle[host].set()
            self._tasks.append(asyncio.ensure_future(self._sender(host)))
            self._tasks.append(asyncio.ensure_future(self._receiver(host)))

    def send(self, sender: str, recipient: str, msg: object) -> None:
        if recipient in self.inbox:
            super().send(sender, recipient, msg)
            return
        if sender in self.gone:
            return
        host = self.host_of[recipient]
        size = payload_bytes(msg)
        self.sent[sender] += size
        self._out[host].append(pack(sender.encode(), recipient.encode(), encode(msg)))
        self._idle[host].clear()
        self._wake[host].set()

    async def _sender(self, host: str) -> None:
        from services.link import LinkError

        seq = 0
        while True:
            await self._wake[host].wait()
            self._wake[host].clear()
            batch, self._out[host] = self._out[host], []
            if batch:
                payload = pack(*batch)
                for attempt in range(DIAL_ATTEMPTS):  # a process that is still starting refuses connections
                    try:
                        await self.hub.send(host, self.session, seq, LINK_KIND, payload)
                        break
                    except LinkError as exc:
                        if attempt == DIAL_ATTEMPTS - 1:
                            self.failed.append(str(exc))
                            self._idle[host].set()  # nothing more will leave: do not hold up a flush
                            return
                        await asyncio.sleep(0.2)
                seq += 1
            if not self._out[host]:
                self._idle[host].set()

    async def _receiver(self, host: str) -> None:
        from services.link import LinkError

        seq = 0
        while True:
            for attempt in range(DIAL_ATTEMPTS):  # as the sender: a process still starting refuses connections
                try:
                    data = await self.hub.receive(host, self.session, seq, LINK_KIND)
                    break
                except LinkError as exc:
                    if attempt == DIAL_ATTEMPTS - 1:
                        self.failed.append(str(exc))
                        return
                    await asyncio.sleep(0.2)
            seq += 1
            for envelope in unpack(data):
                sender, recipient, body = unpack(envelope)
                name, target = sender.decode(), recipient.decode()
                if self.host_of.get(name) != host or target not in self.inbox:
                    continue  # a process speaks only for the parties it hosts
                msg = decode(body)
                self.received[target] += payload_bytes(msg)
                if target not in self.gone:
                    self.inbox[target].put_nowait((name, msg))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued message was written to its link (or ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(idle.wait() for idle in self._idle.values())), timeout)

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()


def _spec_fields(spec: QuerySpec) -> str:
    """The spec as the wire carries it (hex of the protobuf): every field, deadline and sharing included."""
    from services.convert import spec_to_proto

    return str(spec_to_proto(spec).SerializeToString().hex())


def _spec_from(fields: str) -> QuerySpec:
    from services.convert import spec_from_proto
    from services.wire.mpcdp.v1 import federation_pb2 as pb

    return spec_from_proto(pb.QuerySpec.FromString(bytes.fromhex(fields)))


async def _serve_hub(name: str, certs: Any, addresses: Mapping[str, str], port: int) -> tuple[Any, Any]:
    from services.link import Hub
    from services.server import start
    from services.tls import Identity

    identity = Identity(name, certs)
    hub = Hub(identity, lambda peer: addresses[peer], lambda who: who in addresses and who != name)
    server, _ = await start(identity, f"127.0.0.1:{port}", [hub.service()])
    return hub, server


async def _worker(config_path: str) -> int:
    import json
    import sys
    from pathlib import Path

    from services.link import LinkError

    config = json.loads(Path(config_path).read_text())
    data = json.loads(Path(config["data"]).read_text())
    me = config["name"]
    hub, server = await _serve_hub(me, config["certs"], config["addresses"], config["port"])
    spec = _spec_from(config["spec"])
    query = MaskedQuery.of(spec, config["quorum"])
    local = list(data)
    net = LinkNetwork(hub, spec.session_id, local, config["host_of"])
    net.start([h for h in config["addresses"] if h != me])
    policy = PartyPolicy(allow_exact=True)
    stop = config.get("stop", {})
    tasks = [
        asyncio.ensure_future(
            PartyDriver(MaskedParty(p, query, data[p], policy), net, config["round_timeout"], stop=stop.get(p)).run()
        )
        for p in local
    ]
    await asyncio.wait(tasks, timeout=config["timeout"])
    failed = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    for exc in failed[:5]:
        print(f"{me}: a party stopped: {exc!r}", file=sys.stderr, flush=True)
    await net.flush()
    print(json.dumps({"sent": dict(net.sent), "received": dict(net.received), "cpu": time.process_time()}), flush=True)
    with contextlib.suppress(LinkError, TimeoutError):  # the coordinator has read what it needs: links may close
        await hub.receive(COORDINATOR, spec.session_id, 0, BYE, timeout=config["timeout"])
    net.close()
    await hub.close()
    await server.stop(None)
    return 0


async def run_across_processes(
    query: MaskedQuery,
    data: Mapping[str, Any],
    workers: int = 2,
    stop: Mapping[str, str] | None = None,
    round_timeout: float = 30 * ROUND_TIMEOUT,
    timeout: float = 600.0,
) -> SwarmRun:
    """The parties spread over ``workers`` processes (many parties each), the coordinator here; every
    message between processes goes over mutually authenticated links (services/link.py), batched.

    ``round_timeout`` is long by default: a worker computing hundreds of parties' masks in one burst can
    leave its links quiet for seconds on a loaded machine, and a round closes after that much silence."""
    import json
    import os
    import sys
    import tempfile
    from pathlib import Path

    import numpy as np

    from services.launch import Processes, reserve_ports
    from services.link import LinkError
    from services.tls import Identity, init_certs

    spec = query.spec
    hosts = [f"worker-{i + 1}" for i in range(workers)]
    host_of = {p: hosts[i % workers] for i, p in enumerate(spec.parties)}
    host_of[COORDINATOR] = COORDINATOR
    with tempfile.TemporaryDirectory(prefix="mpcdp-swarm-") as tmp:
        folder = Path(tmp)
        certs = folder / "certs"
        init_certs([COORDINATOR, *hosts], certs)
        held = reserve_ports([COORDINATOR, *hosts])
        ports = {name: sock.getsockname()[1] for name, sock in held.items()}
        addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        processes = Processes(folder / "logs")
        hub, server = await _serve_hub(COORDINATOR, certs, addresses, ports[COORDINATOR])
        try:
            for host in hosts:
                mine = {p: np.asarray(data[p]).tolist() for p in spec.parties if host_of[p] == host}
                data_file = folder / f"{host}.data.json"
                fd = os.open(data_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump(mine, fh)
                config = {
                    "name": host,
                    "port": ports[host],
                    "certs": str(certs),
                    "addresses": addresses,
                    "host_of": host_of,
                    "data": str(data_file),
                    "spec": _spec_fields(spec),
                    "quorum": query.quorum.size,
                    "stop": {p: s for p, s in (stop or {}).items() if host_of[p] == host},
                    "round_timeout": round_timeout,
                    "timeout": timeout,
                }
                (folder / f"{host}.json").write_text(json.dumps(config))
                processes.start(host, [sys.executable, "-m", "services.swarm", str(folder / f"{host}.json")])
            try:  # each port held until its worker serves on it (SO_REUSEPORT): no other process takes it meanwhile
                for host in hosts:
                    await processes.wait_serving(host, Identity(COORDINATOR, certs), addresses[host])
            finally:
                for sock in held.values():
                    sock.close()
            net = LinkNetwork(hub, spec.session_id, [COORDINATOR], host_of)
            net.start(hosts)
            start, cpu = time.perf_counter(), time.process_time()
            coordinator = CoordinatorDriver(query, net, round_timeout, first_timeout=60.0)
            try:
                release: Release | None = await coordinator.run()
                error = ""
            except ProtocolError as exc:
                release, error = None, str(exc)
                coordinator.abort(error)
            await net.flush()
            for host in hosts:  # the workers close their links only once the coordinator is done
                with contextlib.suppress(LinkError):
                    await hub.send(host, spec.session_id, 0, BYE, b"")
            seconds = time.perf_counter() - start
            if release is None and net.failed:
                error += f" (links: {'; '.join(net.failed[:3])})"
            cpu_seconds = time.process_time() - cpu
            sent, received = dict(net.sent), dict(net.received)
            for host in hosts:
                proc = processes.procs[host]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
                for line in processes.log(host, tail=1 << 24).splitlines():
                    if line.startswith("{"):
                        doc = json.loads(line)
                        for k, v in doc["sent"].items():
                            sent[k] = sent.get(k, 0) + v
                        for k, v in doc["received"].items():
                            received[k] = received.get(k, 0) + v
                        cpu_seconds += doc["cpu"]
            net.close()
        finally:
            processes.stop()
            await hub.close()
            await server.stop(None)
        return SwarmRun(
            release, error, seconds, cpu_seconds, sent, received, coordinator.late, coordinator.session.releases
        )


if __name__ == "__main__":
    import sys as _sys

    _sys.exit(asyncio.run(_worker(_sys.argv[1])))
