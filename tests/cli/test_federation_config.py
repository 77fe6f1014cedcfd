"""Federation files, local data sources and the certificate command: clear errors naming the field."""

import argparse
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509

from mpcdp.protocol import PartyPolicy, QuerySpec
from services import federation as fed
from services.cli import main
from services.data import DataError, Table
from tests.support import ROOT

PARTIES = ("alice", "bob")


def doc(**node):
    base = {"name": "alice", "address": "127.0.0.1:5001", "roles": ["party"]}
    return {"node": [{**base, **node}]}


def test_example_federations_parse():
    f = fed.load(ROOT / "examples" / "engineers" / "federation.toml")
    assert f.coordinator().name == "coordinator"
    assert f.names("party") == ["alice", "bob", "carol"] and f.names("client") == ["analyst"]
    assert f.policy_for("alice").epsilon_budget == 10.0
    table = Table.load(f.node("alice").data)
    assert table.records(QuerySpec("mean", parties=PARTIES, column="raise", bounds=(0, 1e4), max_records=10)).shape == (
        3,
        1,
    )


@pytest.mark.parametrize(
    "node, match",
    [
        (dict(name="a b"), "name"),
        (dict(roles=["boss"]), "roles"),
        (dict(address="localhost"), "host:port"),
        (dict(address="h:70000"), "host:port"),
        (dict(policy={"max_epsilon": "lots"}), "max_epsilon"),
        (dict(policy={"colour": 1}), "unknown policy key 'colour'; known: allow_exact"),
        (dict(policy={"max_records": 0}), "max_records: Input should be greater than or equal to 1"),
        (dict(policy={"allow_exact": "yes"}), "allow_exact"),
        (dict(colour="red"), "unknown node key 'colour'"),
        (dict(address=None), "needs an address"),
    ],
)
def test_malformed_federation_names_the_field(node, match):
    with pytest.raises(fed.FederationError, match=match):
        fed.parse(doc(**node), Path("."))


def test_errors_name_the_line_of_the_file(tmp_path):
    path = tmp_path / "federation.toml"
    path.write_text(
        '[federation]\nname = "x"\n\n[policy]\nmax_epsilon = -1\n\n[[node]]\nname = "alice"\n'
        'address = "127.0.0.1:5001"\nroles = ["party"]\n\n[[node]]\nname = "bob"\naddress = "nowhere"\n'
        'roles = ["party"]\n'
    )
    with pytest.raises(fed.FederationError, match=r"federation.toml:5: policy.max_epsilon: .*greater than or equal"):
        fed.load(path)
    path.write_text(path.read_text().replace("max_epsilon = -1", "max_epsilon = 1"))
    with pytest.raises(fed.FederationError, match=r"federation.toml:14: node 'bob': address: .*host:port"):
        fed.load(path)


def test_a_node_policy_overrides_the_federations_and_becomes_the_librarys_party_policy(tmp_path):
    f = fed.parse(
        {
            "policy": {"max_epsilon": 2, "allow_exact": True, "epsilon_budget": 5},
            "node": [doc(policy={"max_epsilon": 0.5, "columns": ["raise"], "one_round": False})["node"][0]],
        },
        tmp_path,
    )
    mine = f.policy_for("alice")
    assert (mine.max_epsilon, mine.allow_exact, mine.epsilon_budget, mine.one_round) == (0.5, True, 5.0, False)
    assert mine.max_timeout is None and mine.party().max_timeout == PartyPolicy.max_timeout  # the library's default
    party = mine.party()
    assert (party.max_epsilon, party.allow_exact, party.columns, party.one_round) == (0.5, True, ("raise",), False)
    assert not party.allow_exact_nonlinear  # the comparisons' opt-in is its own (one policy for both)
    assert f.policy.party().one_round and f.policy.party().statistics == PartyPolicy().statistics


