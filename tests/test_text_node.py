"""The text node end to end over gRPC, and the text commands."""

import os
import re
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpcdp.prg import Prg
from mpcdp.text import neighbours as nb
from mpcdp.text import samplers
from mpcdp.text.embeddings import Embedding
from mpcdp.text.sanitizer import Sanitizer
from services.cli import main
from services.text_node import build_server
from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc

WORDS = tuple(f"w{i}" for i in range(120)) + ("good", "movie")


@pytest.fixture(scope="module")
def emb():
    return Embedding(WORDS, samplers.standard_normal(Prg.from_int(0, "emb"), (len(WORDS), 6)))


@pytest.fixture(scope="module")
def stub(emb):
    server, port = build_server(Sanitizer(emb, nb.build_neighbour_table(emb, 8)), "127.0.0.1:0", None,
                                max_text_chars=200)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None)


def req(text, mechanism="multivariate-laplace", epsilon=1e7, id="r"):
    return text_pb2.SanitizeRequest(id=id, text=text, mechanism=mechanism, epsilon=epsilon)


def test_health_and_describe(stub, emb):
    health = health_pb2_grpc.HealthStub(stub)
    for service in ("", "mpcdp.v1.TextSanitizer"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    d = text_pb2_grpc.TextSanitizerStub(stub).Describe(text_pb2.DescribeRequest(), timeout=5)
    assert d.vocabulary_size == len(WORDS) and d.dimension == 6 and d.oov_policy == "placeholder"
    assert d.embedding_fingerprint == emb.fingerprint()
    assert {m.name for m in d.mechanisms} == {"truncated-gumbel", "multivariate-laplace"}


def test_stream_in_order_with_costs(stub):
    sanitizer = text_pb2_grpc.TextSanitizerStub(stub)
    min_eps = {m.name: m.min_epsilon_exclusive
               for m in sanitizer.Describe(text_pb2.DescribeRequest(), timeout=5).mechanisms}
    requests = [req("Good movie, Zorblax!", id="a"),
                req("w1 w2 w3", "truncated-gumbel", 2 * min_eps["truncated-gumbel"], id="b")]
    responses = list(sanitizer.Sanitize(iter(requests), timeout=10))
    assert [r.id for r in responses] == ["a", "b"]
    assert responses[0].text == "Good movie, <unk>!"
    assert responses[0].cost.words_perturbed == 2 and responses[0].cost.oov_words == 1
    assert responses[1].cost.mechanism == "truncated-gumbel" and responses[1].cost.words_perturbed == 3
    assert re.fullmatch(r"(w\d+|good|movie) (w\d+|good|movie) (w\d+|good|movie)", responses[1].text)


@pytest.mark.parametrize("request_, message", [
    (req("   "), "text is empty"),
    (req("good " * 60), "more than this node's limit of 200"),
    (req("good", mechanism="gaussian"), "unknown mechanism 'gaussian'"),
    (req("good", epsilon=float("nan")), "epsilon must be a positive"),
    (req("good", mechanism="truncated-gumbel", epsilon=1.0), "needs epsilon >"),
])
def test_bad_requests_get_invalid_argument(stub, request_, message):
    with pytest.raises(grpc.RpcError) as info:
        list(text_pb2_grpc.TextSanitizerStub(stub).Sanitize(iter([request_]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    if request_.text.strip():
        assert "good" not in info.value.details()  # the text never appears in an error


@pytest.fixture(scope="module")
def glove_file(tmp_path_factory, emb):
    path = tmp_path_factory.mktemp("emb") / "tiny.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(emb.words, emb.vectors)))
    return path


def test_cli_sanitize_file(tmp_path, glove_file, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Good movie!\nw3, w4 and Zorblax\n")
    args = ["text", "sanitize", "--mechanism", "multivariate-laplace", "--epsilon", "1e7",
            "--embedding", str(glove_file), "--cache-dir", str(tmp_path / "cache"), str(src)]
    assert main(args) == 0
    assert capsys.readouterr().out == "Good movie!\nw3, w4 <unk> <unk>\n"
    swap = {"multivariate-laplace": "truncated-gumbel", "1e7": "1"}
    assert main([swap.get(a, a) for a in args]) == 2
    assert "needs epsilon >" in capsys.readouterr().err


def test_text_node_command_starts_and_serves(tmp_path, glove_file):
    env = dict(os.environ, MPCDP_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "text-node", "--port", "0", "--insecure",
         "--embedding", str(glove_file)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        assert "WARNING: --insecure" in lines[0]
        port = int(re.search(r"serving on 127\.0\.0\.1:(\d+)", lines[1]).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            [out] = text_pb2_grpc.TextSanitizerStub(channel).Sanitize(iter([req("good")]), timeout=10)
            assert out.text == "good"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_text_node_command_requires_tls_or_insecure(capsys):
    assert main(["text-node", "--port", "0"]) == 2
    assert "--cert, --key and --ca" in capsys.readouterr().err
