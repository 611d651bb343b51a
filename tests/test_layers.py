"""The package's rooms import downwards only, and no module imports itself back through others.

Order of the stages, lowest first: a module may import its own sub-package and any lower one, never a higher
one. The top-level modules (config, plan) and the demo sit above every stage; the page templates below them all.
"""

import ast
from pathlib import Path

import networkx

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "cellclass"
STAGES = ["templates", "io", "prepare", "learn", "evaluate", "explain", "share", "predict", "assay"]
TOP = len(STAGES)  # config.py, plan.py and demo/


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path, known):
    """The cellclass modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cellclass"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = names if any(n in known for n in names) else [node.module]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def rank(module):
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) >= 2 and parts[1] in STAGES else TOP


def graph():
    known = modules()
    g = networkx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        for other in imported(path, known):
            # A sub-package's __init__ is its docstring; importing a module of it is not importing the package.
            if other != name and not (other.count(".") == 1 and name.startswith(other + ".")):
                g.add_edge(name, other)
    return g


def test_every_stage_is_a_sub_package_with_a_docstring():
    for stage in STAGES + ["demo"]:
        init = PACKAGE / stage / "__init__.py"
        assert init.exists(), f"{stage}/ has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) <= 3, (
            f"{stage}/__init__.py should say in two lines what the stage takes and gives"
        )
    flat = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "config.py", "plan.py")]
    assert not flat, f"modules outside a stage: {flat}"


def test_no_import_circles():
    cycles = list(networkx.simple_cycles(graph()))
    assert not cycles, f"import circles: {cycles}"


def test_no_upward_imports():
    upward = [(a, b) for a, b in graph().edges if rank(b) > rank(a)]
    assert not upward, "a lower room imports a higher one: " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_the_walker_sees_imports_inside_functions():
    # predict/call_overlays.py imports io.datasets inside overlay only; a walker that missed it would miss circles too.
    assert ("cellclass.predict.call_overlays", "cellclass.io.datasets") in graph().edges
    assert rank("cellclass.predict.call_overlays") > rank("cellclass.io.tilestore")
