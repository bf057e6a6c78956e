import os, sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never reach a hub
if os.environ.get("PYTEST_XDIST_WORKER"):      # `pytest -n 2` (the README's command): one core per worker, so the
    os.environ["OMP_NUM_THREADS"] = "1"         # workers and the commands they start never oversubscribe the cores
    import torch; torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def console_script(name: str) -> str:
    "Path of an installed console script (`fsq-demo`, `fsq-compare`, ...): beside this Python, else on PATH."
    import shutil
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else shutil.which(name)


def cli_env(tmp_path) -> dict:
    "The environment of a console-script test: no hub, and a cache of its own under `tmp_path`."
    return {**os.environ, "HF_HUB_OFFLINE": "1", "FSQ_LIT_CACHE": str(tmp_path / "cache")}


def preset_drift(saved_config: dict, cfg) -> dict:
    """{setting: (committed, now)} where a committed study's config differs from the preset `cfg` as it is now (device and
    progress aside); a setting added since the study ran, still at its default, is no drift (in nested configs too)."""
    import json
    from dataclasses import asdict, fields, is_dataclass, MISSING
    def defaults(c) -> dict:   # the config as the study would have written it, where it predates a setting at its default
        out = {}
        for f in fields(c):
            v = getattr(c, f.name)
            if is_dataclass(v): out[f.name] = defaults(v)
            elif f.default is not MISSING: out[f.name] = f.default
        return out
    def fill(saved, now, dflt):
        for k, v in now.items():
            if k not in saved and k in dflt and not isinstance(dflt[k], dict) and json.loads(json.dumps(dflt[k])) == v: saved[k] = v
            elif isinstance(v, dict) and isinstance(saved.get(k), dict): fill(saved[k], v, dflt.get(k, {}))
        return saved
    now = json.loads(json.dumps(asdict(cfg)))   # as the study wrote it: tuples as lists, also in nested configs
    saved = fill(json.loads(json.dumps(saved_config)), now, defaults(cfg))
    keys = (set(now) | set(saved)) - {"device", "progress"}
    return {k: (saved.get(k, "<absent>"), now.get(k, "<absent>")) for k in sorted(keys) if saved.get(k, "<absent>") != now.get(k, "<absent>")}


def check_argument_errors(tmp_path, prog: str, module: str, cases: list):
    """Run `module.main` (console script `prog`) on each `(args, message)` of `cases` in ONE interpreter, against a
    folder holding a file FILE and a foreign folder OTHER: each must print one line `prog: error: ...` containing
    `message` and exit 2, before any work (no scene rendered, FILE and OTHER untouched)."""
    import json, subprocess, textwrap
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "OTHER").mkdir(); (tmp_path / "OTHER" / "notes.txt").write_text("mine")
    script = tmp_path / "cases.py"
    script.write_text(textwrap.dedent(f"""
        import contextlib, io, json, sys
        from {module} import main
        out = []
        for args in {json.dumps([a for a, _ in cases])}:
            sys.argv = [{prog!r}, *args, '--no_progress']
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try: main(); code = 0
                except SystemExit as e: code = e.code
            out.append([code, err.getvalue()])
        print(json.dumps(out))
    """))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=cli_env(tmp_path), timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for (args, message), (code, err) in zip(cases, json.loads(p.stdout.strip().splitlines()[-1])):
        assert code == 2, (args, code, err)
        assert err.startswith(f"{prog}: error: ") and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "cache").exists()                           # no scene was rendered
    assert (tmp_path / "FILE").read_text() == "x" and sorted(os.listdir(tmp_path / "OTHER")) == ["notes.txt"]


def pytest_collection_modifyitems(items):
    "The notebooks, the longest test file, first: under `pytest -n 2 --dist loadscope` both workers start on them at once."
    items.sort(key=lambda item: item.path.name != "test_notebooks.py")   # stable: every other test keeps its order
