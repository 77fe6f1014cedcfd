"""What one node's gRPC server allows a connection and a stream (:class:`Limits`), apart from the server
(:mod:`services.server`) so that the command line can offer them without loading gRPC."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE = 64 << 20  # a bound on any one message; federation vectors and releases go in ~1 MiB chunks


@dataclass(frozen=True)
class Limits:
    """What one server allows a connection and a stream. Every field is settable from the command line
    (:func:`services.commands.add_node_arguments`)."""

    max_message_bytes: int = MAX_MESSAGE  # largest message received or sent
    idle_timeout: float = 300.0  # seconds a streaming call may go without a message either way
    keepalive_time: float = 60.0  # ping a connection quiet for this long ...
    keepalive_timeout: float = 20.0  # ... and drop it if the ping is not answered in this long
    max_concurrent_streams: int = 100  # calls in flight on one connection
    max_connection_idle: float = 900.0  # close a connection with no call for this long
    max_concurrent_rpcs: int | None = None  # calls in flight on the whole server (None: no limit)

    def __post_init__(self):
        for name in ("idle_timeout", "keepalive_time", "keepalive_timeout", "max_connection_idle"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if self.max_message_bytes < 1024 or self.max_concurrent_streams < 1:
            raise ValueError("max_message_bytes must be at least 1024 and max_concurrent_streams at least 1")

    def options(self) -> list[tuple[str, int]]:
        """The gRPC channel arguments of these limits, for a server."""
        ms = lambda seconds: int(seconds * 1000)  # noqa: E731
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", ms(min(self.keepalive_time, 10.0))),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.max_connection_idle_ms", ms(self.max_connection_idle)),
        ]
