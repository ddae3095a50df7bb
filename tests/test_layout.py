"""The tree shows the architecture (docs/LAYOUT.md): no import cycles (imports inside functions
included), glue_prep never imports fairseq_hire, the HIRE math imports no fairseq, and no source
file is over 400 lines."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fairseq_hire", "glue_prep")
SOURCE_FOLDERS = ("fairseq_hire", "glue_prep", "scripts", "benchmarks", "tests")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imported_modules(name: str, path: Path, known) -> set:
    """Every module of the packages that `name` imports, wherever the import statement is. Importing
    a.b.c runs the __init__ of a and a.b first, so they count too, except the module's own packages
    (always imported before it)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    parts = name.split(".")
    return found - {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_graph():
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_packages_have_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_glue_prep_never_imports_fairseq_hire():
    graph = import_graph()
    assert {name: sorted(t for t in targets if t.startswith("fairseq_hire"))
            for name, targets in graph.items() if name.startswith("glue_prep")
            and any(t.startswith("fairseq_hire") for t in targets)} == {}


def test_the_hire_math_imports_no_fairseq():
    modules = package_modules()
    for name in ("fairseq_hire.modules.hire", "fairseq_hire.modules.options", "fairseq_hire.modules.gru_backends",
                 "fairseq_hire.modules.packed_gru", "fairseq_hire.modules.padded_gru"):
        tree = ast.parse(modules[name].read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.split(".")[0] == "fairseq"}, name


def test_no_source_file_is_over_400_lines():
    long_files = {str(p.relative_to(REPO)): n for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*.py")
                  if ".venv" not in p.parts and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long_files == {}
