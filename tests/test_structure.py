"""The package's layering: the library never imports the shapes world, and subpackages form no cycle."""

import ast
from pathlib import Path

PKG = Path(__file__).parents[1] / "stylenada"


def imports_of(path: Path) -> set[str]:
    """Every stylenada module that ``path`` imports (function-local imports included), as dotted names."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    package = ".".join(parts[:-1])  # what a relative import is relative to (for __init__: the package itself)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("stylenada")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("stylenada"):
                out.add(name)
                out |= {f"{name}.{a.name}" for a in node.names}  # "from . import x" may name a module
    return out


def node_of(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "stylenada"


def test_no_module_outside_toy_imports_the_shapes_world():
    offenders = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if "toy" not in p.relative_to(PKG).parts[:1]
                 and any(node_of(m) == "toy" for m in imports_of(p))]
    assert offenders == []


def test_no_import_cycle_between_subpackages():
    edges: dict[str, set[str]] = {}
    for p in PKG.rglob("*.py"):
        src = node_of(".".join(p.relative_to(PKG.parent).with_suffix("").parts))
        for m in imports_of(p):
            dst = node_of(m)
            if dst not in (src, "stylenada"):
                edges.setdefault(src, set()).add(dst)
    # Depth-first search for a cycle; report it as a path.
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> list[str] | None:
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return path + [n, m]
            if m not in state and (found := visit(m, path + [n])):
                return found
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n, [])):
            raise AssertionError(f"import cycle between subpackages: {' -> '.join(cycle)}")


def test_the_command_line_imports_no_optional_extra():
    """`pip install -e .` without extras works: Gradio ([ui]) and Ray ([sweep]) load only in their commands."""
    import subprocess
    import sys

    code = ("import sys, stylenada.cli; extras = [m for m in ('gradio', 'ray', 'playwright') if m in sys.modules]; "
            "assert not extras, extras")
    subprocess.run([sys.executable, "-c", code], check=True)
