"""The text node stays available (issue 9, item 4): idle streams, busy workers and greedy clients
cannot stall it; bad bytes and oversized messages get clear refusals."""

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpcdp.prg import Prg
from mpcdp.text import neighbors as nb
from mpcdp.text import samplers
from mpcdp.text.embeddings import Embedding
from mpcdp.text.sanitizer import Sanitizer
from services.server import Limits as ServerLimits
from services.text_node import SERVICE_NAME, TextLimits, build_server
from services.tls import init_certs
from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc
from tests.support.text_node import member_channel

WORDS = tuple(f"w{i}" for i in range(60)) + ("good", "movie")


class GatedSanitizer(Sanitizer):
    """Each sanitize call waits for ``gate`` (or, with ``spin``, burns the CPU in Python first)."""

    def __init__(self, *args, spin: float = 0.0, **kw):
        super().__init__(*args, **kw)
        self.gate, self.spin, self.started = threading.Event(), spin, threading.Semaphore(0)

    def sanitize(self, *args, **kw):
        self.started.release()
        end = time.perf_counter() + self.spin
        while time.perf_counter() < end:  # pure-Python work holding the GIL most of the time
            sum(i * i for i in range(1000))
        self.gate.wait(30)
        return super().sanitize(*args, **kw)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    init_certs(["scribe", "analyst", "alice", "bob"], folder)
    return folder


@pytest.fixture(scope="module")
def parts():
    emb = Embedding(WORDS, samplers.standard_normal(Prg.from_int(0, "emb"), (len(WORDS), 5)))
    return emb, nb.build_neighbor_table(emb, 6)


@pytest.fixture
def node(parts, certs):
    from services.tls import Identity

    started = []

    def make(limits=None, spin=0.0, server_limits=None):
        sanitizer = GatedSanitizer(*parts, spin=spin)
        server, port = build_server(
            sanitizer, "127.0.0.1:0", Identity("scribe", certs), limits or TextLimits(), server_limits
        )
        started.append((server, sanitizer))
        return sanitizer, port

    yield make
    for server, sanitizer in started:
        sanitizer.gate.set()
        server.stop(None)


def req(text="good movie", id="r"):
    return text_pb2.SanitizeRequest(id=id, text=text, mechanism="multivariate-laplace", epsilon=1e6)


def health(channel, timeout=2.0) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


class Stream:
    """A Sanitize stream whose requests the test sends one at a time."""

    def __init__(self, channel):
        self._queue, self._closed = [], threading.Condition()
        self.call = text_pb2_grpc.TextSanitizerStub(channel).Sanitize(self._requests(), timeout=30)

    def _requests(self):
        while True:
            with self._closed:
                self._closed.wait_for(lambda: self._queue)
                item = self._queue.pop(0)
            if item is None:
                return
            yield item

    def send(self, request):
        with self._closed:
            self._queue.append(request)
            self._closed.notify()

    def close(self):
        self.send(None)


def test_idle_streams_from_one_member_do_not_block_anyone(node, certs):
    sanitizer, port = node()
    sanitizer.gate.set()
    with member_channel(port, certs, "alice") as alice, member_channel(port, certs, "bob") as bob:
        streams = [Stream(alice) for _ in range(8)]  # more than the old node's 4 threads
        time.sleep(0.5)
        t = time.perf_counter()
        assert health(bob) == health_pb2.HealthCheckResponse.SERVING
        assert text_pb2_grpc.TextSanitizerStub(bob).Describe(text_pb2.DescribeRequest(), timeout=2).vocabulary_size
        [out] = text_pb2_grpc.TextSanitizerStub(bob).Sanitize(iter([req()]), timeout=5)
        assert out.text == "good movie" and time.perf_counter() - t < 3
        for s in streams:
            s.close()
            s.call.cancel()


def test_one_client_cannot_hold_more_than_its_share(node, certs):
    sanitizer, port = node(TextLimits(per_client=1, queue=2, workers=1))
    with (
        member_channel(port, certs, "alice") as alice,
        member_channel(port, certs, "bob") as bob,
        member_channel(port, certs, "analyst") as analyst,
    ):
        first = Stream(alice)
        first.send(req(id="a1"))
        assert sanitizer.started.acquire(timeout=5)  # alice's first request is running
        with pytest.raises(grpc.RpcError) as info:
            list(text_pb2_grpc.TextSanitizerStub(alice).Sanitize(iter([req(id="a2")]), timeout=5))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this client already has 1 requests queued or running" in info.value.details()
        second = Stream(bob)
        second.send(req(id="b1"))  # queued behind alice's: the queue (2) is now full
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as info:
            list(text_pb2_grpc.TextSanitizerStub(analyst).Sanitize(iter([req(id="c1")]), timeout=5))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "the node is busy" in info.value.details()
        assert health(analyst) == health_pb2.HealthCheckResponse.SERVING  # while every worker is taken
        sanitizer.gate.set()
        for stream, id in ((first, "a1"), (second, "b1")):
            assert next(stream.call).id == id
            stream.close()
        [out] = text_pb2_grpc.TextSanitizerStub(analyst).Sanitize(iter([req(id="c2")]), timeout=5)
        assert out.id == "c2"


def test_cpu_heavy_requests_do_not_starve_health_checks(node, certs):
    sanitizer, port = node(TextLimits(workers=2, per_client=2), spin=3.0)
    sanitizer.gate.set()
    with member_channel(port, certs, "alice") as alice, member_channel(port, certs, "bob") as bob:
        streams = [Stream(alice) for _ in range(2)]
        for i, s in enumerate(streams):
            s.send(req(id=str(i)))
        assert sanitizer.started.acquire(timeout=5) and sanitizer.started.acquire(timeout=5)
        latencies = []
        for _ in range(5):
            t = time.perf_counter()
            assert health(bob) == health_pb2.HealthCheckResponse.SERVING
            latencies.append(time.perf_counter() - t)
            time.sleep(0.1)
        assert max(latencies) < 1.0, latencies
        for s in streams:
            assert next(s.call).text
            s.close()


def test_idle_streams_are_closed(node, certs):
    _, port = node(server_limits=ServerLimits(idle_timeout=0.5))
    with member_channel(port, certs, "alice") as alice:
        stream = Stream(alice)
        t = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            next(stream.call)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "idle" in info.value.details() and time.perf_counter() - t < 5
        stream.close()


def test_undecodable_and_oversized_requests(node, certs):
    _, port = node(TextLimits(max_text_chars=1000))
    with member_channel(port, certs, "alice") as alice:
        raw = alice.stream_stream(
            f"/{SERVICE_NAME}/Sanitize", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as info:
            list(raw(iter([b"\xff\xff\xff"]), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid Sanitize" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:  # refused by size before it is even decoded
            list(text_pb2_grpc.TextSanitizerStub(alice).Sanitize(iter([req("good " * 2000)]), timeout=5))
        assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
        d = text_pb2_grpc.TextSanitizerStub(alice).Describe(text_pb2.DescribeRequest(), timeout=5)
        assert (d.max_text_chars, d.max_requests_per_client, d.symbol_policy) == (1000, 2, "placeholder")
