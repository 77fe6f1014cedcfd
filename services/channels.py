"""The one channel cache: one long-lived, mutually authenticated gRPC channel per peer, opened on first use.

Every node that calls other nodes (the coordinator its parties, a party its peers, the analyst its
coordinator, a survey's respondents and coordinator their aggregators, an aggregator its fellow verifiers,
a link hub its peers) keeps one :class:`Channels`: a channel costs one TLS handshake and is then reused by
every call and stream to that peer. A peer found unreachable is :meth:`~Channels.forget`-ten, so the next
call dials afresh instead of waiting out gRPC's reconnect backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from services.server import OPTIONS
from services.tls import Identity

S = TypeVar("S")


class Channels:
    """Channels of ``identity`` to peers by name; ``address(peer)`` is where ``peer`` listens."""

    def __init__(
        self,
        identity: Identity,
        address: Callable[[str], str],
        options: Sequence[tuple[str, Any]] = tuple(OPTIONS),
    ) -> None:
        self.identity = identity
        self._address = address
        self._options = list(options)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, Any], Any] = {}
        self._closing: set[asyncio.Task] = set()

    def channel(self, peer: str) -> grpc.aio.Channel:
        """The channel to ``peer`` (dialled now if there is none)."""
        if peer not in self._channels:
            self._channels[peer] = self.identity.channel(self._address(peer), peer, self._options)
        return self._channels[peer]

    def stub(self, peer: str, stub_class: Callable[[grpc.aio.Channel], S]) -> S:
        """A ``stub_class`` stub on the channel to ``peer``, made once."""
        key = (peer, stub_class)
        if key not in self._stubs:
            self._stubs[key] = stub_class(self.channel(peer))
        stub: S = self._stubs[key]
        return stub

    def forget(self, peer: str) -> None:
        """Drop the channel to ``peer`` (closed in the background): the next use dials it again."""
        for key in [k for k in self._stubs if k[0] == peer]:
            del self._stubs[key]
        channel = self._channels.pop(peer, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel."""
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        await asyncio.gather(*(c.close() for c in channels), *self._closing)
