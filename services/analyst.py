"""The analyst: ask a federation's coordinator for a statistic.

    from services.analyst import Analyst
    async with Analyst(federation, "analyst") as c:
        r = await c.query("mean", column="raise", bounds=(0, 10_000), epsilon=1.0)
    r.value, r.intervals, r.epsilon, r.parties

or synchronously: ``services.analyst.query(federation, "analyst", "mean", ...)``.

The client checks the presentation options (confidence) before sending, as
the coordinator does again before any budget is spent. If the release
stream breaks after the session started, the QueryError names the session
id, and ``Analyst.fetch(session_id)`` (``mpcdp query --fetch``) gets the
release the coordinator kept, at no further cost.

Several statistics in one session (one proposal and one partial sum per party
carrying them all, their losses composed on each ledger once; with ``quorum``
a many-party session)::

    rs = await c.query_batch([dict(statistic="sum", column="raise", bounds=(0, 10_000)),
                              dict(statistic="count")])
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from mpcdp.protocol import QuerySpec, SpecError
from mpcdp.protocol.spec import MAX_DIMENSION
from services import convert, query_link, releases, streams
from services.channels import Channels
from services.federation import Federation
from services.tls import Identity
from services.wire.mpcdp.v1 import federation_pb2 as pb

T = TypeVar("T")
TRANSPORTS = ("auto", "link", "grpc")  # how an Analyst reaches the coordinator (Analyst's doc)


class QueryError(Exception):
    """The federation refused or aborted a query; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, session_id: str = ""):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.details = message
        self.session_id = session_id


