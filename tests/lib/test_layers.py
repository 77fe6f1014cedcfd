"""The layering the README promises, checked on the source (ast, nothing imported).

1. ``mpcdp/`` is the pure library: no module under it imports grpc, protobuf,
   an HTTP framework or ``services/`` - at module level, inside a function,
   under ``TYPE_CHECKING``, relatively (``from ...services``) or by a string
   (``importlib.import_module``, ``__import__``, ``importlib.util.find_spec``).
2. No arrow runs downward into the foundations: ``ring``, ``prg``,
   ``sharing``, ``registry``, ``names`` and ``sqlite_files`` import only each other;
   ``dp/`` imports only them and itself; nothing in the library outside ``survey/`` imports the respondent client
   ``mpcdp.survey.respondent``.
3. No import circle among mpcdp modules, except the ones listed in
   ``ALLOWED_CIRCLES`` (today's, to be removed by issue 10, "The house").
4. In ``services/``, nothing imports the command line (``services.cli``,
   ``services.commands``) but the command line itself, and one command
   module does not import another (shared pieces live in
   ``services/commands/__init__.py`` or a helper module), except the arrows
   listed in ``ALLOWED_COMMAND_IMPORTS`` (today's, issue 10 removes them).

Run ``python tests/lib/test_layers.py`` to print the import graph's circles.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "mpcdp"
FORBIDDEN = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "google.protobuf",
    "services",
    "aiohttp",
    "fastapi",
    "flask",
    "starlette",
    "httpx",
    "requests",
    "urllib3",
)
FOUNDATIONS = ("mpcdp.ring", "mpcdp.prg", "mpcdp.sharing", "mpcdp.registry", "mpcdp.names", "mpcdp.sqlite_files")
STRING_IMPORTERS = ("import_module", "__import__", "find_spec")

# Issue 10 ("The house") removed the only circle (protocol.spec <-> noise <-> statistics): the
# statistic and mechanism registries need no spec, only a structural SpecShape.
# Do not add to this list: a new circle is a design error to fix, not to allow. When a circle
# disappears, delete its entry (test_allowed_circles_still_exist says so).
ALLOWED_CIRCLES: tuple[frozenset[str], ...] = ()

# Issue 10 ("The house"): CLI command modules do not import each other; what they share lives in
# services/commands/__init__.py. Do not add to this list.
ALLOWED_COMMAND_IMPORTS: frozenset[tuple[str, str]] = frozenset()
CLI = ("services.cli", "services.commands")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or the name a string import asks for)
    line: int
    how: str  # "import", "from", or the string importer's name

    def where(self) -> str:
        return f"{self.source.replace('.', '/')}.py:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(top: str) -> dict[str, Path]:
    """Module name -> file, for every module under ``top`` (generated protobuf code excluded)."""
    return {
        module_name(p): p
        for p in sorted((ROOT / top).rglob("*.py"))
        if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    }


def library_files() -> dict[str, Path]:
    return python_files(LIBRARY)


def _resolve(source: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module a relative ``from`` import names."""
    if not level:
        return module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, path: Path, modules: set[str]) -> list[Import]:
    """Every import in one file, wherever it stands, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(source, alias.name, node.lineno, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(source, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"  # ``from package import submodule`` imports the submodule
                out.append(Import(source, sub if sub in modules else base, node.lineno, "from"))
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in STRING_IMPORTERS and node.args:
                arg = node.args[0]
                target = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<dynamic>"
                out.append(Import(source, target, node.lineno, name))
    return out


def imports_under(top: str) -> list[Import]:
    files = python_files(top)
    return [imp for name, path in files.items() for imp in imports_of(name, path, set(files))]


def library_imports() -> list[Import]:
    return imports_under(LIBRARY)


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def graph() -> dict[str, set[str]]:
    """mpcdp module -> the mpcdp modules it imports (anywhere in the file)."""
    modules = set(library_files())
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in library_imports():
        if imp.target in modules and imp.target != imp.source:
            edges[imp.source].add(imp.target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), each an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def describe(circle: frozenset[str], edges: dict[str, set[str]]) -> str:
    arrows = sorted(f"{a} -> {b}" for a in circle for b in edges[a] if b in circle)
    return "{" + ", ".join(sorted(circle)) + "} via " + "; ".join(arrows)


# -- the tests ------------------------------------------------------------------------------------


def test_the_library_imports_no_transport_and_no_service():
    bad = [
        imp for imp in library_imports() if any(_within(imp.target, f) for f in FORBIDDEN) or imp.target == "<dynamic>"
    ]
    assert not bad, "mpcdp/ must stay pure (no grpc, protobuf, HTTP or services/, no dynamic imports):\n" + "\n".join(
        f"  {imp.where()}: {imp.how} {imp.target}" for imp in bad
    )


def test_foundations_and_dp_import_nothing_above_them():
    allowed = {"foundations": FOUNDATIONS, "mpcdp.dp": FOUNDATIONS + ("mpcdp.dp",)}
    bad = []
    for imp in library_imports():
        if not _within(imp.target, LIBRARY) or imp.target == LIBRARY:
            continue
        layer = "foundations" if imp.source in FOUNDATIONS else "mpcdp.dp" if _within(imp.source, "mpcdp.dp") else None
        if layer and not any(_within(imp.target, ok) for ok in allowed[layer]):
            bad.append(f"  {imp.where()}: {layer} imports {imp.target}")
        if (
            _within(imp.target, "mpcdp.survey.respondent")
            and imp.source != "mpcdp"
            and not _within(imp.source, "mpcdp.survey")
        ):
            bad.append(f"  {imp.where()}: the library imports the respondent client {imp.target}")
    assert not bad, "an import runs upward:\n" + "\n".join(bad)


def test_no_new_import_circle():
    edges = graph()
    new = [c for c in circles(edges) if c not in ALLOWED_CIRCLES]
    assert not new, "new import circle(s) among mpcdp modules (see issue 10, 'The house'):\n" + "\n".join(
        "  " + describe(c, edges) for c in new
    )


def test_allowed_circles_still_exist():
    gone = [c for c in ALLOWED_CIRCLES if c not in circles(graph())]
    assert not gone, "circle(s) removed - delete them from ALLOWED_CIRCLES in tests/lib/test_layers.py: " + "; ".join(
        ", ".join(sorted(c)) for c in gone
    )


def command_line_arrows() -> tuple[list[Import], list[Import]]:
    """(imports of the command line from outside it, imports between two command modules)."""
    into, between = [], []
    for imp in imports_under("services"):
        in_cli = any(_within(imp.source, c) for c in CLI)
        if not in_cli and any(_within(imp.target, c) for c in CLI):
            into.append(imp)
        elif (
            _within(imp.source, "services.commands")
            and _within(imp.target, "services.commands")
            and "services.commands" not in (imp.source, imp.target)
            and imp.source != imp.target
        ):
            between.append(imp)
    return into, between


def test_the_command_line_sits_on_top():
    into, between = command_line_arrows()
    new = [imp for imp in between if (imp.source, imp.target) not in ALLOWED_COMMAND_IMPORTS]
    assert not into, "only the command line may import services.cli or services.commands:\n" + "\n".join(
        f"  {imp.where()}: {imp.target}" for imp in into
    )
    assert not new, (
        "a command module imports another (put the shared piece in services/commands/__init__.py "
        "or a helper module; issue 10, 'The house'):\n"
    ) + "\n".join(f"  {imp.where()}: {imp.target}" for imp in new)
    gone = ALLOWED_COMMAND_IMPORTS - {(imp.source, imp.target) for imp in between}
    assert not gone, f"no longer imported - delete from ALLOWED_COMMAND_IMPORTS: {sorted(gone)}"


# -- the checker checks itself on small trees -----------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    out = {}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[rel] = path
    return out


def test_every_import_form_is_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _write(
        tmp_path,
        {
            "mpcdp/__init__.py": "",
            "mpcdp/a.py": "def f():\n    import grpc\n",
            "mpcdp/b.py": "from ..services import party_node\n",
            "mpcdp/c.py": "import importlib\nimportlib.import_module('services.tls')\n",
            "mpcdp/d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from google.protobuf import struct_pb2\n"
            ),
            "mpcdp/e.py": "__import__(name)\n",
            "mpcdp/pkg/__init__.py": "",
            "mpcdp/pkg/x.py": "from . import y\n",
            "mpcdp/pkg/y.py": "from .. import a\nfrom ..pkg.x import thing\n",
        },
    )
    seen = {(i.source, i.target) for i in library_imports()}
    assert {
        ("mpcdp.a", "grpc"),
        ("mpcdp.b", "services"),
        ("mpcdp.c", "services.tls"),
        ("mpcdp.d", "google.protobuf"),
        ("mpcdp.e", "<dynamic>"),
        ("mpcdp.pkg.x", "mpcdp.pkg.y"),
        ("mpcdp.pkg.y", "mpcdp.a"),
        ("mpcdp.pkg.y", "mpcdp.pkg.x"),
    } <= seen
    try:
        test_the_library_imports_no_transport_and_no_service()
    except AssertionError as exc:
        assert all(f"mpcdp/{m}.py" in str(exc) for m in "abcde")
    else:
        raise AssertionError("the purity test passed on a tree that imports grpc and services")
    assert circles(graph()) == [frozenset({"mpcdp.pkg.x", "mpcdp.pkg.y"})]


def test_a_new_circle_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _write(
        tmp_path,
        {
            "mpcdp/__init__.py": "",
            "mpcdp/ring.py": "def f():\n    from .dp import x\n",
            "mpcdp/dp/__init__.py": "",
            "mpcdp/dp/x.py": "from ..ring import g\n",
        },
    )
    for test in (test_no_new_import_circle, test_foundations_and_dp_import_nothing_above_them):
        try:
            test()
        except AssertionError as exc:
            assert "mpcdp/ring.py:2" in str(exc) or "mpcdp.dp.x" in str(exc)
        else:
            raise AssertionError(f"{test.__name__} passed on a tree with ring <-> dp")


def test_command_line_arrows_are_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _write(
        tmp_path,
        {
            "services/__init__.py": "",
            "services/commands/__init__.py": "def helper(): ...\n",
            "services/commands/a.py": "from services.commands import helper\nfrom . import b\n",
            "services/commands/b.py": "",
            "services/node.py": "from services.commands.a import x\n",
        },
    )
    into, between = command_line_arrows()
    assert [(i.source, i.target) for i in into] == [("services.node", "services.commands.a")]
    assert [(i.source, i.target) for i in between] == [("services.commands.a", "services.commands.b")]


if __name__ == "__main__":
    edges = graph()
    found = circles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} import arrows, {len(found)} circle(s)")
    for c in found:
        print(("  allowed: " if c in ALLOWED_CIRCLES else "  NEW: ") + describe(c, edges))
    into, between = command_line_arrows()
    for where, target, source in sorted({(imp.where(), imp.target, imp.source) for imp in into + between}):
        known = (source, target) in ALLOWED_COMMAND_IMPORTS
        print(f"  {'allowed' if known else 'NEW'} command-line import: {where}: {target}")
