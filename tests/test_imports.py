"""The dependency direction of janus_cli, read from the source: arrows point down, no cycles.

  cli/  server/  distributed/        front ends
          api                         the front door
       pipelines/  training/          requests, batching, schedulers, events; fine-tuning
models/ sampling/ kernels/ checkpoints/ and the helpers beside them
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "janus_cli"
FRONT_ENDS = ("janus_cli.cli", "janus_cli.server", "janus_cli.distributed")
RULES = {  # package -> what it must never import
    "janus_cli.models": ("janus_cli.pipelines", "janus_cli.api", *FRONT_ENDS),
    "janus_cli.sampling": ("janus_cli.pipelines", "janus_cli.api", *FRONT_ENDS),
    "janus_cli.kernels": ("janus_cli.pipelines", "janus_cli.api", *FRONT_ENDS),
    "janus_cli.checkpoints": ("janus_cli.pipelines", "janus_cli.api", *FRONT_ENDS),
    "janus_cli.pipelines": ("janus_cli.api", "janus_cli.training", *FRONT_ENDS),
    "janus_cli.training": ("janus_cli.api", *FRONT_ENDS),
    "janus_cli.api": FRONT_ENDS,
    "janus_cli.distributed": ("janus_cli.cli", "janus_cli.server"),
    "janus_cli.server": ("janus_cli.cli", "janus_cli.distributed"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """Every janus_cli module SOURCE imports, at any depth (lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "janus_cli" or m.startswith("janus_cli.")}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        raw = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        edges[name] = {m for m in raw if m in modules and m != name}  # `from pkg import module` names both
    return edges


def violations(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for name, targets in edges.items():
        for package, banned in RULES.items():
            if name == package or name.startswith(package + "."):
                out += [
                    f"{name} imports {t}" for t in targets for b in banned if t == b or t.startswith(b + ".")
                ]
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, ignoring a module's import of its own parent packages (Python runs a
    package's __init__ first anyway) and of the root package."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for t in sorted(edges[node]):
            if t == "janus_cli" or node.startswith(t + "."):
                continue
            if state.get(t) == "open":
                found.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_arrows_point_down():
    assert violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    "bad",
    [
        ("models/extra.py", "from janus_cli.pipelines.session import Session\n"),
        ("pipelines/extra.py", "def f():\n    from janus_cli.cli import console\n"),
        ("distributed/extra.py", "import janus_cli.cli.console\n"),
        ("sampling/extra.py", "from janus_cli import api\n"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path, bad):
    import shutil

    root = tmp_path / "janus_cli"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (root / bad[0]).write_text(bad[1])
    assert violations(graph(root))


def test_a_cycle_is_caught(tmp_path):
    import shutil

    root = tmp_path / "janus_cli"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (root / "cli" / "a_.py").write_text("from janus_cli.cli import b_\n")
    (root / "cli" / "b_.py").write_text("def f():\n    from janus_cli.cli import a_\n")
    assert cycles(graph(root))
