"""The analyst's queries over a link to the coordinator: no gRPC call per query.

The coordinator serves its clients on a link hub of their own (:class:`QueryService`, a second
:class:`services.link.Hub` beside the parties' one): it accepts links only from the federation's
clients, and only this module's kinds are pushed on it, so a client never reaches the party protocol
(a party-protocol kind sent there is held like any message nobody asked for, charged against the
client's small allowance, and expires; beyond that allowance the link is closed). The parties' hub
still accepts parties only. ``Link/Port`` on the coordinator's gRPC address answers each caller with
the port of its hub (a client: the clients' hub), and both hubs listen beside the gRPC server.

A call is one request message (``query`` or ``fetch``: the serialized ``QueryRequest`` or
``FetchRequest``) under a fresh 16-byte request id, the link's session id; the replies are messages
under the same id in order, rounds 0, 1, 2, ...: ``head`` (the initial metadata, the session id),
``part`` (one QueryReplyPart in its wire form each, :func:`services.releases.wire_pieces`), then ``end``
(a status code and its details; OK for a release sent whole). The coordinator runs its gRPC handlers
``Query`` and ``Fetch`` unchanged, with the same guard as its gRPC server
(:class:`services.server.Guard`: undecodable bytes are INVALID_ARGUMENT, an unexpected exception
INTERNAL with the fixed message, audited), through :class:`LinkContext`, the part of a servicer context
they use: who calls is the link's certificate name. An analyst that gives up sends ``cancel``, and a
link that drops gives up every call of that client, as gRPC cancels a call: a handler that has not sent
its header yet (no session started) is cancelled; after the header its session runs to its end (its
release kept for Fetch) and nothing more is sent. Every call ends with its ``end`` while the link lives
(CANCELLED for one given up), and only then is its slot free, on both sides.

Bounds: at most ``max_in_flight`` calls per client at once, counted until each call (and so a session
given up on) ends; the analyst waits for a free slot before sending, as gRPC waits for an HTTP/2
stream, so a request beyond the bound, a reused request id or a second ``hello`` on one link is a
client breaking the rules: its link is closed (one audit line, the client told why) and its calls given
up. A request at most ``max_request_bytes`` (the gRPC server's bound; the analyst's hub has the same, so
a longer request fails there with RESOURCE_EXHAUSTED, as with gRPC; one that reaches the coordinator
closes the link). A client's replies not yet written: its calls wait beyond ``UNWRITTEN_BYTES`` (a
client that does not read holds its calls, as gRPC's flow control does), and beyond ``MAX_QUEUED_BYTES``
its link is closed. What a client sends ahead of anyone asking is held at most ``HELD_SECONDS``. Under
``--insecure`` the clients' hub does not listen.

One link per client at a time: the clients' hub answers a client by its name, so two links of one name at
once would receive each other's replies; a second one is refused while the first lives. The analyst
(:class:`AnalystLink`) therefore shares one link per coordinator among the
:class:`services.analyst.Analyst` objects of an event loop with the same identity (:func:`shared`), and
probes it once (``hello``, answered ``welcome``) before its first call; where that fails (another
process holds this client's link, an older coordinator serves none, or ``--insecure``, where ``Link/Port``
cannot tell a client from a party) it asks over gRPC instead, and probes again ``PROBE_AGAIN`` seconds
later.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from services import releases
from services.futures import retrieved
from services.link import Hub, LinkError
from services.node_limits import MAX_MESSAGE, Limits
from services.server import Guard
from services.streams import CHUNK_BYTES
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.query_link")

QUERY, FETCH = "query", "fetch"  # requests: the method's request message, round 0
CANCEL = "cancel"  # the analyst gave up on its call
HELLO, WELCOME = "hello", "welcome"  # the analyst's probe, and the coordinator's answer
HEAD, PART, END = "head", "part", "end"  # replies: rounds 0, 1, 2, ... in order
METHODS = {QUERY: "Query", FETCH: "Fetch"}
SERVICE = "/mpcdp.v1.Coordinator"

MAX_IN_FLIGHT = Limits.max_concurrent_streams  # calls per client at once, as one gRPC connection allows
HELD_SECONDS = 10.0  # a client's messages nobody asks for (none should come) are dropped after this long
UNWRITTEN_BYTES = 16 * CHUNK_BYTES  # a client's reply bytes posted and not yet written before its calls wait
MAX_QUEUED_BYTES = UNWRITTEN_BYTES + MAX_IN_FLIGHT * 2 * CHUNK_BYTES  # beyond what the waits allow: link closed
HEAD_SECONDS = 0.05  # a call's header waits this long for its first part or end (LinkContext)
PROBE_SECONDS = 10.0  # the analyst's bound on the probe
PROBE_AGAIN = 30.0  # seconds before an analyst probes again a coordinator that served no query link
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_END = struct.Struct("<B")  # an end: its status code's number, then its details (UTF-8)


# -- the coordinator's end ------------------------------------------------------------------------


class _Details(NamedTuple):
    """What the guard reads of a call (``grpc.HandlerCallDetails``)."""

    method: str
    invocation_metadata: tuple


class LinkContext:
    """The part of ``grpc.aio.ServicerContext`` the coordinator's Query and Fetch use, over a client's link:
    the caller is the link's certificate name; the initial metadata, each part and the end are messages.
    ``given_up``: the client cancelled (or left) after the header: nothing more is sent but the end."""

    def __init__(
        self,
        hub: Hub,
        client: str,
        request: bytes,
        serialize: Callable[[Any], bytes],
        unsent: Callable,
        backlog: dict[str, int],
    ):
        self._hub, self._client, self._request = hub, client, request
        self._serialize = serialize
        self._unsent = unsent
        self._backlog = backlog  # per client: reply bytes posted and not yet written, over all its calls
        self._round = 0
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.head_sent = False
        self._head: bytes | None = None  # the header, until it goes
        self._head_timer: asyncio.TimerHandle | None = None
        self.given_up = False
        self.ended = False

    def auth_context(self) -> dict:
        return {"x509_common_name": [self._client.encode()]}

    def peer(self) -> str:
        return f"link:{self._client}"

    def invocation_metadata(self) -> tuple:
        return ()

    async def send_initial_metadata(self, metadata) -> None:
        """The header goes with the call's first part or end, or after ``HEAD_SECONDS`` if the session takes
        longer: a short query wakes its analyst once, and a long one still tells it its session id early."""
        self.head_sent = True
        self._head = json.dumps([[str(k), str(v)] for k, v in metadata]).encode()
        self._head_timer = asyncio.get_running_loop().call_later(HEAD_SECONDS, self._flush_head)

    def _flush_head(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._post(HEAD, head)

    async def write(self, message) -> None:
        """Send one reply part; waits for it to be written while more than ``UNWRITTEN_BYTES`` of this client's
        replies are not (a client that does not read holds its calls, as gRPC's flow control does; the link's
        queue then holds at most that and one part per call). A part made in its wire form as pieces
        (:func:`services.releases.vector_parts`) goes out as them: its vector's bytes are sent from where they lie.
        After the client gave up: dropped."""
        if self.given_up:
            return
        data = message if isinstance(message, tuple) else self._serialize(message)
        size = sum(map(len, data)) if isinstance(data, tuple) else len(data)
        sent = self._post(PART, data)
        self._backlog[self._client] = self._backlog.get(self._client, 0) + size
        sent.add_done_callback(functools.partial(self._written, size))
        if self._backlog[self._client] > UNWRITTEN_BYTES:
            try:
                await asyncio.shield(sent)
            except LinkError:
                raise asyncio.CancelledError from None  # the client is gone: the call is cancelled, as in gRPC

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError()

    def end(self) -> None:
        """The call's last message, always sent while the link lives (so the client knows its slot is free):
        its status and details; CANCELLED if the client gave up."""
        if not self.ended:
            self.ended = True
            if self.given_up:
                self.code, self.details = grpc.StatusCode.CANCELLED, "the client cancelled the call"
            self._post(END, _END.pack(self.code.value[0]) + self.details.encode())

    def _post(self, kind: str, payload: bytes | releases.Pieces) -> asyncio.Future:
        if kind != HEAD:
            self._flush_head()
        sent = self._hub.post(self._client, self._request, self._round, kind, payload)
        self._round += 1
        sent.add_done_callback(self._failed)
        return sent

    def _failed(self, sent: asyncio.Future) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            self.given_up = True
            self._unsent(self._client)  # the client's link cannot carry it: a client that does not read

    def _written(self, size: int, _sent: asyncio.Future) -> None:
        left = self._backlog.get(self._client, size) - size
        if left > 0:
            self._backlog[self._client] = left
        else:
            self._backlog.pop(self._client, None)


class QueryService:
    """The coordinator's end of its clients' query links (module doc). ``node`` is the
    :class:`services.coordinator_node.CoordinatorNode` whose Query and Fetch it runs; ``parties`` its
    parties' hub, which this service announces (``Link/Port``) and starts beside the gRPC server too."""

    def __init__(
        self,
        node: Any,
        parties: Hub,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_request_bytes: int = MAX_MESSAGE,
    ):
        self.node = node
        self.parties = parties
        self.max_in_flight = max_in_flight
        self.hub = Hub(
            node.identity,
            _not_dialled,
            self._takes,
            max_message_bytes=max_request_bytes,
            max_pending_bytes=2 * max_request_bytes,
            pending_seconds=HELD_SECONDS,
            max_queued_bytes=MAX_QUEUED_BYTES,
            max_held_messages=max_in_flight + 16,
        )
        for kind in METHODS:
            self.hub.on(kind, functools.partial(self._request, kind))
        self.hub.on(CANCEL, self._cancelled)
        self.hub.on(HELLO, self._hello)
        self.hub.on_drop(self._dropped)
        self._calls: dict[tuple[str, bytes], tuple[asyncio.Task, LinkContext]] = {}
        self._in_flight: dict[str, int] = {}
        self._backlog: dict[str, int] = {}  # per client: reply bytes not yet written
        self._welcomed: set[str] = set()  # clients whose link said hello (once per link)
        self._methods: dict[str, grpc.RpcMethodHandler] = {}  # guarded, made once the server runs

    def services(self) -> list:
        """What a server must offer: the ``Link`` service (its ``Port``, answered per caller), which listens
        for both hubs beside the server."""
        return [(pb_grpc.add_LinkServicer_to_server, self, self.parties.service()[2])]

    def _is_client(self, who: str) -> bool:
        federation = self.node.federation
        return who in federation.names("client") and who not in federation.names("party")

    def _takes(self, who: str) -> bool:
        """Whether the clients' hub takes a link from ``who``: a client with no link here yet. The hub answers a
        client by its name, so two links of one name at once would receive each other's replies: the second
        is refused (its analyst's probe fails and it asks over gRPC)."""
        return self._is_client(who) and not self.hub.linked(who)

    async def Port(self, request: pb.LinkPortRequest, context) -> pb.LinkPort:
        """The port of the caller's hub: the clients' for a client, the parties' for anyone else (which refuses
        whoever it does not take). Under ``--insecure`` nobody is known to be a client: the parties' hub."""
        who = caller(context, None, self.node.identity.insecure)
        hub = self.hub if who and self._is_client(who) else self.parties
        return await hub.Port(request, context)

    async def serve_beside(self, server: grpc.aio.Server, host: str, limits: Limits) -> None:
        """Start the parties' hub's listener beside ``server``, and the clients' (not under ``--insecure``, where
        no client can be told to use it), with the guarded Query and Fetch handlers."""
        await self.parties.serve_beside(server, host, limits)
        if self.node.identity.insecure:
            return
        guard = Guard(limits)
        for kind, name in METHODS.items():
            request_type = pb.QueryRequest if kind == QUERY else pb.FetchRequest
            handler = grpc.unary_stream_rpc_method_handler(
                getattr(self.node, name),
                request_deserializer=request_type.FromString,
                response_serializer=releases.wire_form,
            )
            self._methods[kind] = await guard.intercept_service(_returning(handler), _Details(f"{SERVICE}/{name}", ()))
        await self.hub.serve_beside(server, host, limits)

    async def close(self) -> None:
        for task, _ in list(self._calls.values()):
            task.cancel()
        await self.hub.close()

    def _refuse(self, client: str, reason: str) -> None:
        """A client broke the query link's rules: its link is closed (audited once, the client told why); its
        calls are given up as when it leaves."""
        self.hub.refuse(client, reason)

    # -- the hub's pushed kinds ---------------------------------------------------------------------

    def _hello(self, client: str, probe: bytes, _round: int, _payload: memoryview) -> None:
        if not self.hub.linked(client):
            return  # the rest of a write whose link was closed
        if client in self._welcomed:
            return self._refuse(client, "a second hello on one query link")
        self._welcomed.add(client)
        self.hub.post(client, probe, 0, WELCOME, b"").add_done_callback(retrieved)

    def _request(self, kind: str, client: str, request: bytes, _round: int, payload: memoryview) -> None:
        if not self.hub.linked(client):
            return  # the rest of a write whose link was closed
        key = (client, request)
        if key in self._calls:
            return self._refuse(client, "a request id reused while its call runs")
        if self._in_flight.get(client, 0) >= self.max_in_flight:
            return self._refuse(client, f"more than {self.max_in_flight} calls in flight on one query link")
        handler = self._methods.get(kind)
        serialize = handler.response_serializer if handler else bytes
        context = LinkContext(self.hub, client, request, serialize, self._unread, self._backlog)
        if handler is None:
            context.code, context.details = grpc.StatusCode.UNAVAILABLE, "the coordinator is not serving yet"
            return context.end()
        self._in_flight[client] = self._in_flight.get(client, 0) + 1
        task = asyncio.ensure_future(self._serve(key, handler, bytes(payload), context))
        self._calls[key] = (task, context)
        task.add_done_callback(functools.partial(self._served, key, context))

    async def _serve(
        self, key: tuple[str, bytes], handler: grpc.RpcMethodHandler, request: bytes, context: LinkContext
    ) -> None:
        """Run one call; its status is left in ``context`` (a session the client gave up on after its header runs
        on, and its call with it). Its end is posted at once, so that it joins its last part's write (one write
        and one wake-up of the analyst for a short reply, not two)."""
        try:
            await handler.unary_stream(handler.request_deserializer(request), context)
        except grpc.aio.AbortError:
            pass  # the context holds its status and details
        except Exception:  # the guard turns every failure into an abort: a bug in this module, then
            log.exception("a query link call failed")
            context.code, context.details = grpc.StatusCode.INTERNAL, "internal error in this node"
        self._close(key, context, given_up=False)

    def _served(self, key: tuple[str, bytes], context: LinkContext, task: asyncio.Task) -> None:
        """A call's task ended (cancelled too, even before it ran): closed, if :meth:`_serve` did not."""
        self._close(key, context, given_up=task.cancelled())

    def _close(self, key: tuple[str, bytes], context: LinkContext, given_up: bool) -> None:
        """A call ended: its slot is free, and its end is sent (once)."""
        call = self._calls.get(key)
        if call is None or call[1] is not context:
            return
        del self._calls[key]
        client = key[0]
        left = self._in_flight.get(client, 1) - 1
        if left:
            self._in_flight[client] = left
        else:
            self._in_flight.pop(client, None)
        if given_up:
            context.given_up = True
        if self.hub.linked(client):
            context.end()

    def _give_up(self, task: asyncio.Task, context: LinkContext) -> None:
        """The client cancelled or left, as gRPC cancels a call: before the header (no session yet) the handler is
        cancelled; after it, its session runs to its end (its release kept for Fetch) with nothing more sent."""
        context.given_up = True
        if not context.head_sent:
            task.cancel()

    def _cancelled(self, client: str, request: bytes, _round: int, _payload: memoryview) -> None:
        call = self._calls.get((client, request))
        if call is not None:
            self._give_up(*call)

    def _unread(self, client: str) -> None:
        if self.hub.linked(client):
            self._refuse(client, "replies not read: more than the link queues for one client")

    def _dropped(self, client: str, _error: LinkError) -> None:
        self._welcomed.discard(client)
        for (who, _), call in list(self._calls.items()):
            if who == client:
                self._give_up(*call)