@dataclass(frozen=True)
class QueryResult:
    """A release: the answer, its noise and intervals, and what it cost.

    Vector entries are float64 arrays; a vector entry's per-coordinate interval
    is ``intervals[key] == {"lower": array, "upper": array}``.
    """

    session_id: str
    statistic: str
    result: dict
    parties: tuple[str, ...]
    epsilon: float | None  # None: an exact release
    delta: float
    mechanism: str | None
    noise_std: dict
    intervals: dict
    confidence: float | None
    quorum: int | None = None  # a many-party release: at least this many parties had to finish
    dropped: tuple[str, ...] = ()  # ... and these were not counted (``parties`` are the counted ones)
    index: int = 0  # which statistic of its session's batch (0: the first, or the only one)
    sharing: str | None = None  # how the parties shared ("keyed", "seeded", "full"; None: the many-party protocol)
    sharing_note: str = ""  # why the coordinator ran seeded where keyed was asked ("": as asked)
    batch_size: int = 1  # statistics released by its session (a batch: more than one)
    batch_epsilon: float | None = None  # a batch's losses composed: what every ledger was charged for the session
    batch_delta: float = 0.0

    @property
    def value(self):
        return self.result[self.statistic]

    @property
    def exact(self) -> bool:
        """Whether the release is exact (no differential privacy)."""
        return self.epsilon is None

    def to_json(self) -> str:
        return json.dumps(
            asdict(self),
            indent=2,
            sort_keys=True,
            default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v),
        )

    def to_text(self) -> str:
        """The release for people: the statistic, its parts, what it cost, its intervals and noise."""
        lines = [f"{self.statistic}: {_fmt(self.value)}"]
        for key, value in self.result.items():
            if key != self.statistic:
                lines.append(f"  {key}: {_fmt(value)}")
        if self.exact:
            lines.append("exact release (no differential privacy)")
        else:
            spent = f"epsilon for the {len(self.parties)} counted parties" if self.quorum else "epsilon spent"
            lines.append(
                f"{spent}: {self.epsilon:g}"
                + (f", delta {self.delta:g}" if self.delta else "")
                + f" ({self.mechanism} noise, shared among the parties)"
            )
            level = f"{100 * (self.confidence or 0.0):g}%"
            for key, interval in self.intervals.items():
                lines.extend(_interval_lines(level, key, interval))
            for key, std in self.noise_std.items():
                lines.append(f"  noise std on {key}: {_fmt(std)}")
        if self.quorum:
            lines.append(
                f"counted {len(self.parties)} of {len(self.parties) + len(self.dropped)} parties "
                f"(quorum {self.quorum}): {', '.join(self.parties)}"
                + (f"; dropped: {', '.join(self.dropped)}" if self.dropped else "")
            )
        else:
            lines.append(f"parties: {', '.join(self.parties)}")
        if self.sharing_note:
            lines.append(f"sharing: {self.sharing} instead of keyed ({self.sharing_note})")
        if self.batch_size > 1:
            cost = "exact" if self.batch_epsilon is None else f"epsilon {self.batch_epsilon:g} composed"
            if self.batch_epsilon is not None and self.batch_delta:
                cost += f", delta {self.batch_delta:g}"
            lines.append(f"batch: statistic {self.index + 1} of {self.batch_size} in one session ({cost})")
        return "\n".join(lines)

    @classmethod
    def from_proto(cls, reply: pb.QueryReply, streamed: dict | None = None, categories=()) -> QueryResult:
        """The result of a QueryReply and the vectors streamed after it (keyed (name, ReleaseVector.Part));
        with ``categories`` (the labels that followed the reply), the entry named like the statistic is a
        dict ``{category: value}`` and its interval ``{category: [lower, upper]}``."""
        streamed = dict(streamed or {})
        name = convert.statistic_name(reply.statistic)
        result, noise_std, intervals = {}, {}, {}
        for entry in reply.entries:
            key = entry.name
            labels = categories if categories and key == name else ()
            value = _value(entry.value, streamed.pop((key, pb.ReleaseVector.PART_VALUE), None), labels)
            result[key] = value  # None: undefined (the mean of no records)
            if entry.HasField("noise_std"):
                noise_std[key] = entry.noise_std
            if entry.HasField("interval"):
                intervals[key] = _interval(entry.interval, key, streamed, labels)
        if streamed:
            raise ValueError(f"vectors streamed for no entry: {sorted(k for k, _ in streamed)}")
        exact = not reply.HasField("epsilon")
        return cls(
            session_id=reply.session_id.hex(),
            statistic=name,
            result=result,
            parties=tuple(reply.parties),
            epsilon=None if exact else reply.epsilon,
            delta=reply.delta,
            mechanism=None if exact else _mechanism(reply.mechanism),
            noise_std=noise_std,
            intervals=intervals,
            confidence=None if exact else reply.confidence,
            quorum=reply.quorum if reply.HasField("quorum") else None,
            dropped=tuple(reply.dropped),
            index=reply.index,
            sharing=convert.sharing_name(reply.sharing).value if reply.sharing else None,
            sharing_note=reply.sharing_note,
            batch_size=max(reply.batch_size, 1),
            batch_epsilon=reply.batch_epsilon if reply.HasField("batch_epsilon") else None,
            batch_delta=reply.batch_delta,
        )


def _mechanism(value: int) -> str:
    from mpcdp.dp.mechanisms import CENTRAL_MECHANISMS

    return CENTRAL_MECHANISMS.by_wire(value).name


def _value(values: pb.Values, streamed, labels=()):
    """A Values message as a number, a label, a float64 array, or (with ``labels``) a dict of cells."""
    kind = values.WhichOneof("values")
    if kind in ("scalar", "integer", "label"):
        return getattr(values, kind)
    if kind is None:
        return None
    if kind == "packed":
        vector = np.frombuffer(values.packed, dtype="<f8")
    elif streamed is None or streamed.size != values.streamed:
        raise ValueError(f"a vector of {values.streamed} elements was announced but not streamed")
    else:
        vector = streamed
    if labels:
        if len(labels) != vector.size:
            raise ValueError(f"{vector.size} cells but {len(labels)} category labels")
        return dict(zip(labels, vector.tolist(), strict=True))
    return vector


