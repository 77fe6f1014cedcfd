"""One way to start any mpcdp gRPC server: its services, health, reflection, and the limits every node keeps.

Every server built here (party, coordinator, survey aggregator, text node)
gets the same guard around each of its methods:

- request bytes that do not decode as the method's message are refused with
  INVALID_ARGUMENT (never an internal error naming a Python class);
- a query spec refused by the library (:class:`mpcdp.protocol.SpecError`) is
  INVALID_ARGUMENT naming the field; any other unexpected exception is
  INTERNAL with a fixed message, and its details go to the node's own log;
- a client-streaming or bidirectional call that neither receives nor sends
  a message for ``Limits.idle_timeout`` seconds is closed
  (DEADLINE_EXCEEDED), so an authenticated peer cannot hold streams open
  forever;

and the transport limits of :class:`Limits`: maximum message size, HTTP/2
keepalive pings (dead peers are noticed and their connections dropped),
concurrent streams per connection and the idle-connection timeout.

A servicer may also listen on a port of its own beside the server
(:class:`ServesBeside`: the federation links' TLS listener,
:meth:`services.link.Hub.serve_beside`): it starts once the server runs,
on the server's host, and stops with the server.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import time
from typing import NoReturn, Protocol, runtime_checkable

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services import audit
from services.link_transport import host_of
from services.node_limits import MAX_MESSAGE, Limits
from services.tls import Identity

log = logging.getLogger("mpcdp.server")
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
INTERNAL_MESSAGE = "internal error in this node; its operator's log has the details"


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``code`` and ``message`` (``context.abort`` raises; this says so to type checkers)."""
    await context.abort(code, message)
    raise AssertionError("ServicerContext.abort returned")


def _is_spec_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a :class:`mpcdp.protocol.SpecError`, without importing the protocol (and scipy) into
    nodes that never use it, such as the text node: no such error exists unless its module was loaded."""
    spec = sys.modules.get("mpcdp.protocol.spec")
    return spec is not None and isinstance(exc, spec.SpecError)


class Undecodable(Exception):
    """Request bytes that are not a valid message of the method's request type."""


class _Activity:
    """When the current call last received or sent a message (set per call, read by the codecs)."""

    __slots__ = ("last",)

    def __init__(self):
        self.last = time.monotonic()


_ACTIVITY: contextvars.ContextVar[_Activity | None] = contextvars.ContextVar("mpcdp_call_activity", default=None)
_UNDECODABLE = object()


def _touch() -> None:
    activity = _ACTIVITY.get()
    if activity is not None:
        activity.last = time.monotonic()


def _guard(handler: grpc.RpcMethodHandler, method: str, limits: Limits) -> grpc.RpcMethodHandler:
    """``handler`` with decoding errors, unexpected exceptions and idle streams handled (see module doc)."""
    decode, encode = handler.request_deserializer, handler.response_serializer
    streaming_in = handler.request_streaming

    def deserialize(data: bytes):
        _touch()
        try:
            return decode(data) if decode else data
        except Exception:
            if streaming_in:
                raise Undecodable() from None
            return _UNDECODABLE

    def serialize(message) -> bytes:
        _touch()
        return encode(message) if encode else message

    async def refuse(exc: BaseException, context) -> None:
        if isinstance(exc, Undecodable):
            audit.record("invalid", method=method, reason="undecodable request bytes")
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method.rsplit('/', 1)[-1]} message"
            )
        if _is_spec_error(exc):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.error("unexpected error in %s", method, exc_info=exc)
        audit.record("error", method=method)
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    class _Call:
        """Per call: the activity record, and the watchdog that cancels an idle stream."""

        def __init__(self, request, context):
            if not streaming_in and request is _UNDECODABLE:
                self.bad = True
                return
            self.bad = False
            self.activity = _Activity()
            _ACTIVITY.set(self.activity)
            self.expired = False
            task = asyncio.current_task()
            assert task is not None  # a call runs in a task
            self.task = task
            self.timer = None
            if streaming_in:
                self._arm(limits.idle_timeout)

        def _arm(self, delay: float) -> None:
            self.timer = asyncio.get_running_loop().call_later(delay, self._check)

        def _check(self) -> None:
            idle = time.monotonic() - self.activity.last
            if idle >= limits.idle_timeout:
                self.expired = True
                self.task.cancel()
            else:
                self._arm(limits.idle_timeout - idle)

        def stop(self) -> None:
            if self.timer is not None:
                self.timer.cancel()

        async def on_error(self, exc: BaseException, context) -> None:
            if isinstance(exc, asyncio.CancelledError):
                if not self.expired:
                    raise exc
                self.task.uncancel()
                audit.record("idle_closed", method=method, seconds=limits.idle_timeout)
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"stream idle for more than {limits.idle_timeout:g} s; closed"
                )
            if isinstance(exc, grpc.aio.AbortError):
                raise exc
            await refuse(exc, context)

    async def bad_request(context):
        await refuse(Undecodable(), context)

    behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

    async def guarded_stream(request, context):
        call = _Call(request, context)
        if call.bad:
            await bad_request(context)
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            await call.on_error(exc, context)
        finally:
            call.stop()

    async def guarded_unary(request, context):
        call = _Call(request, context)
        if call.bad:
            await bad_request(context)
        try:
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result
        except BaseException as exc:
            await call.on_error(exc, context)
        finally:
            call.stop()

    guarded = guarded_stream if inspect.isasyncgenfunction(behavior) else guarded_unary
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    return make[(handler.request_streaming, handler.response_streaming)](
        guarded, request_deserializer=deserialize, response_serializer=serialize
    )


