"""Hand-made link connections: what a misbehaving (or foreign) peer would send to a hub's TLS listener."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from services import link_transport
from services.link import Hub
from services.tls import Identity


class RawLink:
    """One connection to ``hub``'s link listener, made with ``context`` (a TLS client context; None: plain TCP),
    on which a test writes records of its choosing and reads what the hub answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, hub: Hub, context: ssl.SSLContext | None, name: str = "bob") -> RawLink:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", hub.port, ssl=context, server_hostname=name if context else None
        )
        return cls(reader, writer)

    @classmethod
    async def as_node(cls, hub: Hub, identity: Identity) -> RawLink:
        """A TLS connection presenting ``identity``'s certificate (valid in the federation's CA)."""
        return await cls.open(hub, identity.link_context(server=False))

    def send(self, *writes: bytes) -> None:
        """Each of ``writes`` as one record (its length, then its bytes)."""
        for data in writes:
            self.writer.write(link_transport.PREFIX.pack(len(data)) + data)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def ended(self, timeout: float = 10.0) -> str | None:
        """Read until the hub closes the connection: the reason its farewell gave (None: it closed without one).
        TimeoutError if it is still open after ``timeout`` seconds."""
        reason = None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    head = await self.reader.readexactly(link_transport.PREFIX.size)
                    (n,) = link_transport.PREFIX.unpack(head)
                    record = await self.reader.readexactly(n)
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return reason
                reason = link_transport.farewell(memoryview(record)) or reason

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
