"""curate's imports form layers: no cycles, and no module imports one of a higher layer.

The layers, lowest first (README, "Code map"):
  core       records, errors, units, names of a stage directory, storage, I/O, the Stage contract, the step
             registry, token counting: what every other part builds on
  libraries  parse, filter, dedup, mix, decontam, train (the steps' pure functions and stages), fetch (HTTP)
  sources    sources.yaml: the catalogue of sources and their scrape settings
  stats      statistics and reports of stage outputs; shard, whose stats.json is one
  scrape     the crawler, its spiders and the scrape stage
  execution  executors (the only Ray imports), the worker pool, the runner, verify
  pipeline   pipeline YAML to planned stages
  commands   the command line

Every import counts, at module level or inside a function (a lazy import is still a dependency); steps found
at run time through the registry (curate.steps) and spiders through the loader (curate.scrape.spiders) are
plugins, named by strings, not imports.

A name is imported from the module that defines it, or from its package's `__all__` when the package
defines it: no module passes on a name it only imports, so there are no second import paths to keep.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "curate"
LAYERS = [
    (
        "core",
        [
            "curate",
            "curate.errors",
            "curate.units",
            "curate.layout",
            "curate.schema",
            "curate.storage",
            "curate.io",
            "curate.progress",
            "curate.stage",
            "curate.steps",
            "curate.tokens",
        ],
    ),
    (
        "libraries",
        [
            "curate.parse",
            "curate.filter",
            "curate.dedup",
            "curate.mix",
            "curate.decontam",
            "curate.train",
            "curate.fetch",
        ],
    ),
    ("sources", ["curate.sources"]),
    ("stats", ["curate.stats", "curate.shard"]),
    ("scrape", ["curate.scrape"]),
    ("execution", ["curate.pool", "curate.executors", "curate.runner", "curate.verify"]),
    ("pipeline", ["curate.pipeline"]),
    ("commands", ["curate.command", "curate.step_commands", "curate.cli", "curate.__main__"]),
]


def modules() -> dict[str, Path]:
    """Every module of the curate package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The curate modules a module imports (`from a import b` counts a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    """Module -> the curate modules it imports."""
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def layer(module: str) -> int:
    """The layer of a module: that of its longest listed prefix."""
    best = None
    for number, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            within = module == prefix or module.startswith(prefix + ".")
            if within and (best is None or len(prefix) > best[1]):
                best = (number, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's code map)")
    return best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@dataclass
class Names:
    """What a module's top level defines, imports (alias -> (module, name)) and lists in `__all__`."""

    defined: set[str] = field(default_factory=set)
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)


def names(path: Path) -> Names:
    """The top-level names of a module (inside top-level `if` and `try` blocks too)."""
    found = Names()
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for node in [n for top in body for n in (ast.walk(top) if isinstance(top, (ast.If, ast.Try)) else [top])]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.defined.add(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.imported.update({a.asname or a.name: (node.module, a.name) for a in node.names})
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                found.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                if isinstance(target, ast.Name) and target.id == "__all__":
                    found.exported = set(ast.literal_eval(node.value))
    return found


def origin(module: str, name: str, table: dict[str, Names]) -> str:
    """The module that defines `name` as `module` sees it, following imports; a name of `__all__` that the
    package loads lazily (no import to follow) counts as the package's own."""
    while module in table and name not in table[module].defined and name in table[module].imported:
        module, name = table[module].imported[name]
    return module


def misplaced_imports(code: str, table: dict[str, Names], packages: set[str]) -> list[str]:
    """`from curate.x import y` where curate.x only passes on y: neither defines it nor is a package listing
    it in `__all__` and defining it in one of its own modules."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if not (isinstance(node, ast.ImportFrom) and node.module in table and not node.level):
            continue
        for alias in node.names:
            source = origin(node.module, alias.name, table)
            facade = node.module in packages and alias.name in table[node.module].exported
            if source == node.module or f"{node.module}.{alias.name}" in table:
                continue
            if facade and (source + ".").startswith(node.module + "."):
                continue
            found.append(f"line {node.lineno}: {alias.name} from {node.module}, not {source}")
    return found


def test_names_are_imported_from_where_they_are_defined():
    table = {name: names(path) for name, path in modules().items()}
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    found = []
    for folder in ("curate", "tests", "benchmarks", "pipelines"):
        for path in sorted((REPO / folder).rglob("*.py")):
            lines = misplaced_imports(path.read_text(encoding="utf-8"), table, packages)
            found += [f"{path.relative_to(REPO)}, {line}" for line in lines]
    assert found == []


def test_the_origin_check_sees_a_passed_on_name():
    table = {
        "curate.a": Names(defined={"f"}),
        "curate.b": Names(imported={"f": ("curate.a", "f")}),
        "curate.p": Names(imported={"f": ("curate.a", "f"), "g": ("curate.p.m", "g")}, exported={"f", "g"}),
        "curate.p.m": Names(defined={"g"}),
    }
    code = "from curate.a import f\nfrom curate.b import f\nfrom curate.p import f, g\n"
    assert misplaced_imports(code, table, {"curate.p"}) == [
        "line 2: f from curate.b, not curate.a",
        "line 3: f from curate.p, not curate.a",
    ]


def test_no_module_import_cycles():
    assert cycles(graph()) == []


def test_no_package_import_cycles():
    """Packages too (curate.dedup -> curate.sources -> curate.dedup would be one, even without a module
    cycle): a package's modules, taken together, import no package that imports them back."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph().items():
        top = ".".join(module.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(t.split(".")[:2]) for t in targets)
    assert cycles({p: t - {p} for p, t in packages.items()}) == []


def test_no_import_goes_up_a_layer():
    upward = [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The checks themselves can fail."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("curate.stage") < layer("curate.runner") < layer("curate.cli")
    with pytest.raises(AssertionError, match="in no layer"):
        layer("elsewhere.module")


def test_pipeline_runner_and_cli_name_no_step():
    """The core that plans and runs stages knows steps only through the registry and the Stage contract: no
    string equal to a step name, no import of a step's module."""
    from curate.steps import STEP_CLASSES

    steps = set(STEP_CLASSES)
    step_modules = {target.split(":")[0] for target in STEP_CLASSES.values() if isinstance(target, str)}
    for name in ("pipeline", "runner", "cli", "executors", "command"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        strings = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert not strings & steps, f"curate/{name}.py names step(s) {sorted(strings & steps)}"
        imported = imports(PACKAGE / f"{name}.py", set(modules()))
        assert not imported & step_modules, f"curate/{name}.py imports {sorted(imported & step_modules)}"
