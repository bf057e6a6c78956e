"""The project's own promises: the library matches the notebooks, the README matches index.ipynb, CI runs the
README's test command, and the demo and benchmark scripts run."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest
from nbdev.export import nb_export
from conftest import console_script

ROOT = Path(__file__).resolve().parents[1]


def test_library_matches_notebooks(tmp_path):
    "nbdev_export would leave no diff: export every notebook into a scratch package and compare."
    lib = tmp_path / "fsq_lit"
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")): nb_export(nb, lib)
    norm = lambda text: re.sub(r'(\.\./)+\S*?nbs/', 'nbs/', re.sub(r'^__version__ = .*\n', '', text))  # paths differ
    exported = sorted(lib.glob("*.py"))
    assert {f.name for f in exported} >= {"__init__.py", "scalar.py", "ste.py", "indices.py", "fsq.py", "data.py", "train.py", "tokenizer.py", "vq.py", "compare.py"}
    for f in exported:
        assert norm(f.read_text()) == norm((ROOT / "fsq_lit" / f.name).read_text()), \
            f"fsq_lit/{f.name} differs from its notebook: run nbdev_export"


def test_readme_generated_from_index():
    sys.path.insert(0, str(ROOT / "tools"))
    import make_readme
    text, figures = make_readme.render()
    assert (ROOT / "README.md").read_text() == text, "run python tools/make_readme.py"
    assert figures and all((ROOT / p).read_bytes() == png and p in text for p, png in figures.items())


def readme_test_command() -> str:
    return re.search(r"# run the tests\n(.+)\n", (ROOT / "README.md").read_text()).group(1)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -A1 '^# run the tests' README.md" in ci and 'eval "$TEST_CMD"' in ci
    assert re.match(r"(python -m )?pytest\b", readme_test_command()), "the command ends in pytest's 'N passed' line"


def test_readme_test_command_runs_the_notebooks_once():
    "`nbdev_test` runs every notebook, and so does pytest when it collects tests/test_notebooks.py: one of the two."
    cmd = readme_test_command()
    by_nbdev = bool(re.search(r"\bnbdev_test\b(?![^&;|]*--path)", cmd))
    by_pytest = any(re.search(r"\bpytest\b[^&;|]*\b" + target, cmd) for target in (r"tests/?(?=\s|$)", r"test_notebooks\.py"))
    assert by_nbdev + by_pytest == 1, f"the notebooks run {by_nbdev + by_pytest} times in {cmd!r}"
    assert (ROOT / "tests" / "test_notebooks.py").is_file() or by_nbdev


def test_notebooks_are_clean():
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        d = json.loads(nb.read_text())
        for c in d["cells"]:
            assert not c.get("metadata"), f"{nb.name}: cell metadata left in, run nbdev_clean"
            assert c.get("execution_count") is None, f"{nb.name}: execution counts left in, run nbdev_clean"



def test_demo_console_script():
    out = subprocess.run([console_script("fsq-demo"), "--levels", "7,5,5,5,5", "--tokens", "20000"],
                         capture_output=True, text=True, check=True).stdout
    assert "4375 codes" in out and "decode(indices) == quantized: True" in out and "codebook usage" in out


def test_benchmark_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "fsq_speed.py"), "--tokens", "4096", "--runs", "2", "--rounds", "1",
                          "--inner", "1", "--json", str(tmp_path / "b.json")], capture_output=True, text=True, check=True).stdout
    assert "speed-up over the peer" in out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["ratios"]["forward"] > 0 and res["tokens"] == 4096 and res["runs"] == len(res["run_ratios"]) == 2
    lo, hi = res["ranges"]["forward"]
    assert lo <= res["ratios"]["forward"] <= hi


def test_committed_benchmark_result():
    "The tutorial quotes bench/results/cpu-fsq-speed.json: it holds the default benchmark's medians, ranges and machine."
    res = json.loads((ROOT / "bench" / "results" / "cpu-fsq-speed.json").read_text())
    assert res["device"] == "cpu" and res["tokens"] == 2**16 and res["levels"] == [8, 5, 5, 5] and res["runs"] >= 3
    for k in ("forward", "forward+backward"):
        lo, hi = res["ranges"][k]
        assert lo <= res["ratios"][k] <= hi and len(res["run_ratios"]) == res["runs"]
    assert {"platform", "cpu", "threads"} <= set(res["machine"]) and res["torch"] and re.match(r"\d{4}-\d\d-\d\d$", res["date"])
    readme = (ROOT / "README.md").read_text()
    assert f"{res['ratios']['forward']:.1f}×" in readme and res["machine"]["cpu"] in readme and res["date"] in readme


def test_readme_states_what_the_book_measured():
    "The paper's usage claim is quoted as the paper's; beside it, the verdicts computed from the committed study."
    from fsq_lit.compare import COMPARE
    readme = (ROOT / "README.md").read_text()
    for m in re.finditer(r"nearly all of its codes", readme):
        assert re.search(r"the paper (reports|finds)", readme[max(0, m.start() - 60):m.start()]), "the paper's claim stated as a fact"
    st = COMPARE.load(ROOT / "nbs" / "results" / "compare-gpu")
    verdicts = COMPARE.claims(st["records"], COMPARE.config_of(st))
    rows = re.findall(r"^\| (.+?) \| (held|\*\*did not hold\*\*|not measurable) \|$", readme, re.M)
    assert len(rows) == len(verdicts) and [v == "held" for _, v in rows] == [bool(v) for v in verdicts.values()], rows
    assert "27% of 64,000" in readme and "(nbs/08_compare.ipynb)" in readme


def test_readme_numbers_are_measured():
    """The quick start's counts are the presets' and the committed study's, its cache size is scaled from the bytes the
    tutorial's cached scenes take (and agrees with chapter 06's estimate), and section 5 states its time and machine."""
    from fsq_lit.compare import COMPARE
    from fsq_lit.tokenizer import preset_config
    from fsq_lit.sources import scenes_cache_bytes
    readme, cpu = (ROOT / "README.md").read_text(), preset_config("cpu")
    small = COMPARE.load(ROOT / "nbs" / "results" / "compare-cpu-small")["records"]
    assert len(small) == len(COMPARE.plan(COMPARE.preset("cpu-small"))) and f"({len(small)} tokenizers from" in readme
    assert f"on {cpu.n_train:,} procedural 3-D scenes" in readme and f"checkpoints every {cpu.train.ckpt_every} steps" in readme
    mb = int(re.search(r"about (\d+) MB under `~/.cache/fsq_lit`", readme).group(1))
    assert abs(mb * 1e6 / scenes_cache_bytes(cpu.n_train + cpu.n_test, cpu.image_size) - 1) < 0.02, mb
    assert re.search(r"^\d+ s on CPU \S+ \(\d+ threads\), torch \S+$", readme, re.M), "section 5's time and machine"


def test_readme_python_is_the_command():
    """'The same tokenizer from Python' trains the command's preset, and neither it nor section 5 turns progress off;
    every torch install line names a wheel index, the CPU one where it installs the CPU build, and says why."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    same = next(b for b in blocks if 'train_tokenizer(cfg, out="runs/mine")' in b)
    assert re.search(r'^cfg = preset_config\("cpu"\)', same, re.M), same
    training = [l for b in blocks for l in b.splitlines() if re.search(r"train_tokenizer\(|\.preset\(|scene_images\(cfg", l)]
    assert training and not any("progress=False" in l for l in training), training
    installs = re.findall(r"^.*pip install torch\b.*$", readme, re.M)
    assert installs and all("--index-url https://download.pytorch.org/whl/" in l for l in installs), installs
    assert sum("--index-url https://download.pytorch.org/whl/cpu" in l for l in installs) >= 2 and "`nvidia-*` packages" in readme


