"""The ``mpcdp`` command explains itself and turns a user's mistake into one line, not a traceback.

In-process ``main([...])`` calls only: no server is started (budget: under 5 s).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil

import numpy as np
import pytest

from services.cli import build_parser, main
from tests.support import ROOT

SURVEY = str(ROOT / "examples" / "election_poll.toml")


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("mpcdp",)):
    """Every parser of the tree with its command path, and the one-line help its parent lists it with."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert listed.get(name), f"{' '.join(path)} lists {name} without a one-line help"
                yield from walk(sub, (*path, name))


PARSERS = list(walk(build_parser()))
COMMANDS = sorted({path[1] for path, _ in PARSERS if len(path) > 1})


def test_the_tree_holds_every_command_and_subcommand():
    assert set(COMMANDS) >= {
        "certs",
        "coordinator",
        "demo",
        "party",
        "query",
        "simulate",
        "survey",
        "text",
        "text-node",
    }
    assert {path[-1] for path, _ in PARSERS if path[:2] == ("mpcdp", "survey")} >= {
        "aggregator",
        "submit",
        "close",
        "simulate",
        "report",
    }


@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) for p, _ in PARSERS])
def test_every_parser_describes_itself_and_every_option_has_help(path, parser):
    assert parser.description and parser.description.strip(), f"{' '.join(path)} has no description"
    assert parser.epilog and parser.epilog.startswith("examples:"), f"{' '.join(path)} has no examples"
    assert isinstance(parser.formatter_class, type)
    assert issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and action.help.strip(), f"{' '.join(path)} {action.option_strings} has no help"


def _example_commands():
    for path, parser in PARSERS:
        for line in (parser.epilog or "").splitlines()[1:]:
            command = line.split("|")[-1].split(" #")[0].strip()
            if command.startswith("mpcdp "):
                yield " ".join(path), command


EXAMPLES = list(_example_commands())


@pytest.mark.parametrize("where, command", EXAMPLES, ids=[c for _, c in EXAMPLES])
def test_every_example_parses_and_names_files_that_exist(where, command):
    argv = shlex.split(command)[1:]
    build_parser().parse_args(argv)  # a usage error would exit
    for arg in argv:
        if arg.startswith("examples/"):
            assert (ROOT / arg).exists(), f"{where}: example names a missing file {arg}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command_exits_0_and_shows_examples(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mpcdp {command}") and "\nexamples:\n" in out


def test_no_command_prints_the_overview_and_fails(capsys):
    assert main([]) == 2
    assert "Who sees what" in capsys.readouterr().out


@pytest.fixture
def engineers(tmp_path):
    """The example federation copied without certificates."""
    shutil.copytree(
        ROOT / "examples" / "engineers", tmp_path / "engineers", ignore=shutil.ignore_patterns("certs", "state")
    )
    return str(tmp_path / "engineers" / "federation.toml")


MISTAKES = [
    # (argv, exit code, words the one line must contain)
    (["query", "--federation", "{tmp}/nope.toml", "--statistic", "mean"], 2, "does not exist"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--bounds", "5"], 2, "LO,HI"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--bounds", "0,x"], 2, "LO,HI"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--bounds", "9,1"], 2, "LO <= HI"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--epsilon", "0"], 2, "--epsilon: must be > 0"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--epsilon", "-1"], 2, "--epsilon: must be > 0"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--epsilon", "1"], 2, "mpcdp certs init"),
    (["query", "--federation", "{fed}", "--statistic", "mean", "--id", "nobody"], 2, "no node named 'nobody'"),
    (["query", "--federation", "{fed}", "--statistic", "mode"], 2, "invalid choice"),
    (["party", "--federation", "{fed}", "--id", "alice"], 2, "mpcdp certs init"),
    (["party", "--federation", "{fed}", "--id", "alice", "--listen", "nowhere"], 2, "host:port"),
    (["coordinator", "--federation", "{fed}"], 2, "mpcdp certs init"),
    (["coordinator", "--federation", "{tmp}/nope.toml"], 2, "does not exist"),
    (["certs", "init", "--federation", "{fed}", "--out", "{tmp}/a-file/certs"], 1, "cannot write certificates"),
    (["simulate", "--parties", "1"], 2, "at least 2"),
    (["simulate", "--epsilon", "0"], 2, "--epsilon: must be > 0"),
    (["simulate", "--parties", "2", "--values", "1,x"], 2, "one number per party"),
    (["survey", "simulate", "--survey", "{tmp}/nope.toml"], 1, "cannot read"),
    (["survey", "simulate", "--survey", SURVEY, "--respondents", "0"], 2, "at least 1"),
    (["survey", "simulate", "--survey", SURVEY, "--batch", "0"], 2, "at least 1"),
    (["survey", "simulate", "--survey", SURVEY, "--store", "bogus"], 2, "sqlite, memory or postgresql"),
    (["survey", "simulate", "--survey", SURVEY, "--level", "95"], 2, "between 0 and 1"),
    (["survey", "close", "--survey", SURVEY], 1, "--certs"),
    (["survey", "close", "--survey", SURVEY, "--certs", "{tmp}/no-certs"], 1, "no-certs/ca.pem"),
    (
        ["survey", "aggregator", "--survey", SURVEY, "--name", "pollster-a", "--certs", "{tmp}/no-certs"],
        1,
        "no-certs/pollster-a.key",
    ),
    (
        ["survey", "submit", "--survey", SURVEY, "--answers", "{tmp}/a.json", "--certs", "{tmp}/no-certs"],
        1,
        "no-certs/ca.pem",
    ),
    (["survey", "report", "--results", "{tmp}/nope.json"], 2, "cannot read"),
    (["text", "sanitize", "{tmp}/a.json", "--epsilon", "0"], 2, "--epsilon: must be > 0"),
    (["text", "sanitize", "{tmp}/a.json", "--epsilon", "100", "-o", "{tmp}/no-dir/out.txt"], 2, "does not exist"),
    (["text", "sanitize", "{tmp}/missing.txt", "--epsilon", "100"], 2, "does not exist"),
]


