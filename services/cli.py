"""The ``mpcdp`` command: one entry point, one subcommand per module in services.commands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from . import commands

DESCRIPTION = """\
Compute statistics over private data held by many parties.

Who sees what: additive secret sharing means no node (party, aggregator
or coordinator) sees another party's input or any exact aggregate;
differential privacy (DP) noise, produced jointly so that no single node
knows it, means the released result says almost nothing about any one
record. Every DP release costs epsilon from a per-dataset budget: smaller
epsilon is more private and noisier.

Run `mpcdp COMMAND --help` for what each command does and protects."""


_NUMERIC = re.compile(r"^-\.?[0-9]")  # -10,10  -1e-3  -.5: a value, never an option (no option starts so)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2), not a usage dump.

    A word starting with a minus sign and a digit is a value, so ``--bounds -10,10`` parses like
    ``--bounds=-10,10`` (argparse alone takes it for an unknown option).
    """

    def _parse_optional(self, arg_string):
        if _NUMERIC.match(arg_string):
            return None
        return super()._parse_optional(arg_string)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def command_modules() -> dict[str, str]:
    """Each command's name and the module of :mod:`services.commands` defining it (``text_node`` defines
    ``text-node``): finding them reads the package folder, importing none."""
    names = (info.name for info in pkgutil.iter_modules(commands.__path__))
    return {name.replace("_", "-"): name for name in sorted(names)}


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The ``mpcdp`` parser. Given the command line ``argv``, it imports only the command ``argv`` starts with,
    so a node or a one-off command starts without loading every other command's libraries; without ``argv``,
    or when it names no command (``mpcdp --help``, a typo), every command is registered."""
    parser = Parser(
        prog="mpcdp",
        description=DESCRIPTION,
        epilog=commands.examples(
            "mpcdp demo",
            "mpcdp simulate --parties 4 --values 3800,2514,2982,3390 --statistic mean --bounds 0,10000 --epsilon 1",
            "mpcdp survey simulate --survey examples/election_poll.toml --respondents 20000 --seed 1",
        ),
        formatter_class=commands.Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = command_modules()
    if argv and argv[0] in modules:
        modules = {argv[0]: modules[argv[0]]}
    for module in modules.values():
        importlib.import_module(f"{commands.__name__}.{module}").register(sub)
    return parser


def main(argv=None) -> int:
    """Run one command; returns its exit code (also for --help and usage errors, which argparse exits on)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file, folder, certificate or address the user named: one line, no traceback
        print(f"mpcdp {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
