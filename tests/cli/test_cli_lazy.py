"""``mpcdp X`` imports only command X (a node starts without every other command's libraries), and says the
same as when every command is loaded."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from services.cli import build_parser, command_modules
from tests.support import ROOT


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def helps(parser: argparse.ArgumentParser, prefix: str = "mpcdp") -> dict[str, str]:
    """The --help text of the parser and of every parser below it, by command path."""
    out = {prefix: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(helps(sub, f"{prefix} {name}"))
    return out


@pytest.mark.parametrize("name,module", sorted(command_modules().items()))
def test_each_command_module_registers_the_command_named_after_it(name, module):
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"services.commands.{module}").register(sub)
    assert list(sub.choices) == [name]


def test_a_lazily_built_parser_says_what_the_full_one_says():
    full = helps(build_parser())
    for name in command_modules():
        lazy = build_parser([name, "--help"])
        assert list(subparsers(lazy).choices) == [name]
        own = {path: text for path, text in helps(lazy).items() if path != "mpcdp"}
        assert own and own == {path: text for path, text in full.items() if path.split()[1:2] == [name]}
    for argv in ([], ["--help"], ["no-such-command"], ["text_node"]):
        assert list(subparsers(build_parser(argv)).choices) == list(command_modules())


def loaded_by(*argv: str) -> set[str]:
    """The modules one ``mpcdp`` command line imports, in a fresh interpreter."""
    code = (
        f"import json, sys\nfrom services.cli import main\nmain({list(argv)!r})\nprint(json.dumps(sorted(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def packages(loaded: set[str], *names: str) -> set[str]:
    """Which of the packages ``names`` (or a module below one) are among ``loaded``."""
    return {name for name in names if name in loaded or any(m.startswith(name + ".") for m in loaded)}


def test_the_text_node_starts_without_the_other_commands_or_scipy():
    loaded = loaded_by("text-node", "--help")
    assert "services.commands.text_node" in loaded
    assert not {f"services.commands.{m}" for m in command_modules().values() if m != "text_node"} & loaded
    assert not packages(loaded, "scipy", "mpcdp.protocol")


@pytest.mark.parametrize("command", ["coordinator", "party", "certs", "demo"])
def test_a_commands_help_loads_no_node(command):
    nodes = ("services.coordinator_node", "services.party_node", "services.analyst", "services.simulation")
    assert not packages(loaded_by(command, "--help"), "scipy", "pydantic", "services.federation", *nodes)


def test_the_help_of_every_command_loads_no_scipy_no_grpc_and_no_node():
    nodes = ("services.coordinator_node", "services.party_node", "services.analyst", "services.text_node")
    assert not packages(loaded_by("--help"), "scipy", "faiss", "grpc", "pydantic", "services.federation", *nodes)


def test_the_survey_commands_help_loads_no_survey_library_and_no_server():
    assert not packages(loaded_by("survey", "--help"), "mpcdp.survey", "mpcdp.tokens", "numpy", "starlette", "scipy")