def _names(code: str) -> tuple:
    "Names a code block defines (imports, assignments, loop and function arguments) and names it reads."
    import ast
    tree, defined = ast.parse(code), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)): defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store): defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)): defined |= {a.arg for a in node.args.args}
    return defined, {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def test_readme_quick_start_is_self_contained():
    """The README's Python blocks use only names defined before them (the tutorial's blocks build on each other; the
    quick start's stands alone); the install notes a new user needs are there."""
    import builtins
    readme = (ROOT / "README.md").read_text()
    known, quick_start = set(dir(builtins)), 0
    for block in re.findall(r"```python\n(.*?)```", readme, re.S):
        if "tok.tokenize(images)" in block: known, quick_start = set(dir(builtins)), quick_start + 1
        defined, used = _names(block)
        known |= defined
        assert used <= known, f"undefined in a README snippet: {used - known}\n{block}"
    assert quick_start == 1
    for note in ("~/.cache/fsq_lit", "FSQ_LIT_CACHE", "download.pytorch.org/whl", "chromium chromium-driver",
                 "FSQ_LIT_BROWSER_TESTS=require", "build_docs.py --serve"):
        assert note in readme, note


def test_license_and_ignores():
    "settings.ini says Apache-2.0: the LICENSE file holds its text; the README's output folder is ignored by git."
    assert "license = apache2" in (ROOT / "settings.ini").read_text()
    lic = (ROOT / "LICENSE").read_text()
    assert "Apache License" in lic and "Version 2.0, January 2004" in lic and "2026 onwards, fsq_lit contributors" in lic
    assert "runs/" in (ROOT / ".gitignore").read_text().split()
