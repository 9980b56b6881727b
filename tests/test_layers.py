"""The package's layers: every module imports only its own layer or those below, and no import loops.

Imports are read from the source (function-level imports included: they run too, only
later), so a loop cannot hide behind a deferred import. Imports under ``if TYPE_CHECKING:``
are left out: they never run. The README's layout section shows the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "halo_fast"

# Top to bottom; a module belongs to the layer with the longest prefix of its name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("halo_fast.__main__", "halo_fast.cli", "halo_fast.study")),
    ("analysis", ("halo_fast.analysis", "halo_fast.benchmark", "halo_fast.describe", "halo_fast.quality")),
    ("store", ("halo_fast.store", "halo_fast.synth")),
    ("api", ("halo_fast.api", "halo_fast")),
    ("formats", ("halo_fast.formats",)),
    ("reduction core", ("halo_fast.reduction", "halo_fast.capture")),
    ("kernels", ("halo_fast.kernels", "halo_fast.progress")),
    ("errors, version", ("halo_fast.errors", "halo_fast._version", "halo_fast._cleanup")),
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("halo_fast",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def layer_of(module: str) -> int:
    """The layer whose longest prefix matches ``module`` (``halo_fast`` itself is the package root only)."""
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "halo_fast" and module.startswith(prefix + "."))
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's layout)")
    return max(matches)[1]


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.nodes: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.nodes.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.nodes.append(node)


def _known(name: str) -> str | None:
    """The halo_fast module an imported name lives in (``a.b.func`` -> ``a.b``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str) -> set[str]:
    """The halo_fast modules ``module`` imports."""
    visitor = _Imports()
    visitor.visit(ast.parse(source))
    is_package = MODULES[module].name == "__init__.py"
    found = set()
    for node in visitor.nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = module.split(".")[: len(module.split(".")) - (0 if is_package else 1)]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.startswith("halo_fast"):
                known = _known(target)
                if known and known != module:
                    found.add(known)
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)
    assert LAYERS[layer_of("halo_fast.formats.base")][0] == "formats"
    assert LAYERS[layer_of("halo_fast")][0] == "api"
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("halo_fast.nowhere")


def test_imports_go_only_downwards():
    upward = []
    for module, targets in import_graph().items():
        for target in sorted(targets):
            if layer_of(target) < layer_of(module):
                upward.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_the_import_reader_sees_deferred_imports_and_skips_type_checking():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .errors import CaptureError\n"
        "if TYPE_CHECKING:\n"
        "    from .api import load\n"
        "def f():\n"
        "    from .formats.base import SourceOptions\n"
        "    import halo_fast.store.atomic\n"
    )
    assert imports_of("halo_fast.reduction", source) == {
        "halo_fast.errors",
        "halo_fast.formats.base",
        "halo_fast.store.atomic",
    }
    assert imports_of("halo_fast.formats", "from .base import WINDOW_BYTES\nfrom .. import api\n") == {
        "halo_fast.formats.base",
        "halo_fast.api",
    }