def _interval(interval: pb.Interval, key: str, streamed: dict, labels=()):
    """An Interval as [lower, upper], {"half_width": w}, {"lower": array, "upper": array}, per category
    {category: [lower, upper]}, or None (unavailable)."""
    kind = interval.WhichOneof("bounds")
    if kind == "half_width":
        return {"half_width": interval.half_width}
    if kind != "ends":
        return None
    lower = _value(interval.ends.lower, streamed.pop((key, pb.ReleaseVector.PART_LOWER), None))
    upper = _value(interval.ends.upper, streamed.pop((key, pb.ReleaseVector.PART_UPPER), None))
    if not isinstance(lower, np.ndarray):
        return [lower, upper]
    if labels:
        return {c: [lo, hi] for c, lo, hi in zip(labels, lower.tolist(), upper.tolist(), strict=True)}
    return {"lower": lower, "upper": upper}


_PARTS = (pb.ReleaseVector.PART_VALUE, pb.ReleaseVector.PART_LOWER, pb.ReleaseVector.PART_UPPER)


class _ReleaseStream:
    """Reassembles the vectors streamed after a QueryReply (:class:`services.streams.Assembler` each)."""

    def __init__(self, max_length: int = MAX_DIMENSION):
        self.max_length = max_length  # no release vector is longer than the query's dimension or categories
        self.vectors: dict[tuple[str, int], np.ndarray] = {}
        self.categories: list[str] = []
        self._current: tuple[tuple[str, int], streams.Assembler] | None = None

    def add(self, part: pb.QueryReplyPart | releases.Chunk) -> None:
        if isinstance(part, releases.Chunk):  # a vector's chunk as it came off the wire
            if self._current is None:
                raise ValueError("unexpected chunk part after the reply")
            return self._current[1].add(part.data, part.offset)
        kind = part.WhichOneof("part")
        if kind == "labels" and self._current is None and not self.vectors:
            if len(self.categories) + len(part.labels.categories) > self.max_length:
                raise ValueError(f"more than {self.max_length} histogram labels")
            self.categories.extend(part.labels.categories)
        elif kind == "vector":
            self._finish()
            v = part.vector
            key = (v.name, v.part)
            if key in self.vectors or v.part not in _PARTS:
                raise ValueError(f"vector {v.name!r} announced twice or as an unknown part")
            if v.length > self.max_length:
                raise ValueError(
                    f"vector {v.name!r} announced with {v.length} elements; "
                    f"this query's vectors have at most {self.max_length}"
                )
            self._current = key, streams.Assembler(v.length, convert.RING_BYTES)
            self._current[1].add(v.first.data, v.first.offset)
        elif kind == "chunk" and self._current is not None:
            self._current[1].add(part.chunk.data, part.chunk.offset)
        else:
            raise ValueError(f"unexpected {kind or 'empty'} part after the reply")

    def _finish(self) -> None:
        if self._current is not None:
            key, assembler = self._current
            self.vectors[key] = assembler.array("<f8")  # StreamError (a ValueError) if it ended early
            self._current = None

    def finish(self) -> dict:
        self._finish()
        return self.vectors


