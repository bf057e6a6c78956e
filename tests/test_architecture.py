"""The book's one structural rule, checked on the exported package: a chapter (one notebook, one module) imports only
from earlier chapters. The import graph of `fsq_lit` (imports inside functions included) has no cycle and no edge from
a module to a later chapter's module. Also: each notebook exports at most one module, and every module has a chapter."""
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
