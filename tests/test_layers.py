"""The house's shape, checked over the AST of src/vectune: layers, one-way imports, no cycles, no hidden imports.

Layers, top to bottom (README, "House map"): a module may import its own package, or a package in a
lower layer; never a package beside it or above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vectune"

#: Top to bottom. ``vectune`` (the package's __init__) sits above everything.
LAYERS: list[set[str]] = [
    {"vectune.cli"},
    {"vectune.demo"},
    {"vectune.api"},
    {"vectune.ops", "vectune.apps"},
    {"vectune.pipeline"},
    {"vectune.promote"},
    {"vectune.qdrant", "vectune.models", "vectune.observe"},
    {"vectune.config", "vectune.core"},
    {"vectune.errors"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _layer(package: str) -> int:
    if package in ("vectune", "vectune.__main__"):  # the package itself and `python -m vectune`: the top
        return -1
    for i, group in enumerate(LAYERS):
        if package in group:
            return i
    raise AssertionError(f"{package} is in no layer: add it to LAYERS and to the README's house map")


def _imports(module: str) -> list[tuple[str, ast.ImportFrom | ast.Import, bool]]:
    """(imported vectune module, node, inside a function) for every import of vectune's own modules."""
    tree = ast.parse(MODULES[module].read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vectune") and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.append((full if full in MODULES else node.module, node, id(node) in local))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("vectune"):
                    out.append((alias.name, node, id(node) in local))
    return out


def test_every_package_has_a_layer():
    for module in MODULES:
        _layer(_package(module))


def test_imports_go_down_the_layers_only():
    wrong = []
    for module in MODULES:
        here = _package(module)
        for target, node, _ in _imports(module):
            there = _package(target)
            if there != here and _layer(there) <= _layer(here):
                wrong.append(f"{MODULES[module].relative_to(SRC.parent)}:{node.lineno}: {here} -> {there}")
    assert not wrong, "imports across or up the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ importing its own submodules is not a cycle of concern; everything else is
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles (function-local imports included): {cycles}"


def test_function_local_imports_of_vectune_say_why():
    """Only to defer a heavy dependency (Ray, the openai SDK), and with a comment saying so."""
    silent = []
    for module in MODULES:
        lines = MODULES[module].read_text().splitlines()
        for target, node, local in _imports(module):
            if not local:
                continue
            said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if not said:
                silent.append(f"{MODULES[module].relative_to(SRC.parent)}:{node.lineno}: {target}")
    assert not silent, "function-local imports without a comment saying why:\n" + "\n".join(silent)


def test_importing_vectune_and_its_app_side_does_not_load_torch():
    """Apps import vectune (resolve, feedback, the dual-write helper) without paying for torch; the CLI starts fast."""
    modules = ["vectune", "vectune.apps.feedback", "vectune.apps.resolve", "vectune.apps.dualwrite", "vectune.api",
               "vectune.cli"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'ray') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"importing {modules} loads {proc.stdout.strip()} {proc.stderr[-500:]}"
