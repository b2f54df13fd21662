"""Imports inside `lft_helpers` run one way: no cycles, and no module imports a higher layer.

The graph is read from the source with `ast`, counting every import of a package module, at the
top of a file or inside a function alike: an import moved into a function still ties the two
modules together, it only hides the tie until run time.

The order is issue #11's but for one module: `reporting` (the results documents) sits below the
experiment layer, not after it, because experiment writes results documents; the views,
plotting and the CLI that show them sit above.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lft_helpers"

# Lowest first. A module may import its own layer or any layer below, never one above.
LAYERS = [
    ("foundations", {"errors", "labels", "flags"}),
    ("config and experiment specs", {"config", "specs"}),
    ("sources and the machine", {"hub", "runtime"}),
    ("data", {"datachecks", "truncation", "data", "prepare_imdb"}),
    ("model", {"modeling"}),
    ("training and scoring", {"training", "evaluation", "inference", "analysis", "probe"}),
    ("results documents", {"reporting"}),
    (
        "experiment",
        {
            "pipeline",
            "experiment",
            "sweep",
            "scaling",
            "methods",
            "shipping",
            "estimate",
            "long_reviews",
        },
    ),
    ("views", {"explore", "plotting"}),
    ("benchmark", {"bench"}),
    ("command line", {"cli", "__main__", ""}),  # "": the package's own __init__
]


def module_name(path: Path, root: Path) -> str:
    """`lft_helpers/bench/memory.py` -> `bench.memory`; the package's __init__ -> its folder."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split(".")) if name else root
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(path: Path, root: Path) -> set[str]:
    """Package modules that `path` imports anywhere in its body, relative or absolute."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [[a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([root.name, *base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            # `from . import x` and `from .bench import report` may name modules themselves.
            candidates = [[f"{prefix}.{a.name}", prefix] for a in node.names]
        else:
            continue
        for options in candidates:
            inside = [t[len(root.name) + 1 :] for t in options if t.startswith(root.name + ".")]
            inside += ["" for t in options if t == root.name]
            target = next((t for t in inside if is_module(t, root)), None)
            if target is not None:
                found.add(target)
    found.discard(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imported_modules(p, root) for p in sorted(root.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int | None:
    top = module.split(".")[0]  # a subpackage's modules sit in the subpackage's layer
    return next((i for i, (_, names) in enumerate(LAYERS) if top in names), None)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if None not in (layer_of(a), layer_of(b)) and layer_of(b) > layer_of(a)
    ]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"data", "modeling", "pipeline", "cli"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_module_has_a_declared_layer():
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"add {missing} to LAYERS in tests/test_layers.py"


def test_no_module_imports_a_higher_layer():
    assert not upward_imports(import_graph())


def test_the_package_docstring_and_the_readme_layout_name_every_module():
    import lft_helpers

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    names = {p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"}
    for where, text in (("the package docstring", lft_helpers.__doc__), ("README", layout)):
        missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", text))
        assert not missing, f"{where} does not name {missing}"


def test_the_checks_catch_a_cycle_hidden_in_a_function(tmp_path):
    """A copy of the old tangle: data imports validation inside a function, which imports
    modeling, which imports data at the top."""
    root = tmp_path / "lft_helpers"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "data.py").write_text("def load():\n    from .validation import check\n")
    (root / "validation.py").write_text("def check():\n    from lft_helpers import modeling\n")
    (root / "modeling.py").write_text("from .data import LABEL_NAMES\n")
    graph = import_graph(root)
    assert graph["data"] == {"validation"} and graph["validation"] == {"modeling"}
    assert find_cycle(graph) == ["data", "validation", "modeling", "data"]
    assert upward_imports({"data": {"modeling"}}) == ["data (data) imports modeling (model)"]


def test_submodules_and_absolute_imports_are_resolved(tmp_path):
    root = tmp_path / "lft_helpers"
    (root / "bench").mkdir(parents=True)
    (root / "__init__.py").write_text("from .config import Config\n")
    (root / "config.py").write_text("import lft_helpers.errors\n")
    (root / "errors.py").write_text("")
    (root / "bench" / "__init__.py").write_text("from . import report\n")
    (root / "bench" / "report.py").write_text("from ..config import Config\nimport numpy\n")
    graph = import_graph(root)
    assert graph == {
        "": {"config"},
        "bench": {"bench.report"},
        "bench.report": {"config"},
        "config": {"errors"},
        "errors": set(),
    }