class Analyst:
    """A channel to the coordinator, authenticated as client ``name``. ``transport``: "auto" asks over the
    coordinator's query link where it serves one (:mod:`services.query_link`: no gRPC call per query), else
    over gRPC; "link" or "grpc" forces one. Either gives the same releases and the same errors."""

    def __init__(self, federation: Federation, name: str, insecure: bool = False, transport: str = "auto"):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        coordinator = federation.coordinator()
        self._parties = tuple(federation.names("party"))
        self.identity = Identity(name, federation.certs, insecure)
        self._channels = Channels(self.identity, federation.address)
        self._stub = self._channels.stub(coordinator.name, releases.CoordinatorStub)
        self.transport = transport
        self._coordinator = (coordinator.name, federation.address)
        self._link: query_link.AnalystLink | None = None

    async def __aenter__(self) -> Analyst:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await query_link.release(link)
        await self._channels.close()

    async def _call(self, method: str, request, timeout: float):
        """A ``method`` ("Query", "Fetch") call: over the query link (see ``transport``), else over gRPC."""
        if self.transport != "grpc":
            if self._link is None:
                name, address = self._coordinator
                self._link = query_link.shared(self.identity, name, address(name))
            if self.transport == "link" or await self._link.serves() is None:
                return self._link.call(method, request.SerializeToString(), timeout)
        return getattr(self._stub, method)(request, timeout=timeout, wait_for_ready=False)

    async def query(
        self,
        statistic: str,
        column: str = "value",
        bounds=(0.0, 1.0),
        epsilon: float | None = None,
        *,
        timeout: float = 30.0,
        confidence: float = 0.95,
        quorum: int | None = None,
        **options,
    ) -> QueryResult:
        """Run one query; raises QueryError with the federation's diagnostic if it is refused.

        ``options``: ``delta``, ``dimension``, ``categories``, ``parties``, ``frac_bits``, ``max_records``,
        ``mechanism``, ``colluders``, ``sharing`` (see :func:`_spec` for their defaults), and ``fraction``
        (threshold), ``quantile`` and ``edges`` (quantile, median) for the comparison statistics the parties
        compute under MPC (:mod:`services.mpc_node`). ``quorum``: the many-party protocol
        (:mod:`services.many_party`), which completes when at least that many parties finish, whoever drops
        after accepting; the result names the counted parties and restates epsilon for them."""
        if quorum is not None:
            _secure_sum(statistic, "quorum: {} is computed under MPC by every party; a quorum is for the secure sums")
        spec = _spec(statistic, column, bounds, epsilon, **options)
        _check_locally(spec, confidence, self._parties)
        request = pb.QueryRequest(spec=spec, timeout_seconds=timeout, confidence=confidence, quorum=quorum)
        call = await self._call("Query", request, timeout + 5.0)
        return _one(await self._receive(call, _longest(spec)))

    async def query_batch(
        self,
        questions: Sequence[Mapping[str, Any]],
        *,
        quorum: int | None = None,
        parties=(),
        colluders: int = 1,
        sharing: str = "keyed",
        timeout: float = 30.0,
        confidence: float = 0.95,
    ) -> list[QueryResult]:
        """Ask several statistics in one session: one proposal and one partial sum (or, with ``quorum``, one key
        exchange and one masked vector) per party carrying them all, one release per question, in order. Each
        question is the per-statistic keywords of :meth:`query` (``statistic``, ``column``, ``bounds``,
        ``epsilon``, ``delta``, ``dimension``, ``categories``, ...); the parties, colluders, ``sharing``, deadline
        (``timeout``) and ``quorum`` are the session's. Each party checks every statistic against its policy
        (refusing one refuses the session, naming the statistic) and is charged their losses composed, at once
        (the whole batch or nothing); each release states its own loss and the batch's composed. Secure sums
        only (sum, count, mean, variance, histogram)."""
        if not questions:
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "a batch asks at least one statistic")
        specs = []
        for question in questions:
            ask = dict(question)
            statistic = ask.pop("statistic", None)
            if not isinstance(statistic, str):
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "each question of a batch names its statistic")
            _secure_sum(statistic, "a batch asks secure sums; {} is computed under MPC on its own")
            shared = [key for key in SESSION_KEYWORDS if key in ask]
            if shared:
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a question of a batch: {', '.join(shared)} {'is' if len(shared) == 1 else 'are'} the session's: "
                    "give it once, to query_batch",
                )
            try:
                spec = _spec(statistic, parties=parties, colluders=colluders, sharing=sharing, **ask)
            except TypeError as exc:  # a keyword _spec does not take, or one that is the session's
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"a question of a batch: {exc}") from None
            _check_locally(spec, confidence, self._parties)
            specs.append(spec)
        request = pb.QueryRequest(
            spec=specs[0], batch=specs[1:], timeout_seconds=timeout, confidence=confidence, quorum=quorum
        )
        call = await self._call("Query", request, timeout + 5.0)
        released = await self._receive(call, max(_longest(s) for s in specs))
        if [r.index for r in released] != list(range(len(specs))):
            raise QueryError(
                grpc.StatusCode.DATA_LOSS,
                f"malformed release from the coordinator: {len(released)} releases for {len(specs)} statistics",
                released[0].session_id if released else "",
            )
        return released

    async def fetch(self, session_id: str, timeout: float = 30.0) -> QueryResult:
        """The release of a session this client asked for, kept by the coordinator; costs nothing (a batch's:
        :meth:`fetch_batch`)."""
        return _one(await self.fetch_batch(session_id, timeout))

    async def fetch_batch(self, session_id: str, timeout: float = 30.0) -> list[QueryResult]:
        """Every release of a session this client asked for (one per statistic of its batch); costs nothing."""
        try:
            sid = bytes.fromhex(session_id)
        except ValueError:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT, f"a session id is 32 hex digits, got {session_id!r}"
            ) from None
        call = await self._call("Fetch", pb.FetchRequest(session_id=sid), timeout)
        return await self._receive(call, MAX_DIMENSION)

    async def _receive(self, call, max_length: int) -> list[QueryResult]:
        """The releases of a reply stream: each a QueryReply and the parts after it, up to the next reply."""
        got: list[tuple[pb.QueryReply, _ReleaseStream]] = []
        sid = ""
        try:
            sid = dict(await call.initial_metadata() or ()).get("mpcdp-session-id", "")
            async for part in call:
                if not isinstance(part, releases.Chunk) and part.WhichOneof("part") == "reply":
                    got.append((part.reply, _ReleaseStream(max_length)))
                elif not got:
                    raise ValueError("the release does not start with its reply")
                else:
                    got[-1][1].add(part)
            if not got:
                raise ValueError("the coordinator ended the release without a reply")
            return [QueryResult.from_proto(reply, rest.finish(), rest.categories) for reply, rest in got]
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            if (sid and got) or (sid and exc.code() in _BROKEN):
                details += (
                    f" (session {sid}: if the coordinator released it, `mpcdp query --fetch {sid}` "
                    f"gets it at no further cost)"
                )
            raise QueryError(exc.code(), details, sid) from None
        except ValueError as exc:
            call.cancel()
            raise QueryError(grpc.StatusCode.DATA_LOSS, f"malformed release from the coordinator: {exc}", sid) from None


