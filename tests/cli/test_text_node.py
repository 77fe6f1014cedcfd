"""The text node end to end over gRPC as a federation member (mutual TLS), and the text commands."""

import os
import re
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpcdp.prg import Prg
from mpcdp.text import neighbors as nb
from mpcdp.text import samplers
from mpcdp.text.embeddings import Embedding
from mpcdp.text.sanitizer import Sanitizer
from services.cli import build_parser, main
from services.text_node import TextLimits, build_server
from services.tls import CA_CERT, Identity, init_certs
from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc
from tests.support.text_node import member_channel, tls_channel

WORDS = tuple(f"w{i}" for i in range(120)) + ("good", "movie")
FEDERATION = """
[federation]
name = "texts"
certs = "certs"

[[node]]
name = "scribe"
address = "127.0.0.1:50060"
roles = ["text"]

[[node]]
name = "alice"
address = "127.0.0.1:50061"
roles = ["party"]

[[node]]
name = "analyst"
roles = ["client"]
"""


@pytest.fixture(scope="module")
def emb():
    return Embedding(WORDS, samplers.standard_normal(Prg.from_int(0, "emb"), (len(WORDS), 6)))


@pytest.fixture(scope="module")
def federation_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("federation")
    (folder / "federation.toml").write_text(FEDERATION)
    init_certs(["scribe", "alice", "analyst"], folder / "certs")
    return folder / "federation.toml"


@pytest.fixture(scope="module")
def certs(federation_file):
    return federation_file.parent / "certs"


@pytest.fixture(scope="module")
def port(emb, certs):
    server, port = build_server(
        Sanitizer(emb, nb.build_neighbor_table(emb, 8)),
        "127.0.0.1:0",
        Identity("scribe", certs),
        TextLimits(max_text_chars=200),
    )
    yield port
    server.stop(None)


@pytest.fixture(scope="module")
def stub(port, certs):
    channel = member_channel(port, certs)
    yield channel
    channel.close()


