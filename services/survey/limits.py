"""What a survey node takes at a time: the gRPC aggregator's and the HTTPS intake's limits.

A module of its own, importing nothing heavy, so that ``mpcdp survey --help`` shows the defaults without
loading the servers (grpc, starlette).
"""

from __future__ import annotations

from dataclasses import dataclass

# the gRPC aggregator
MAX_MESSAGE = 8 << 20  # its largest message: clients send batches of at most mpcdp.survey.respondent.BATCH_BYTES
MAX_CALLS = 32  # calls in flight on the whole server: gRPC buffers up to a message per waiting stream
MAX_STREAMS = 4  # calls in flight on one connection: more wait in the client, not in this node's memory

# the HTTPS intake and token endpoint
MAX_BODY = 64 << 10  # a report of the example poll is 2 KiB (leader): room for much larger surveys
MAX_TOKEN_BODY = 4 << 10
MAX_BATCH = 1000  # reports per batch request
MAX_BATCH_BODY = MAX_MESSAGE  # like the aggregator's largest gRPC message


@dataclass(frozen=True)
class HttpLimits:
    """Per request and per client limits of the HTTPS intake."""

    max_body: int = MAX_BODY
    max_batch_body: int = MAX_BATCH_BODY
    rate: float = 20.0  # requests per second per client address, sustained
    burst: float = 40.0  # and at once
    per_token: int = 6  # attempts per token (or invitation) per minute: an outbox's retries, not a flood