SESSION_KEYWORDS = ("parties", "colluders", "sharing", "quorum", "timeout", "confidence")  # a batch's, not a question's


def _one(released: list[QueryResult]) -> QueryResult:
    if len(released) != 1:
        raise QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"session {released[0].session_id} released a batch of {len(released)} statistics: fetch_batch gets them",
            released[0].session_id,
        )
    return released[0]


def _longest(spec: pb.QuerySpec) -> int:
    """The longest vector a release of ``spec`` holds."""
    return max(spec.dimension, len(spec.categories), 1)


def _secure_sum(statistic: str, refusal: str) -> None:
    """Refuse (QueryError) a comparison statistic where only the secure sums can go (``refusal`` names it)."""
    from mpcdp.mpc.queries import COMPARISONS

    if statistic in COMPARISONS.names():
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, refusal.format(statistic))


def _spec(
    statistic: str,
    column: str = "value",
    bounds=(0.0, 1.0),
    epsilon: float | None = None,
    *,
    delta: float = 0.0,
    dimension: int = 1,
    categories=(),
    parties=(),
    frac_bits: int = 16,
    max_records: int = 0,
    mechanism: str = "discrete_laplace",
    colluders: int = 1,
    sharing: str = "keyed",
    fraction: float | None = None,
    quantile: float | None = None,
    edges=(),
) -> pb.QuerySpec:
    """The QuerySpec of one statistic (see :meth:`Analyst.query`); QueryError for an unknown name."""
    lo, hi = bounds
    try:
        wired = convert.statistic_wire(statistic), convert.sharing_wire(sharing), convert.mechanism_wire(mechanism)
    except SpecError as exc:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    return pb.QuerySpec(
        column=column,
        dimension=dimension,
        lower=lo,
        upper=hi,
        categories=list(categories),
        parties=list(parties),
        frac_bits=frac_bits,
        max_records=max_records,
        epsilon=epsilon,  # None: absent, an exact release
        delta=delta,
        colluders=colluders,
        fraction=fraction,  # None: absent (a threshold at 0 is a threshold)
        quantile=quantile,
        edges=list(edges),
        statistic=wired[0],
        sharing=wired[1],
        mechanism=wired[2] if epsilon is not None else pb.MECHANISM_UNSPECIFIED,
    )


