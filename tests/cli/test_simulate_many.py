"""``mpcdp simulate`` with many parties in one process (issue 14): the right answer, dropouts, clear refusals."""

from __future__ import annotations

import json

from services.cli import main


def test_a_hundred_parties_print_the_exact_sum(capsys):
    assert main(["simulate", "--parties", "100", "--statistic", "sum", "--bounds", "0,1", "--seed", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counted"] == 100 and doc["dropped"] == [] and doc["degree"] < 99
    assert abs(doc["value"] - doc["in_the_clear"]) < 1e-9


def test_parties_that_drop_are_named_and_the_epsilon_restated(capsys):
    argv = ["simulate", "--parties", "40", "--statistic", "sum", "--bounds", "0,10", "--seed", "2"]
    assert main([*argv, "--epsilon", "1", "--quorum", "34", "--drop", "6"]) == 0
    out = capsys.readouterr().out
    assert "counted 35 of 40 parties (quorum 34); dropped: " in out  # the one stopped after masking counts
    assert "epsilon for the 35 counted parties: " in out
    assert float(out.split("epsilon for the 35 counted parties: ")[1].split()[0]) > 1


def test_too_many_dropouts_for_the_quorum_is_one_line(capsys):
    assert main(["simulate", "--parties", "30", "--quorum", "28", "--drop", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mpcdp simulate: --drop 5 exceeds the 2 dropouts --quorum allows"
    assert main(["simulate", "--parties", "30", "--quorum", "31"]) == 2
    assert "quorum must be an integer in [2, 30]" in capsys.readouterr().err