def _returning(handler: grpc.RpcMethodHandler):
    async def continuation(_details) -> grpc.RpcMethodHandler:
        return handler

    return continuation


def _not_dialled(client: str) -> str:
    raise ValueError(f"{client} is a client: the coordinator answers on the link the client opened")


# -- the analyst's end ------------------------------------------------------------------------------


class LinkCall:
    """One Query or Fetch over the link, read as the analyst reads a gRPC call (:meth:`initial_metadata`, its
    parts by ``async for``, :meth:`cancel`); a failure is the ``grpc.aio.AioRpcError`` gRPC would raise: the
    coordinator's status and details, DEADLINE_EXCEEDED past ``timeout``, UNAVAILABLE if the link drops."""

    def __init__(self, link: AnalystLink, kind: str, request: bytes, timeout: float):
        self._link = link
        self._kind = kind
        self._request = request
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout
        self._timer = self._loop.call_at(self._deadline, self._expired)  # one timer for the whole call
        self.id = link.next_id()
        self._metadata: asyncio.Future = self._loop.create_future()
        self._replies: deque[tuple[str, Any]] = deque()
        self._waiter: asyncio.Future | None = None
        self._round = 0
        self._started = False
        self._holding = False  # one of the link's slots
        self._draining = False  # given up here, its slot held until the coordinator's end comes
        self._answered = False  # the coordinator's end came
        self.finished = False

    async def initial_metadata(self) -> tuple:
        await self._start()
        return await self._until(self._metadata)

    def __aiter__(self):
        return self._parts()

    async def _parts(self):
        await self._start()
        while True:
            while not self._replies:
                self._waiter = self._loop.create_future()
                await self._until(self._waiter)
            kind, payload = self._replies.popleft()
            if kind == PART:
                try:
                    yield releases.read_part(payload)
                except DecodeError:
                    self.cancel()
                    raise _error(grpc.StatusCode.INTERNAL, "Exception deserializing response!") from None
                continue
            self._finish()
            if isinstance(payload, grpc.aio.AioRpcError):
                raise payload
            (code,) = _END.unpack_from(payload)
            details = bytes(payload[_END.size :]).decode(errors="replace")
            if _CODES.get(code, grpc.StatusCode.UNKNOWN) is not grpc.StatusCode.OK:
                raise _error(_CODES.get(code, grpc.StatusCode.UNKNOWN), details)
            return

    def cancel(self) -> bool:
        """Give up: the coordinator cancels the call's handler (a session it started runs to its end)."""
        return self._give_up(_error(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))

    def _expired(self) -> None:
        self._give_up(_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def _give_up(self, error: grpc.aio.AioRpcError) -> bool:
        """Fail the call here at once; a request sent is cancelled at the coordinator, and its slot stays taken
        until the coordinator's end for it comes (the coordinator counts it until its session ends)."""
        if self.finished:
            return False
        if self._holding and not self._answered and self._link.hub is not None:
            self._link.post(self.id, CANCEL)
            self._draining = True
        self._fail(error)
        return True

    async def _until(self, future: asyncio.Future):
        """``future``'s result; a caller who gives up (cancelled) cancels the call."""
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def _start(self) -> None:
        """Send the request once, holding one of the link's slots (no loop turn when one is free; otherwise
        waiting for one until the deadline)."""
        if self._started:
            return
        self._started = True
        slots = self._link.slots
        try:
            if slots.locked():
                async with asyncio.timeout_at(self._deadline):
                    await slots.acquire()
            else:
                await slots.acquire()
        except TimeoutError:
            return self._expired()
        except asyncio.CancelledError:
            self.cancel()
            raise
        self._holding = True
        if self.finished:  # given up while it waited for a slot
            return self._finish()
        self._link.calls[self.id] = self
        try:
            self._link.post(self.id, self._kind, self._request).add_done_callback(self._unsent)
        except LinkError as exc:  # too long, or the link closed: never sent
            code = grpc.StatusCode.UNAVAILABLE if self._link.hub is None else grpc.StatusCode.RESOURCE_EXHAUSTED
            self._fail(_error(code, exc.reason))

    def received(self, kind: str, round: int, payload: memoryview) -> None:
        """A reply of this call (from the link's handlers)."""
        if self.finished:
            if kind == END:  # the coordinator's end of a call given up here: its slot is free
                self._draining = False
                self._finish()
            return
        if round != self._round:
            return self._fail(_error(grpc.StatusCode.INTERNAL, f"reply {round} came where {self._round} was due"))
        self._round += 1
        if kind == HEAD:
            if self._metadata.done():
                return self._fail(_error(grpc.StatusCode.INTERNAL, "initial metadata sent twice"))
            try:
                pairs = json.loads(bytes(payload))
                self._metadata.set_result(tuple((str(k), str(v)) for k, v in pairs))
            except (ValueError, TypeError):
                return self._fail(_error(grpc.StatusCode.INTERNAL, "malformed initial metadata"))
            return
        if kind == END:
            self._answered = True
            if len(payload) < _END.size:
                return self._fail(_error(grpc.StatusCode.INTERNAL, "an empty end"))
            self._ended()
        self._push(kind, payload)

    def _push(self, kind: str, payload) -> None:
        self._replies.append((kind, payload))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _unsent(self, sent: asyncio.Future) -> None:
        error = None if sent.cancelled() else sent.exception()
        if error is not None:  # not sent whole: no end will come for it
            self._draining = False
            self._fail(_error(grpc.StatusCode.UNAVAILABLE, f"the link to the coordinator: {error}"))
            self._finish()

    def _fail(self, error: grpc.aio.AioRpcError) -> None:
        """End the call locally with ``error`` (raised to whoever reads it next)."""
        if not self.finished:
            self._ended()
            self._push(END, error)
            self._finish()

    def _ended(self) -> None:
        if not self._metadata.done():
            self._metadata.set_result(())

    def _finish(self) -> None:
        self.finished = True
        self._timer.cancel()
        if self._draining:
            return
        self._link.calls.pop(self.id, None)
        if self._holding:
            self._holding = False
            self._link.slots.release()

    def release(self) -> None:
        """The link is gone: nothing more will come for this call."""
        self._draining = False
        self._finish()


class AnalystLink:
    """An analyst's link to its coordinator (module doc): shared by the process's analysts of one identity
    (:func:`shared`), probed before its first call."""

    def __init__(
        self, identity: Identity, coordinator: str, address: Callable[[str], str], max_in_flight: int, key: tuple = ()
    ):
        from mpcdp.prg import system_random

        self.key = key
        self.coordinator = coordinator
        self.hub: Hub | None = Hub(  # a request longer than the coordinator takes fails here, as with gRPC
            identity, address, lambda who: who == coordinator, max_message_bytes=MAX_MESSAGE
        )
        for kind in (HEAD, PART, END):
            self.hub.on(kind, functools.partial(self._reply, kind))
        self.hub.on_drop(self._dropped)
        self.calls: dict[bytes, LinkCall] = {}
        self.slots = asyncio.Semaphore(max_in_flight)
        self.users = 0
        self._prefix = system_random("query link ids").bytes(8)
        self._count = 0
        self._probe: asyncio.Task | None = None
        self._probed = 0.0  # when the last probe failed

    def next_id(self) -> bytes:
        self._count += 1
        return self._prefix + self._count.to_bytes(8, "little")

    def post(self, request: bytes, kind: str, payload: bytes = b"") -> asyncio.Future:
        if self.hub is None:
            raise LinkError(self.coordinator, "the query link is closed")
        sent = self.hub.post(self.coordinator, request, 0, kind, payload)
        sent.add_done_callback(retrieved)
        return sent

    async def serves(self) -> str | None:
        """Whether the coordinator serves this client a query link: None if so, else why not (asked once; a
        failure is asked again after ``PROBE_AGAIN`` seconds)."""
        if self._probe is None or (self._probe.done() and self._probe.result() and time.monotonic() > self._probed):
            self._probe = asyncio.ensure_future(self._hello())
        return await asyncio.shield(self._probe)

    async def _hello(self) -> str | None:
        assert self.hub is not None
        probe = self.next_id()
        try:
            await self.hub.send(self.coordinator, probe, 0, HELLO, b"")
            await self.hub.receive(self.coordinator, probe, 0, WELCOME, timeout=PROBE_SECONDS)
        except (LinkError, TimeoutError) as exc:
            self._probed = time.monotonic() + PROBE_AGAIN
            return str(exc) or "no answer"
        return None

    def call(self, method: str, request: bytes, timeout: float) -> LinkCall:
        """A new call of ``method`` ("Query" or "Fetch") with the request's bytes."""
        kind = QUERY if method == "Query" else FETCH
        return LinkCall(self, kind, request, timeout)

    def _reply(self, kind: str, _peer: str, request: bytes, round: int, payload: memoryview) -> None:
        call = self.calls.get(request)
        if call is not None:
            call.received(kind, round, payload)

    def _dropped(self, _peer: str, error: LinkError) -> None:
        for call in list(self.calls.values()):
            call._fail(_error(grpc.StatusCode.UNAVAILABLE, f"the link to the coordinator closed ({error.reason})"))
            call.release()

    async def close(self) -> None:
        hub, self.hub = self.hub, None
        for call in list(self.calls.values()):
            call._fail(_error(grpc.StatusCode.CANCELLED, "the analyst closed its link"))
            call.release()
        if hub is not None:
            await hub.close()


_SHARED: dict[tuple, AnalystLink] = {}


def shared(identity: Identity, coordinator: str, address: str, max_in_flight: int = MAX_IN_FLIGHT) -> AnalystLink:
    """The link of this process's analysts named like ``identity`` to the coordinator at ``address`` on this
    event loop (one per name: the coordinator's hub answers a client by its name); :func:`release` it."""
    key = (identity.name, str(identity.certs), identity.insecure, coordinator, address, asyncio.get_running_loop())
    link = _SHARED.get(key)
    if link is None or link.hub is None:
        link = _SHARED[key] = AnalystLink(identity, coordinator, lambda _: address, max_in_flight, key)
    link.users += 1
    return link


async def release(link: AnalystLink) -> None:
    """One analyst no longer uses ``link``: closed with its last user."""
    link.users -= 1
    if link.users <= 0:
        if _SHARED.get(link.key) is link:
            del _SHARED[link.key]
        await link.close()


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
