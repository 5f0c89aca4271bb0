"""Imports run one way (docs/ARCHITECTURE.md, "Map"): a module imports only from its own layer or the layers below.

Every ``import`` statement of the package is read with ``ast``, function-level (lazy) ones included, so a
deferred import is no way around the rule. Strings handed to ``importlib`` (the front door's subcommand table)
are not imports and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hierlatent

PACKAGE = Path(hierlatent.__file__).resolve().parent

#: bottom to top; a module belongs to the layer of its longest matching prefix. Top-level modules named
#: nowhere (errors, io, revisions, documents, events, _splitmix, _proc, ...) are leaves.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaves", ()),
    ("corpora", ("hierlatent.corpora",)),
    ("data", ("hierlatent.data",)),
    ("model", ("hierlatent.model", "hierlatent.module")),
    ("probes", ("hierlatent.probes",)),
    ("callbacks", ("hierlatent.callbacks",)),
    ("consumers", ("hierlatent.olmo", "hierlatent.plot", "hierlatent.sweep", "hierlatent.compare")),
    # the subcommands' entry points sit on top with the front door, whatever package holds them
    ("command", ("hierlatent.__main__", "hierlatent.commands", "hierlatent.cli", "hierlatent.cli_checks",
                 "hierlatent.cli_report",
                 "hierlatent.trainer", "hierlatent.resume", "hierlatent.plot.cli", "hierlatent.sweep.cli",
                 "hierlatent.compare.cli")),
)
#: packages of one layer that must not import each other (each reads only files, never another's code)
PEERS = ("hierlatent.olmo", "hierlatent.plot", "hierlatent.sweep", "hierlatent.compare")
_CONSUMERS = [name for name, _ in LAYERS].index("consumers")


def _prefix(module: str, prefixes: tuple[str, ...]) -> str | None:
    hits = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(hits, key=len, default=None)


def layer_of(module: str) -> int:
    """Index into ``LAYERS`` of a dotted module name (longest prefix wins; unnamed modules are leaves)."""
    best, where = "", 0
    for i, (_, prefixes) in enumerate(LAYERS):
        hit = _prefix(module, prefixes)
        if hit is not None and len(hit) > len(best):
            best, where = hit, i
    return where


def module_name(path: Path) -> str:
    """``.../hierlatent/corpora/pcfg.py`` -> ``hierlatent.corpora.pcfg`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every hierlatent import in ``source`` (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".")
            if node.level:
                base = base[: len(base) - node.level + is_package]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        out += [(node.lineno, n) for n in names if n == "hierlatent" or n.startswith("hierlatent.")]
    return out


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """One line per import of ``source`` that points to a higher layer or to a peer package."""
    own, own_peer = layer_of(module), _prefix(module, PEERS)
    bad = []
    for line, target in imported(module, source, is_package):
        theirs, their_peer = layer_of(target), _prefix(target, PEERS)
        if theirs > own:
            bad.append(f"{module}:{line} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
        elif own == theirs == _CONSUMERS and own_peer != their_peer:
            bad.append(f"{module}:{line} imports its peer {target}")
    return bad


def test_every_import_points_down_the_layers():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the walk found the package
    bad = [v for f in files for v in violations(module_name(f), f.read_text(), f.name == "__init__.py")]
    assert not bad, "imports against the layer order of docs/ARCHITECTURE.md:\n" + "\n".join(bad)


def test_every_named_layer_exists():
    """A renamed package must not leave the rule checking nothing."""
    for _, prefixes in LAYERS:
        for name in prefixes:
            rel = Path(*name.split(".")[1:])
            assert (PACKAGE / rel).is_dir() or (PACKAGE / rel).with_suffix(".py").is_file(), name


@pytest.mark.parametrize("module,source,expected", [
    ("hierlatent.corpora.pcfg", "from hierlatent.data.permutation import epoch_key", 1),  # the old exception
    ("hierlatent.corpora.pcfg", "def f():\n    from hierlatent.corpora.store import shard_path", 0),
    ("hierlatent.corpora.pcfg", "def f():\n    import hierlatent.probes.base", 1),  # lazy imports count
    ("hierlatent.sweep.plan", "from hierlatent.plot.sources import read_scalars", 1),  # a peer
    ("hierlatent.plot.cli", "from hierlatent.cli_checks import expand_list_flags", 0),  # an entry point
    ("hierlatent.plot.data", "from hierlatent.cli_checks import expand_list_flags", 1),
    ("hierlatent.data", "from .module import CorpusDataModule", 0),
    ("hierlatent.errors", "from hierlatent import events", 0),  # leaves may use leaves
    ("hierlatent.events", "from .plot import sources", 1),
])
def test_the_checker_finds_upward_imports(module, source, expected):
    assert len(violations(module, source, is_package=module == "hierlatent.data")) == expected


def _edits_sys_path(source: str) -> list[int]:
    """Lines of ``source`` that change ``sys.path`` (a call of one of its methods, or an assignment to it)."""
    def is_sys_path(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                and node.value.id == "sys")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
    return lines


def test_no_test_or_benchmark_edits_sys_path():
    """Tests and benchmarks import helpers through pytest's ``pythonpath`` or ``python -m`` from the repo root."""
    tests = Path(__file__).resolve().parent
    files = sorted(tests.rglob("*.py"))
    assert len(files) > 20 and any(f.parent.name == "benchmarks" for f in files)
    bad = [f"{f.relative_to(tests)}:{line}" for f in files for line in _edits_sys_path(f.read_text())]
    assert not bad, "sys.path edited at " + ", ".join(bad)


@pytest.mark.parametrize("source,expected", [
    ("import sys\nsys.path.insert(0, 'x')", [2]),
    ("import sys\nsys.path += ['x']", [2]),
    ("import sys\nsys.path[:0] = ['x']", [2]),
    ("import sys\nprint(sys.path)\nsys.argv.append('x')", []),
])
def test_the_sys_path_check_finds_edits(source, expected):
    assert _edits_sys_path(source) == expected
