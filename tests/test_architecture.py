"""The book's one structural rule, checked on the exported package: a chapter (one notebook, one module) imports only
from earlier chapters. The import graph of `fsq_lit` (imports inside functions included) has no cycle and no edge from
a module to a later chapter's module, and no module names another in a string (a lazy import the graph could not
see): registries hold what their chapters register, and the package root imports every module that registers a
quantizer, so that a config naming one works after importing any part of the package. Also: each notebook exports at
most one module, and every module has a chapter."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fsq_lit"


def chapter_order() -> dict:
    "module name -> sort key of its notebook's prefix, e.g. 'quantizer' -> (3, 'a')."
    order = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        m = re.match(r"(\d+)([a-z]?)_", nb.name)
        if not m: continue
        exps = {d for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"
                for d in re.findall(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M)}
        assert len(exps) <= 1, f"{nb.name} exports several modules: {sorted(exps)}"
        for mod in exps: order[mod] = (int(m.group(1)), m.group(2))
    return order


def imports_of(path: Path) -> set:
    "The fsq_lit modules `path` imports, wherever in the file the import stands."
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level == 1: name = f"fsq_lit.{name}" if name else "fsq_lit"
            if name.startswith("fsq_lit."): deps.add(name.split(".")[1])
            elif name == "fsq_lit": deps.update(a.name for a in node.names if (PKG / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("fsq_lit."))
    return deps - {path.stem}


def module_strings(path: Path) -> set:
    "The other fsq_lit modules `path` names as a string ('fsq_lit.vq') or imports through importlib: imports the graph cannot see."
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"fsq_lit\.(\w+)", node.value.strip())
            if m and (PKG / f"{m.group(1)}.py").exists(): found.add(m.group(1))
        elif isinstance(node, ast.Attribute) and node.attr == "import_module": found.add("<importlib.import_module>")
        elif isinstance(node, ast.Name) and node.id == "__import__": found.add("<__import__>")
    return found - {path.stem}   # a module may name itself (a file format's tag)


def registering_modules() -> set:
    "The modules that register a quantizer or a variant when imported (a top-level register_quantizer/register_variant call)."
    return {f.stem for f in PKG.glob("*.py") if not f.stem.startswith("_")
            for node in ast.parse(f.read_text()).body
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") in ("register_quantizer", "register_variant")}


def graph() -> dict:
    return {f.stem: imports_of(f) for f in sorted(PKG.glob("*.py")) if not f.stem.startswith("_")}


def test_every_module_has_a_chapter():
    assert set(graph()) <= set(chapter_order()), set(graph()) - set(chapter_order())


def test_no_module_imports_a_later_chapter():
    order, bad = chapter_order(), []
    for mod, deps in graph().items():
        bad += [f"{mod} ({order[mod]}) imports {d} ({order[d]})" for d in deps if order[d] >= order[mod]]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    g, state, cycles = graph(), {}, []
    def visit(u, path):
        state[u] = "open"
        for v in sorted(g.get(u, ())):
            if state.get(v) == "open": cycles.append(" -> ".join(path[path.index(v):] + [v]))
            elif v not in state: visit(v, path + [v])
        state[u] = "done"
    for u in sorted(g):
        if u not in state: visit(u, [u])
    assert not cycles, cycles


def test_the_check_sees_a_backward_edge(tmp_path, monkeypatch):
    "The walker itself: a module importing a later chapter inside a function is caught."
    f = tmp_path / "scalar.py"
    f.write_text("def f():\n    from fsq_lit.vq import VQ\n    from .train import fit\n")
    assert imports_of(f) == {"vq", "train"}


def test_no_module_path_in_a_string():
    "A registry entry such as {'vq': 'fsq_lit.vq'} (imported later by name) is an import the chapter-order check cannot see."
    bad = {f.stem: sorted(module_strings(f)) for f in sorted(PKG.glob("*.py")) if not f.stem.startswith("_") and module_strings(f)}
    assert not bad, bad


def test_the_check_sees_a_module_path_in_a_string(tmp_path):
    "The string check itself: a lazy registry entry and an importlib call are both caught; prose that mentions a module is not."
    f = tmp_path / "quantizer.py"
    f.write_text("import importlib\nQUANTIZERS = {'vq': 'fsq_lit.vq'}\ndef f(): importlib.import_module('x')\n"
                 "def g():\n    'See fsq_lit.vq for VQ.'\n")
    assert module_strings(f) == {"vq", "<importlib.import_module>"}


def test_the_package_imports_every_registering_module():
    "`import fsq_lit.tokenizer` (or any other module) runs the package root, which must reach every module that registers a quantizer."
    g, seen, todo = graph(), set(), list(imports_of(PKG / "__init__.py"))
    while todo:
        m = todo.pop()
        if m not in seen: seen.add(m); todo += g.get(m, ())
    missing = registering_modules() - seen
    assert registering_modules() >= {"quantizer", "vq", "lfq"}, registering_modules()
    assert not missing, f"fsq_lit/__init__.py (nbs/index.ipynb) must import {sorted(missing)}"