_BROKEN = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
)  # how a cut connection or a client-side deadline ends a call


def _check_locally(spec: pb.QuerySpec, confidence: float, parties) -> None:
    """Refuse, before sending, a query whose release could not be described (QueryError). A spec the
    library refuses is left to the coordinator, whose answer names the field."""
    fields = convert.spec_fields(spec)
    fields.update(parties=fields["parties"] or parties, session_id=bytes(16), deadline=float("inf"))
    try:
        local = QuerySpec(**fields)
    except (ValueError, ArithmeticError):
        return
    try:
        releases.check_presentation(local, confidence)
    except SpecError as exc:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


def _once(federation: Federation, name: str, insecure: bool, ask: Callable[[Analyst], Awaitable[T]]) -> T:
    """Run ``ask`` on a fresh :class:`Analyst`, synchronously."""

    async def once() -> T:
        async with Analyst(federation, name, insecure, transport="grpc") as analyst:  # one call: no link
            return await ask(analyst)

    return asyncio.run(once())


def query(federation: Federation, name: str, statistic: str, insecure: bool = False, **kw) -> QueryResult:
    """Synchronous one-shot :meth:`Analyst.query`."""
    return _once(federation, name, insecure, lambda a: a.query(statistic, **kw))


def query_batch(federation: Federation, name: str, questions, insecure: bool = False, **kw) -> list[QueryResult]:
    """Synchronous one-shot :meth:`Analyst.query_batch`."""
    return _once(federation, name, insecure, lambda a: a.query_batch(questions, **kw))


def fetch(federation: Federation, name: str, session_id: str, insecure: bool = False) -> QueryResult:
    """Synchronous one-shot :meth:`Analyst.fetch`."""
    return _once(federation, name, insecure, lambda a: a.fetch(session_id))


def fetch_batch(federation: Federation, name: str, session_id: str, insecure: bool = False) -> list[QueryResult]:
    """Synchronous one-shot :meth:`Analyst.fetch_batch`: every release of the session (one unless a batch)."""
    return _once(federation, name, insecure, lambda a: a.fetch_batch(session_id))


def _interval_lines(level: str, key: str, interval) -> list[str]:
    """One line per interval: scalar [lo, hi], vector half-width or bounds, histogram cells."""
    if interval is None:
        return [f"  {level} interval for {key}: none (too few records for the noise; the count may be 0)"]
    if isinstance(interval, list):
        return [f"  {level} interval for {key}: [{_fmt(interval[0])}, {_fmt(interval[1])}]"]
    if "half_width" in interval:
        return [f"  {level} interval for each {key}: +/- {_fmt(interval['half_width'])}"]
    if set(interval) == {"lower", "upper"}:
        return [
            f"  {level} interval for {key}: lower {_fmt(np.asarray(interval['lower']))}, "
            f"upper {_fmt(np.asarray(interval['upper']))}"
        ]
    return [line for cell, iv in interval.items() for line in _interval_lines(level, f"{key}[{cell}]", iv)]


def _fmt(v) -> str:
    if isinstance(v, np.ndarray):
        v = v.tolist() if v.size <= 20 else v[:20].tolist() + ["..."]
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
