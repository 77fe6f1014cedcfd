"""The analyst's client: ask a federation's coordinator for a statistic.

    from services.client import Client
    async with Client(federation, "analyst") as c:
        r = await c.query("mean", column="raise", bounds=(0, 10_000), epsilon=1.0)
    r.value, r.intervals, r.epsilon, r.parties

or synchronously: ``services.client.query(federation, "analyst", "mean", ...)``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

import grpc
import numpy as np
from google.protobuf import json_format

from services.federation import Federation
from services.tls import Identity
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc


MAX_REPLY = 64 << 20  # a release of a 10^6-vector is ~8 MB
REPLY_OPTIONS = [("grpc.max_receive_message_length", MAX_REPLY)]


class QueryError(Exception):
    """The federation refused or aborted a query; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.details = message


@dataclass(frozen=True)
class QueryResult:
    """A release: the answer, its noise and intervals, and what it cost (vector entries are float64 arrays)."""

    session_id: str
    statistic: str
    result: dict
    parties: tuple[str, ...]
    exact: bool
    epsilon: float | None
    delta: float
    mechanism: str | None
    noise_std: dict
    intervals: dict
    confidence: float | None

    @property
    def value(self):
        return self.result[self.statistic]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True,
                          default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))

    @classmethod
    def from_proto(cls, reply: pb.QueryReply) -> "QueryResult":
        as_dict = json_format.MessageToDict
        return cls(
            session_id=reply.session_id.hex(), statistic=reply.statistic,
            result={**as_dict(reply.result),
                    **{k: np.frombuffer(v, dtype="<f8") for k, v in reply.vectors.items()}},
            parties=tuple(reply.parties), exact=reply.exact,
            epsilon=None if reply.exact else reply.epsilon, delta=reply.delta,
            mechanism=reply.mechanism or None, noise_std=as_dict(reply.noise),
            intervals=as_dict(reply.intervals), confidence=None if reply.exact else reply.confidence)


class Client:
    """A channel to the coordinator, authenticated as client ``name``."""

    def __init__(self, federation: Federation, name: str, insecure: bool = False):
        coordinator = federation.coordinator()
        self.identity = Identity(name, federation.certs, insecure)
        self._channel = self.identity.channel(coordinator.address, coordinator.name, options=REPLY_OPTIONS)
        self._stub = pb_grpc.CoordinatorStub(self._channel)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def query(self, statistic: str, column: str = "value", bounds=(0.0, 1.0), epsilon: float | None = None,
                    *, delta: float = 0.0, dimension: int = 1, categories=(), parties=(), frac_bits: int = 16,
                    max_records: int = 0, mechanism: str = "discrete_laplace", colluders: int = 1,
                    sharing: str = "seeded", timeout: float = 30.0, confidence: float = 0.95) -> QueryResult:
        """Run one query; raises QueryError with the federation's diagnostic if it is refused."""
        lo, hi = bounds
        spec = pb.QuerySpec(statistic=statistic, column=column, dimension=dimension, lower=lo, upper=hi,
                            categories=list(categories), parties=list(parties), frac_bits=frac_bits,
                            max_records=max_records, exact=epsilon is None,
                            epsilon=0.0 if epsilon is None else epsilon, delta=delta, mechanism=mechanism,
                            colluders=colluders, sharing=sharing)
        request = pb.QueryRequest(spec=spec, timeout_seconds=timeout, confidence=confidence)
        try:
            reply = await self._stub.Query(request, timeout=timeout + 5.0, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            raise QueryError(exc.code(), exc.details() or "") from None
        return QueryResult.from_proto(reply)


def query(federation: Federation, name: str, statistic: str, insecure: bool = False, **kw) -> QueryResult:
    """Synchronous one-shot :meth:`Client.query`."""

    async def once():
        async with Client(federation, name, insecure) as client:
            return await client.query(statistic, **kw)

    return asyncio.run(once())
