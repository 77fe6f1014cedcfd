"""The text node: a gRPC adapter over :mod:`mpcdp.text.sanitizer`.

A party runs it inside its own trust boundary; texts are sanitised before they
leave it. The node is a member of the federation (role ``text``): it listens
with its federation certificate and serves only clients whose certificate the
federation's CA signed (:class:`services.tls.Identity`). It serves
``mpcdp.v1.TextSanitizer``, gRPC health checking (SERVING once the embedding
and neighbour table are loaded) and reflection. Neither texts nor their
sanitised forms are logged or echoed in errors.

Availability (one client must not stall the node): the server is asyncio
(:func:`services.server.start`, whose guard closes idle streams and refuses
undecodable bytes), so an open stream costs no thread and health checks always
answer. Sanitisation runs on a small thread pool off the event loop; every
request waits in a bounded queue, each client (a federation certificate's
name, or the peer address when insecure) may have only a few requests queued
or running, and a request over either bound is refused at once with
RESOURCE_EXHAUSTED. Requests are bounded in characters and, before decoding,
in bytes. Refusals go to the audit log, without any text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from collections import Counter
from concurrent import futures

import grpc

from mpcdp.prg import system_random
from mpcdp.registry import UnknownName
from mpcdp.text.mechanisms import TEXT_MECHANISMS, EpsilonTooSmallError
from mpcdp.text.sanitizer import Sanitizer
from services import audit, server
from services.text_options import TextLimits
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc

SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextSanitizer"].full_name


class TextSanitizerService(text_pb2_grpc.TextSanitizerServicer):
    """The ``TextSanitizer`` handlers; every method runs on the server's event loop."""

    def __init__(
        self,
        sanitizer: Sanitizer,
        limits: TextLimits = TextLimits(),
        insecure: bool = False,
        idle_timeout: float = server.Limits.idle_timeout,
    ):
        self.sanitizer, self.limits, self.insecure, self.idle_timeout = sanitizer, limits, insecure, idle_timeout
        self._pool = futures.ThreadPoolExecutor(limits.workers, thread_name_prefix="text-sanitize")
        self._in_flight = 0
        self._per_client: Counter[str] = Counter()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _client(self, context) -> str:
        name = caller(context, insecure=self.insecure)
        return name or context.peer().rsplit(":", 1)[0]

    async def _check(self, request, context) -> None:
        if not request.text.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: text is empty")
        if len(request.text) > self.limits.max_text_chars:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request {request.id!r}: text has {len(request.text)} characters, "
                f"more than this node's limit of {self.limits.max_text_chars}",
            )
        try:
            TEXT_MECHANISMS.get(request.mechanism)
        except UnknownName as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: {exc}")
        if not (math.isfinite(request.epsilon) and request.epsilon > 0):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: epsilon must be a positive finite number"
            )

    async def _admit(self, client: str, request, context) -> None:
        if self._per_client[client] >= self.limits.per_client:
            audit.record("refused", client=client, status="RESOURCE_EXHAUSTED", reason="per-client limit")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request {request.id!r}: this client already has {self.limits.per_client} "
                f"requests queued or running, the most this node allows; wait for their answers",
            )
        if self._in_flight >= self.limits.queue:
            audit.record("refused", client=client, status="RESOURCE_EXHAUSTED", reason="queue full")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request {request.id!r}: the node is busy ({self._in_flight} requests queued or running); retry later",
            )
        self._per_client[client] += 1
        self._in_flight += 1

    def _release(self, client: str) -> None:
        self._in_flight -= 1
        self._per_client[client] -= 1
        if not self._per_client[client]:
            del self._per_client[client]

    async def Sanitize(self, request_iterator, context):
        client = self._client(context)
        rng = system_random("text-node")  # one stream per RPC, used by one request at a time
        loop = asyncio.get_running_loop()
        async for request in request_iterator:
            await self._check(request, context)
            await self._admit(client, request, context)
            try:
                [result] = await loop.run_in_executor(
                    self._pool, self.sanitizer.sanitize, [request.text], request.mechanism, request.epsilon, rng
                )
            except EpsilonTooSmallError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: {exc}")
            finally:
                self._release(client)
            c = result.cost
            yield text_pb2.SanitizeResponse(
                id=request.id,
                text=result.text,
                cost=text_pb2.PrivacyCost(
                    mechanism=c.mechanism,
                    epsilon_per_word=c.epsilon_per_word,
                    words_perturbed=c.words_perturbed,
                    oov_words=c.oov_words,
                    oov_released=c.oov_released,
                    text_epsilon_bound=c.epsilon_text_bound,
                    symbols_released=c.symbols_released,
                ),
            )

    async def Describe(self, request, context):
        s, limits = self.sanitizer, self.limits
        return text_pb2.DescribeResponse(
            vocabulary_size=s.embedding.size,
            dimension=s.embedding.dim,
            embedding_fingerprint=s.table.fingerprint if s.table is not None else s.embedding.fingerprint(),
            diameter=s.diameter,
            min_distance=s.table.delta_min if s.table is not None else 0.0,
            max_text_chars=limits.max_text_chars,
            oov_policy=s.oov,
            symbol_policy=s.symbols,
            max_requests_per_client=limits.per_client,
            idle_timeout_seconds=self.idle_timeout,
            mechanisms=[
                text_pb2.MechanismInfo(
                    name=kind.name, min_epsilon_exclusive=kind.min_epsilon(s.embedding.size, s.table)
                )
                for kind in TEXT_MECHANISMS
            ],
        )


async def start(
    sanitizer: Sanitizer,
    address: str,
    identity: Identity,
    limits: TextLimits = TextLimits(),
    server_limits: server.Limits | None = None,
) -> tuple[grpc.aio.Server, int, TextSanitizerService]:
    """A started asyncio server on ``address`` (port 0: any free port), health SERVING.

    Messages are bounded by what a request of ``limits.max_text_chars`` characters
    can need, and at most by ``server_limits``' own bound.
    """
    server_limits = server_limits or server.Limits()
    server_limits = dataclasses.replace(
        server_limits, max_message_bytes=min(server_limits.max_message_bytes, limits.max_message_bytes)
    )
    service = TextSanitizerService(sanitizer, limits, identity.insecure, server_limits.idle_timeout)
    grpc_server, port = await server.start(
        identity, address, [(text_pb2_grpc.add_TextSanitizerServicer_to_server, service, SERVICE_NAME)], server_limits
    )
    return grpc_server, port, service


class RunningNode:
    """A text node served by its own event loop on a background thread (for tests and embedding)."""

    def __init__(
        self,
        sanitizer: Sanitizer,
        address: str,
        identity: Identity,
        limits: TextLimits = TextLimits(),
        server_limits: server.Limits | None = None,
    ):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="text-node", daemon=True)
        self._thread.start()
        self._server, self.port, self._service = asyncio.run_coroutine_threadsafe(
            start(sanitizer, address, identity, limits, server_limits), self._loop
        ).result()

    def stop(self, grace: float | None = None) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).result()
        self._service.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def build_server(
    sanitizer: Sanitizer,
    address: str,
    identity: Identity,
    limits: TextLimits = TextLimits(),
    server_limits: server.Limits | None = None,
) -> tuple[RunningNode, int]:
    """A started node on ``address`` (port 0: any free port), health SERVING; returns it and its port.

    ``identity`` gives the transport: mutual TLS under the federation's CA, or
    plaintext when it is insecure.
    """
    node = RunningNode(sanitizer, address, identity, limits, server_limits)
    return node, node.port