@runtime_checkable
class ServesBeside(Protocol):
    """A servicer that listens on a port of its own beside its gRPC server (module doc)."""

    async def serve_beside(self, server: grpc.aio.Server, host: str, limits: Limits) -> None:
        """Start listening on ``host``; stop when ``server`` stops."""


class Guard(grpc.aio.ServerInterceptor):
    """Applies :func:`_guard` to every method of an aio server."""

    def __init__(self, limits: Limits):
        self.limits = limits

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _guard(handler, handler_call_details.method, self.limits)


async def start(
    identity: Identity, address: str, services, limits: Limits | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start a server on ``address`` (port 0 picks a free port) and return it with its port.

    ``services`` is a list of ``(add_to_server, servicer, full_service_name)``.
    The standard health service reports each of them SERVING, and reflection
    lists those a protobuf describes, so ordinary gRPC tooling (grpcurl,
    grpc_health_probe) works. A servicer that :class:`ServesBeside` starts
    listening on the server's host once the server runs.
    ``limits`` (default :class:`Limits`) bounds messages, streams and connections.
    """
    limits = limits or Limits()
    server = grpc.aio.server(
        options=limits.options(), interceptors=[Guard(limits)], maximum_concurrent_rpcs=limits.max_concurrent_rpcs
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    for add, servicer, name in services:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection([n for n in names if _described(n)], server)
    port = identity.add_port(server, address)
    if port == 0:
        raise OSError(f"could not listen on {address}")
    await server.start()
    try:
        for _, servicer, _ in services:
            if isinstance(servicer, ServesBeside):
                await servicer.serve_beside(server, host_of(address), limits)
    except BaseException:
        await server.stop(None)
        raise
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def _described(service: str) -> bool:
    """Whether a protobuf describes ``service`` (reflection can tell a client its methods)."""
    try:
        descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        return False
    return True


async def wait_serving(identity: Identity, address: str, peer: str, timeout: float) -> None:
    """Block until the node ``peer`` at ``address`` answers its health check as SERVING."""
    async with identity.channel(address, peer) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"{peer} at {address} is not serving")


async def serve_until_stopped(
    identity: Identity, address: str, services, banner: str, cleanup=None, limits: Limits | None = None
) -> int:
    """Serve until SIGINT or SIGTERM, then stop gracefully. Prints ``banner`` with the port once serving."""
    import signal

    server, port = await start(identity, address, services, limits)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    audit.record("started", address=address, port=port)
    print(banner.format(port=port), flush=True)
    await stop.wait()
    await server.stop(grace=1.0)
    if cleanup is not None:
        await cleanup()
    return 0
