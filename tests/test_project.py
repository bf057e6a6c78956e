"""The project's own promises: the library matches the notebooks, the README matches index.ipynb, CI runs the
README's test command, and the demo and benchmark scripts run."""
import json, os, re, subprocess, sys, shutil
from pathlib import Path
import pytest
from nbdev.export import nb_export

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


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    cmd = re.search(r"# run the tests\n(.+)\n", readme).group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -A1 '^# run the tests' README.md" in ci and 'eval "$TEST_CMD"' in ci
    assert cmd.startswith("nbdev_test") and "pytest" in cmd


def test_notebooks_are_clean():
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        d = json.loads(nb.read_text())
        for c in d["cells"]:
            assert not c.get("metadata"), f"{nb.name}: cell metadata left in, run nbdev_clean"
            assert c.get("execution_count") is None, f"{nb.name}: execution counts left in, run nbdev_clean"


def _script(name):
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else shutil.which(name)


def test_demo_console_script():
    out = subprocess.run([_script("fsq-demo"), "--levels", "7,5,5,5,5", "--tokens", "20000"],
                         capture_output=True, text=True, check=True).stdout
    assert "4375 codes" in out and "decode(indices) == quantized: True" in out and "codebook usage" in out


def test_benchmark_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "fsq_speed.py"), "--tokens", "4096", "--rounds", "1",
                          "--inner", "1", "--json", str(tmp_path / "b.json")], capture_output=True, text=True, check=True).stdout
    assert "speed-up over the peer" in out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["ratios"]["forward"] > 0 and res["tokens"] == 4096


def test_tokenizer_console_script_smoke(tmp_path):
    "The README's main job, at smoke size: every promised file is written and the summary is sane."
    env = {**os.environ, "FSQ_LIT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    res = subprocess.run([_script("fsq-tokenizer"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ["recon.png", "metrics.jsonl", "metrics.png", "summary.json", "tokenizer/config.json", "tokenizer/model.safetensors"]:
        assert (out / f).is_file(), f"fsq-tokenizer did not write {f}"
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 10 and 0 < s["usage"] <= 1 and s["psnr"] > 0 and s["config"]["quantizer"] == "fsq"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines and all("step" in json.loads(l) for l in lines)
    assert "psnr=" in res.stdout