def health_check(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_a_member_of_the_federation_is_served(port, certs):
    for member in ("analyst", "alice"):
        with member_channel(port, certs, member) as channel:
            assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING


def test_a_client_certified_by_another_ca_is_refused(port, certs, tmp_path):
    init_certs(["mallory"], tmp_path, ca_name="another CA")
    # mallory trusts the federation's CA (so she would accept the node) but her own certificate is foreign
    with (
        tls_channel(
            port,
            (tmp_path / "mallory.key").read_bytes(),
            (tmp_path / "mallory.pem").read_bytes(),
            (certs / CA_CERT).read_bytes(),
        ) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        health_check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_without_a_certificate_is_refused(port, certs):
    credentials = grpc.ssl_channel_credentials(root_certificates=(certs / CA_CERT).read_bytes())
    with (
        grpc.secure_channel(
            f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "scribe")]
        ) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        health_check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_client_verifies_the_node_name(port, certs):
    with (
        tls_channel(
            port,
            (certs / "analyst.key").read_bytes(),
            (certs / "analyst.pem").read_bytes(),
            (certs / CA_CERT).read_bytes(),
            server_name="alice",
        ) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        health_check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


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
    min_eps = {
        m.name: m.min_epsilon_exclusive for m in sanitizer.Describe(text_pb2.DescribeRequest(), timeout=5).mechanisms
    }
    requests = [
        req("Good movie, Zorblax!", id="a"),
        req("w1 w2 w3", "truncated-gumbel", 2 * min_eps["truncated-gumbel"], id="b"),
    ]
    responses = list(sanitizer.Sanitize(iter(requests), timeout=10))
    assert [r.id for r in responses] == ["a", "b"]
    assert responses[0].text == "Good movie, <unk>!"
    assert responses[0].cost.words_perturbed == 2 and responses[0].cost.oov_words == 1
    assert responses[1].cost.mechanism == "truncated-gumbel" and responses[1].cost.words_perturbed == 3
    assert re.fullmatch(r"(w\d+|good|movie) (w\d+|good|movie) (w\d+|good|movie)", responses[1].text)


@pytest.mark.parametrize(
    "request_, message",
    [
        (req("   "), "text is empty"),
        (req("good " * 60), "more than this node's limit of 200"),
        (req("good", mechanism="gaussian"), "unknown text mechanism 'gaussian'"),
        (req("good", epsilon=float("nan")), "epsilon must be a positive"),
        (req("good", mechanism="truncated-gumbel", epsilon=1.0), "needs epsilon >"),
    ],
)
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
    args = [
        "text",
        "sanitize",
        "--mechanism",
        "multivariate-laplace",
        "--epsilon",
        "1e7",
        "--embedding",
        str(glove_file),
        "--cache-dir",
        str(tmp_path / "cache"),
        str(src),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out == "Good movie!\nw3, w4 <unk> <unk>\n"
    swap = {"multivariate-laplace": "truncated-gumbel", "1e7": "1"}
    assert main([swap.get(a, a) for a in args]) == 2
    assert "needs epsilon >" in capsys.readouterr().err


def test_text_node_command_serves_the_federation(tmp_path, glove_file, federation_file, certs):
    env = dict(os.environ, MPCDP_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "text-node",
            "--federation",
            str(federation_file),
            "--id",
            "scribe",
            "--port",
            "0",
            "--embedding",
            str(glove_file),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        found = None
        while found is None:
            line = proc.stderr.readline()
            assert line, "the node exited"
            found = re.search(r"text node scribe serving on 127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1))
        with member_channel(port, certs) as channel:
            assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
            [out] = text_pb2_grpc.TextSanitizerStub(channel).Sanitize(iter([req("good")]), timeout=10)
            assert out.text == "good"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def setup(argv):
    from services.commands.text_node import identity_and_address

    return identity_and_address(build_parser().parse_args(["text-node", *argv]))


def test_address_and_identity_come_from_the_federation(federation_file, certs, capsys):
    identity, address = setup(["--federation", str(federation_file), "--id", "scribe"])
    assert (identity.name, identity.certs, identity.insecure, address) == ("scribe", certs, False, "127.0.0.1:50060")
    assert setup(["--federation", str(federation_file), "--id", "scribe", "--port", "0"])[1] == "127.0.0.1:0"
    assert (
        setup(["--federation", str(federation_file), "--id", "scribe", "--listen", "0.0.0.0:7000"])[1] == "0.0.0.0:7000"
    )
    assert capsys.readouterr().err == ""


def test_insecure_warns_and_needs_no_federation(capsys):
    identity, address = setup(["--insecure", "--port", "0"])
    assert identity.insecure and address == "127.0.0.1:0"
    assert "WARNING: --insecure" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "0"], "pass --federation FILE --id NAME"),
        (["--federation", "{fed}"], "--federation and --id go together"),
        (["--federation", "{fed}", "--id", "alice"], "node 'alice' does not have the text role"),
        (["--federation", "{fed}", "--id", "nobody"], "no node named 'nobody'"),
        (["--insecure"], "without --federation, pass --port or --listen"),
        (["--insecure", "--port", "70000"], "--port must be in [0, 65535]"),
        (["--insecure", "--listen", "localhost"], "--listen must be host:port"),
        (["--federation", "{fed}", "--id", "scribe", "--max-text-chars", "0"], "max-text-chars must be at least 1"),
    ],
)
def test_text_node_command_errors(argv, message, federation_file, capsys):
    assert main(["text-node", *(a.format(fed=federation_file) for a in argv)]) == 2
    assert message in capsys.readouterr().err


def test_missing_certificates_are_named_before_loading_anything(tmp_path, capsys):
    (tmp_path / "federation.toml").write_text(FEDERATION)
    assert (
        main(
            [
                "text-node",
                "--federation",
                str(tmp_path / "federation.toml"),
                "--id",
                "scribe",
                "--embedding",
                str(tmp_path / "no-such-embedding.txt"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "mpcdp certs init" in err and "no-such-embedding" not in err