def test_duplicate_nodes_and_missing_files_are_refused(tmp_path):
    with pytest.raises(fed.FederationError, match="duplicate"):
        fed.parse({"node": doc()["node"] * 2}, tmp_path)
    with pytest.raises(fed.FederationError, match="does not exist"):
        fed.load(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[[node]\n")
    with pytest.raises(fed.FederationError, match="TOML"):
        fed.load(tmp_path / "bad.toml")


def test_sqlite_and_npy_sources(tmp_path):
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE pay (raise REAL, team TEXT)")
        conn.executemany("INSERT INTO pay VALUES (?, ?)", [(1.5, "x"), (2.5, "y")])
    table = Table.load(f"sqlite:{db}", "pay")
    hist = QuerySpec("histogram", parties=PARTIES, column="team", categories=("x", "y"), max_records=5)
    assert table.records(hist) == ["x", "y"]
    np.save(tmp_path / "v.npy", np.ones((2, 3)))
    vec = QuerySpec("sum", parties=PARTIES, dimension=3, max_records=5)
    assert Table.load(tmp_path / "v.npy").records(vec).shape == (2, 3)
    with pytest.raises(DataError, match="length 3, not 4"):
        Table.load(tmp_path / "v.npy").records(QuerySpec("sum", parties=PARTIES, dimension=4, max_records=5))
    with pytest.raises(DataError, match="table"):
        Table.load(f"sqlite:{db}", "pay; drop")
    with pytest.raises(DataError, match="not offered"):
        table.records(QuerySpec("mean", parties=PARTIES, column="salary"))
    with pytest.raises(DataError, match="non-numeric"):
        table.records(QuerySpec("mean", parties=PARTIES, column="team", max_records=5))


def test_certs_init_names_every_node_and_refuses_to_overwrite(tmp_path, capsys):
    f = tmp_path / "fed.toml"
    f.write_text((ROOT / "examples" / "engineers" / "federation.toml").read_text())
    assert main(["certs", "init", "--federation", str(f)]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "certs" / "ca.pem").read_bytes())
    alice = x509.load_pem_x509_certificate((tmp_path / "certs" / "alice.pem").read_bytes())
    assert alice.issuer == ca.subject
    assert alice.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["alice"]
    assert (tmp_path / "certs" / "alice.key").stat().st_mode & 0o077 == 0
    assert main(["certs", "init", "--federation", str(f)]) == 1
    assert "--force" in capsys.readouterr().err


def test_query_command_refuses_bad_bounds_without_contacting_anyone(capsys):
    fed_file = ROOT / "examples" / "engineers" / "federation.toml"
    assert main(["query", "--federation", str(fed_file), "--statistic", "mean", "--bounds", "5"]) == 2
    assert "LO,HI" in capsys.readouterr().err


def test_state_directory_and_max_timeout_are_configurable(tmp_path):
    from services.federation import FederationError, parse

    doc = {
        "policy": {"max_timeout": 60},
        "node": [
            {"name": "coordinator", "address": "127.0.0.1:1", "roles": ["coordinator"], "ledger": "s/c.db"},
            {"name": "alice", "address": "127.0.0.1:2", "roles": ["party"], "state": "alice-state"},
            {"name": "analyst", "roles": ["client"]},
        ],
    }
    f = parse(doc, tmp_path)
    assert f.policy.max_timeout == 60.0
    assert f.node("coordinator").state_dir == tmp_path / "s" and f.node("alice").state_dir == tmp_path / "alice-state"
    assert f.node("analyst").state_dir is None
    doc["policy"]["max_timeout"] = 0
    with pytest.raises(FederationError, match="max_timeout"):
        parse(doc, tmp_path)


@pytest.mark.parametrize(
    "node, words",
    [
        (dict(link_port=0), "link_port: Input should be greater than or equal to 1"),
        (dict(link_port=65536), "link_port: Input should be less than or equal to 65535"),
        (dict(link_port="6000"), "link_port: Input should be a valid integer"),
        (dict(link_port=5001), "link_port: 5001 is the node's gRPC port"),
        (dict(client_link_port=6001), "client_link_port: only a coordinator"),
        (dict(roles=["coordinator"], link_port=6000, client_link_port=6000), "client_link_port: 6000 is the link_port"),
        (dict(roles=["coordinator"], client_link_port=5001), "client_link_port: 5001 is the node's gRPC port"),
    ],
)
def test_a_link_port_is_a_port_of_its_own(node, words):
    with pytest.raises(fed.FederationError) as refused:
        fed.parse(doc(**node), Path("."))
    assert f"federation: node 'alice': {words}" in str(refused.value)


def test_link_ports_come_from_the_file_and_default_to_a_free_port():
    f = fed.parse(doc(roles=["coordinator"], link_port=6000, client_link_port=6001), Path("."))
    assert f.link_ports("alice") == (6000, 6001) and f.link_ports("nobody") == (0, 0)
    assert fed.parse(doc(), Path(".")).link_ports("alice") == (0, 0)


def test_the_link_port_flags_are_documented_and_checked(tmp_path, capsys):
    assert main(["coordinator", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--link-port PORT" in text and "--client-link-port PORT" in text and "firewall" in text
    path = tmp_path / "federation.toml"
    path.write_text('[[node]]\nname = "alice"\naddress = "127.0.0.1:5001"\nroles = ["party"]\n')
    assert main(["party", "--federation", str(path), "--id", "alice", "--values", "1", "--link-port", "70000"]) == 2
    assert "--link-port: must be in [1, 65535], got 70000" in capsys.readouterr().err
    argv = ["party", "--federation", str(path), "--id", "alice", "--values", "1", "--insecure", "--link-port", "5001"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "mpcdp party: --link-port: 5001 is the node's gRPC port (its address)" in err and "Traceback" not in err
    # review-tidy F6: the key the user gave is named (the flag, not the file's key; --listen's port, not the address)
    argv[-1] = "6000"
    assert main([*argv, "--listen", "127.0.0.1:6000"]) == 2
    assert "mpcdp party: --link-port: 6000 is the node's gRPC port (--listen)" in capsys.readouterr().err


def test_a_clients_link_port_under_insecure_is_refused_as_a_flag_and_noted_from_the_file(tmp_path, capsys):
    """review-tidy F6: under --insecure the clients' query link hub does not listen; its port was silently unused."""
    from services.commands import link_ports

    node = fed.parse(doc(roles=["coordinator"], client_link_port=6001), Path(".")).node("alice")
    args = argparse.Namespace(link_port=None, client_link_port=6002, insecure=True, listen=None)
    with pytest.raises(ValueError, match="--client-link-port: under --insecure clients are served over gRPC only"):
        link_ports(args, node, "127.0.0.1:5001")
    args.client_link_port = None
    assert link_ports(args, node, "127.0.0.1:5001") == (0, 0)
    assert "note: client_link_port 6001 is unused under --insecure" in capsys.readouterr().err
    args.insecure = False
    assert link_ports(args, node, "127.0.0.1:5001") == (0, 6001)


@pytest.mark.parametrize(
    "second, words",
    [
        (
            dict(link_port=7000),
            "'bob': link_port: 7000 on 127.0.0.1 is where node 'alice' listens too (link_port)",
        ),
        (
            dict(link_port=5001),
            "'bob': link_port: 5001 on 127.0.0.1 is where node 'alice' listens too (its gRPC",
        ),
        (
            dict(address="127.0.0.1:7000"),
            "'bob': address: 7000 on 127.0.0.1 is where node 'alice' listens too (link_port)",
        ),
    ],
)
def test_two_nodes_on_one_host_never_share_a_port(second, words):
    """review-tidy F6: ports were checked within one node only; a clash between nodes failed the second's start."""
    two = {
        "node": [
            *doc(link_port=7000)["node"],
            {"name": "bob", "address": "127.0.0.1:5002", "roles": ["party"], **second},
        ]
    }
    with pytest.raises(fed.FederationError) as refused:
        fed.parse(two, Path("."))
    assert words in str(refused.value)
    other_host = {**two["node"][1], "address": "10.0.0.2:" + two["node"][1]["address"].rsplit(":", 1)[1]}
    fed.parse({"node": [two["node"][0], other_host]}, Path("."))  # another host: no clash