@pytest.mark.parametrize("argv, code, words", MISTAKES, ids=[" ".join(m[0][:3]) + " " + m[2] for m in MISTAKES])
def test_a_user_mistake_is_one_line_and_an_exit_code(argv, code, words, engineers, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a.json").write_text(json.dumps({"will_vote": True}))
    assert main([a.format(fed=engineers, tmp=tmp_path) for a in argv]) == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err + captured.out
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"mpcdp {argv[0]}") and words in err, err


def test_sanitize_json_gives_one_object_per_line_with_its_cost(tmp_path, capsys):
    words = ("good", "movie", "bad", "film", "plot", "actor")
    vectors = np.arange(len(words) * 4, dtype=np.float64).reshape(len(words), 4) ** 0.5
    glove = tmp_path / "tiny.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vectors)))
    src = tmp_path / "in.txt"
    src.write_text("Good movie!\nbad Zorblax\n")
    assert (
        main(
            [
                "text",
                "sanitize",
                str(src),
                "--json",
                "--mechanism",
                "multivariate-laplace",
                "--epsilon",
                "1e9",
                "--embedding",
                str(glove),
                "--neighbors",
                "3",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["text"] for d in lines] == ["Good movie!", "bad <unk>"]
    assert [(d["words_perturbed"], d["oov_words"]) for d in lines] == [(2, 0), (1, 1)]
    assert all(d["epsilon_per_word"] == 1e9 and d["mechanism"] == "multivariate-laplace" for d in lines)


def test_certs_init_for_a_survey_names_its_aggregators_coordinator_and_issuer(tmp_path, capsys):
    assert main(["certs", "init", "--survey", SURVEY, "--out", str(tmp_path)]) == 0
    names = {p.stem for p in tmp_path.glob("*.pem")}
    # respondents of a verified survey come with a token, not a certificate
    assert names == {"ca", "pollster-a", "pollster-b", "university-c", "coordinator", "issuer"}
    assert main(["certs", "init", "--survey", SURVEY, "--out", str(tmp_path)]) == 1  # keeps an existing CA
    assert "--force" in capsys.readouterr().err


def test_query_output_shows_every_kind_of_interval():
    from services.analyst import QueryResult

    r = QueryResult(
        session_id="00",
        statistic="mean",
        parties=("a", "b"),
        epsilon=1.0,
        delta=0.0,
        mechanism="discrete_laplace",
        confidence=0.95,
        noise_std={"sum": 2.0},
        result={"mean": np.array([1.0, 2.0]), "count": 10.0, "histogram": {"yes": 3.0}},
        intervals={
            "mean": {"lower": np.array([0.5, 1.5]), "upper": np.array([1.5, 2.5])},
            "count": [8.0, 12.0],
            "histogram": {"yes": [1.0, 5.0]},
            "variance": None,
        },
    )
    text = r.to_text()
    assert "95% interval for mean: lower [0.5, 1.5], upper [1.5, 2.5]" in text
    assert "95% interval for count: [8, 12]" in text
    assert "95% interval for histogram[yes]: [1, 5]" in text
    assert "interval for variance: none" in text


@pytest.mark.parametrize(
    "argv, dest, expected",
    [
        (["query", "--federation", "f.toml", "--statistic", "mean", "--bounds", "-10,10"], "bounds", (-10.0, 10.0)),
        (["simulate", "--bounds", "-10,-5"], "bounds", (-10.0, -5.0)),
        (["simulate", "--values", "-3,-4,-5,-6"], "values", "-3,-4,-5,-6"),
        (["simulate", "--bounds", "-.5,1e3"], "bounds", (-0.5, 1000.0)),
    ],
)
def test_a_negative_value_after_an_option_is_its_value_not_an_option(argv, dest, expected):
    assert getattr(build_parser().parse_args(argv), dest) == expected


def test_an_unknown_option_is_still_refused(capsys):
    assert main(["simulate", "--bogus", "1"]) == 2
    assert "--bogus" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["party", "coordinator"])
def test_serving_commands_take_audit_and_server_limit_options(command):
    from services.commands import node_limits

    argv = [
        command,
        "--federation",
        "f.toml",
        "--log-format",
        "json",
        "--audit-log",
        "a.log",
        "--idle-timeout",
        "30",
        "--keepalive-time",
        "15",
        "--keepalive-timeout",
        "5",
        "--max-message-mib",
        "8",
        "--max-streams",
        "10",
    ]
    if command == "party":
        argv += ["--id", "alice"]
    args = build_parser().parse_args(argv)
    limits = node_limits(args)
    assert (args.log_format, args.audit_log) == ("json", "a.log")
    assert (limits.idle_timeout, limits.keepalive_time, limits.keepalive_timeout) == (30, 15, 5)
    assert (limits.max_message_bytes, limits.max_concurrent_streams) == (8 << 20, 10)
