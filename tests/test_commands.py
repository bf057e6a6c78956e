"""What every training command promises, checked once over all five: a bad argument, a device this machine lacks or an
unusable --out is one line and exit 2 before anything is touched; Ctrl-C (SIGINT to the command's process group, as a
terminal sends it) is one line and exit 130, and the same command then finishes the study (fsq-compare's smoke run);
a cache folder that cannot be written is one line naming it; `--help` names every preset; each study's smoke run,
on folders of real images or written labels (`--data folder:PATH`), finishes with its records, figures, table and
plumbing verdicts (the scenes' smoke runs are the chapters' own); a damaged file in such a folder is one line naming it."""
import importlib, json, os, re, signal, subprocess
import pytest
from fastcore.script import anno_parser
from conftest import console_script, cli_env, check_argument_errors

COMMANDS = {"fsq-tokenizer": "fsq_lit.tokenizer", "fsq-compare": "fsq_lit.compare", "fsq-usage": "fsq_lit.usage",
            "fsq-maskgit": "fsq_lit.generation", "fsq-uvim": "fsq_lit.uvim_study"}


SMOKE = ["--preset", "smoke"]
CASES = {   # each command's bad arguments and unusable --out, with what its one line must say
    "fsq-tokenizer": [(["--preset", "nope"], "unknown preset 'nope'"), (SMOKE + ["--out", "OTHER"], "is not empty and is not a fsq-tokenizer run")],
    "fsq-compare": [(["--preset", "nope"], "unknown preset 'nope'"), (SMOKE + ["--steps", "0"], "steps must be >= 1"),
                    (SMOKE + ["--out", "FILE"], "is a file"), (SMOKE + ["--out", "OTHER"], "is not empty and is not a fsq-compare run"),
                    (SMOKE + ["--out", "FILE/sub"], "Not a directory"), (SMOKE + ["--seeds", "0,0"], "seeds must be non-empty and distinct")],
    "fsq-usage": [(["--preset", "nope"], "unknown preset 'nope'"), (SMOKE + ["--out", "FILE"], "is a file"),
                  (SMOKE + ["--out", "OTHER"], "is not empty and is not a fsq-usage run")],
    "fsq-maskgit": [],   # its cases need saved tokenizers: tests/test_generation.py
    "fsq-uvim": [(["--preset", "nope"], "unknown preset 'nope'"), (["--task", "edges"] + SMOKE, "task must be one of"),
                 (SMOKE + ["--arms", "fsq,lfq"], "unknown arm 'lfq'"), (SMOKE + ["--seeds", "x"], "comma-separated list of int"),
                 (SMOKE + ["--steps", "0"], "steps must be >= 1"), (SMOKE + ["--out", "FILE"], "is a file"),
                 (SMOKE + ["--out", "OTHER"], "is not empty and is not a fsq-uvim run")],
}


@pytest.mark.parametrize("prog", list(COMMANDS))
def test_argument_errors(tmp_path, prog):
    """A bad argument, a device this machine lacks or an unusable --out: one line `prog: error: ...`, exit 2, before any
    work (no scene rendered, --out untouched); all of one command's cases in one interpreter."""
    import torch
    devices = [(SMOKE + ["--device", d, "--out", "NEW"], f"unknown device {d!r}" if d == "tpu" else "CUDA is not available")
               for d in ["tpu"] + ([] if torch.cuda.is_available() else ["cuda"])]
    if not torch.cuda.is_available():   # a GPU preset without a GPU: refused unless --device names one
        devices.append((["--preset", "gpu", "--out", "NEW"], "is sized for a GPU and CUDA is not available here: use --preset"))
    check_argument_errors(tmp_path, prog, COMMANDS[prog], CASES[prog] + devices)
    assert not (tmp_path / "NEW").exists()


@pytest.mark.parametrize("prog", list(COMMANDS))
def test_help_names_every_preset(prog):
    "Each command's `--help` (its argument parser, built from `main`'s signature and comments) names every preset it accepts."
    module = importlib.import_module(COMMANDS[prog])
    text = anno_parser(module.main.__wrapped__, prog).format_help()
    assert all(name in text for name in module.PRESETS), (sorted(module.PRESETS), text)


def check_smoke(prog: str, out, stdout: str):
    """What each study's smoke run promises (the commands run on folders of real images below): every key of its plan
    measured, its figures written, and its progress, table, verdicts and figures each marked as a plumbing check."""
    import matplotlib.pyplot as plt
    study = {"fsq-usage": "USAGE", "fsq-maskgit": "MASKGIT", "fsq-uvim": "UVIM"}[prog]
    study = getattr(importlib.import_module(COMMANDS[prog]), study)
    st = study.load(out); cfg = study.config_of(st)
    assert [study.key(r) for r in st["records"]] == study.plan(cfg)
    figs = study.draw(st, out)
    assert len(figs) >= 2 and all((out / f).is_file() for _, f in figs)
    for fig, _ in figs: plt.close(fig)
    assert study.table(st["records"], cfg) in stdout
    verdicts = st["meta"]["verdicts"]
    assert verdicts[0].startswith("PLUMBING CHECK, NOT EVIDENCE") and len(verdicts) > 1
    assert all(l.startswith("[plumbing] ") and l in stdout for l in verdicts[1:])
    lines = stdout.splitlines()                  # the progress lines and the table say it too, and so do the figures
    progress = [l for l in lines if re.match(r"(\[plumbing\] )?\[\d+/\d+\] ", l)]
    assert progress and all(l.startswith("[plumbing] [") for l in progress), progress
    assert "[plumbing] a smoke run: the table below checks the code, not the paper" in lines
    from fsq_lit.study import estimate_line                     # the estimate of its GPU time, printed before it started, kept
    assert estimate_line(st["meta"]["estimate"]) in lines and st["meta"]["estimate"] == study.estimate(cfg)
    assert all("PLUMBING CHECK" in " ".join(t.get_text() for t in f.texts) for f in study.plot(out, save=False))


def test_ctrl_c_is_one_line_and_resumes(tmp_path):
    "SIGINT to the process group of `fsq-compare --preset smoke` after its first record: one line, exit 130; then the same command finishes the smoke study."
    cmd = [console_script("fsq-compare"), "--preset", "smoke", "--out", str(tmp_path / "c"), "--no_progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path), start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # as in a terminal, even where a background launcher ignores SIGINT
    for line in p.stdout:
        if line.startswith("[plumbing] [1/"): break
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err[-3000:])
    assert err == "fsq-compare: interrupted; run the same command to resume\n", err[-3000:]
    p = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(tmp_path), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stdout and "| quantizer |" in p.stdout and "wrote" in p.stdout
    from fsq_lit.compare import COMPARE                               # the finished smoke study: every key, its files, plumbing verdicts
    out, cfg = tmp_path / "c", COMPARE.preset("smoke")
    st = COMPARE.load(out)
    assert [COMPARE.key(r) for r in st["records"]] == COMPARE.plan(cfg)
    assert all(0 < r["usage"] <= 1 and r["psnr"] > 0 and r["mse"] > 0 for r in st["records"])
    assert [t["target_size"] for t in st["timing"]] == list(cfg.sizes)
    assert {"tradeoff.png", "ablation.png", "timing.png", "recon.png"} <= {f.name for f in out.iterdir()}
    verdicts = st["meta"]["verdicts"]
    assert verdicts[0].startswith("PLUMBING CHECK, NOT EVIDENCE") and len(verdicts) == 1 + len(COMPARE.claims(st["records"], cfg))
    assert all(l.startswith("[plumbing] ") and l in p.stdout for l in verdicts[1:])


def test_max_minutes_stops_and_resumes_exactly(tmp_path):
    """`fsq-uvim --preset smoke --max_minutes` past its limit inside the first training: one line, exit 3, a checkpoint; the same
    command without the limit finishes, with every model bit for bit that of an uninterrupted run (the records' checksums)."""
    cmd = lambda out, *extra: [console_script("fsq-uvim"), "--preset", "smoke", "--out", str(tmp_path / out), "--no_progress", *extra]
    p = subprocess.run(cmd("a", "--max_minutes", "1e-9"), capture_output=True, text=True, env=cli_env(tmp_path), timeout=300)
    assert p.returncode == 3, p.stderr[-3000:]
    assert re.fullmatch(r"fsq-uvim: --max_minutes 1e-09 reached \(stopped by the time limit after step 1 of 4, checkpoint \S+ckpt\.pt\); "
                        r"run the same command to resume\n", p.stderr), p.stderr[-3000:]
    for out, extra in (("a", ()), ("b", ())):
        p = subprocess.run(cmd(out, *extra), capture_output=True, text=True, env=cli_env(tmp_path), timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
    from fsq_lit.uvim_study import UVIM
    sums = lambda out: [(UVIM.key(r), r.get("weights_checksum"), r.get("lm_weights_checksum")) for r in UVIM.load(tmp_path / out)["records"]]
    assert sums("a") == sums("b") and all(s[1] for s in sums("a"))


def test_unwritable_cache_is_one_line(tmp_path):
    "A cache path that cannot hold a folder (here a file): one line naming it, exit 2, not a traceback."
    (tmp_path / "cachefile").write_text("x")
    env = {**cli_env(tmp_path), "FSQ_LIT_CACHE": str(tmp_path / "cachefile")}
    p = subprocess.run([console_script("fsq-compare"), "--preset", "smoke", "--out", str(tmp_path / "c"), "--no_progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.startswith("fsq-compare: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr[-3000:]
    assert "cachefile" in p.stderr


def test_data_folder(tmp_path):
    """`fsq-tokenizer --preset smoke --data folder:PATH` trains on real photographs (chapter 04b's `photo_folder`: scikit-image's
    bundled images as tiles of mixed modes and sizes in two class folders) and its model card names them; `fsq-maskgit`
    conditions on the folder's classes and measures in a feature space trained on them; the same folder
    with one truncated JPEG: one line naming the file, exit 2, and no images entry left in the cache."""
    from fsq_lit.sources import photo_folder
    folder, env = photo_folder(tmp_path / "photos", per_class=40), cli_env(tmp_path)
    cmd = [console_script("fsq-tokenizer"), "--preset", "smoke", "--data", f"folder:{folder}", "--no_progress"]
    p = subprocess.run(cmd + ["--out", str(tmp_path / "t")], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    card = (tmp_path / "t" / "tokenizer" / "README.md").read_text()
    assert f"images of `folder:{folder}`" in card and "2 classes" in card, card
    p = subprocess.run([console_script("fsq-maskgit"), "--preset", "smoke", "--data", f"folder:{folder}", "--no_progress",
                        "--out", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    from fsq_lit.generation import MASKGIT        # conditioned on the folder's two classes, measured in a space learned from them
    st = MASKGIT.load(tmp_path / "m")
    assert st["meta"]["classes"] == ["animals", "things"] and st["meta"]["feature_net"]["classes"] == ["animals", "things"]
    assert len(st["records"]) == len(MASKGIT.plan(MASKGIT.preset("smoke"))) and all(r["fid"] >= 0 for r in st["records"])
    check_smoke("fsq-maskgit", tmp_path / "m", p.stdout)
    jpg = next(folder.rglob("*.jpg"))
    jpg.write_bytes(jpg.read_bytes()[:400])
    before = {e.name for e in (tmp_path / "cache").iterdir()}
    p = subprocess.run(cmd + ["--out", str(tmp_path / "t2")], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr[-3000:]
    assert p.stderr.startswith("fsq-tokenizer: error: ") and f"{jpg}: cannot read this image" in p.stderr, p.stderr
    assert {e.name for e in (tmp_path / "cache").iterdir()} == before


def test_uvim_labelled_folders(tmp_path):
    """`fsq-uvim --preset smoke` on labelled folders written from rendered scenes (chapter 04c): depth on an NYU-style
    folder of image + depth pairs, panoptic on a COCO panoptic folder; study.json records the source and the task's
    parameters. Then a depth map of another size than its image: one line naming it, exit 2, and no labels entry left in
    the cache (each format's bad files are chapter 04c's)."""
    from fsq_lit.labels import write_depth_folder, write_coco_panoptic
    import numpy as np
    nyu, coco, env = write_depth_folder(tmp_path / "nyu", n=24, size=40), write_coco_panoptic(tmp_path / "coco", n=24, size=40), cli_env(tmp_path)
    run = lambda task, folder, out: subprocess.run([console_script("fsq-uvim"), "--task", task, "--preset", "smoke", "--arms", "fsq",
                                                   "--data", f"folder:{folder}", "--no_progress", "--out", str(tmp_path / out)],
                                                  capture_output=True, text=True, env=env, timeout=600)
    for task, folder, params in (("depth", nyu, {"bins", "min_depth", "max_depth"}), ("panoptic", coco, {"classes", "things", "stuffs", "num_instances"})):
        p = run(task, folder, task)
        assert p.returncode == 0, p.stderr[-3000:]
        meta, records = (json.loads((tmp_path / task / f).read_text()) for f in ("study.json", "results.json"))
        assert meta["data"] == meta["config"]["data"] == f"folder:{folder}" and set(meta["task_params"]) == params, meta
        assert len(records) == 3 and all(r["task"] == task for r in records)
        check_smoke("fsq-uvim", tmp_path / task, p.stdout)
    assert json.loads((tmp_path / "panoptic" / "study.json").read_text())["task_params"]["classes"][0] == "void"
    before = {e.name for e in (tmp_path / "cache").iterdir()}
    bad_depth = nyu / "depth" / "scene_005.npy"              # each format's bad files: chapter 04c; here the command's one line
    np.save(bad_depth, np.ones((40, 36), np.float32))
    p = run("depth", nyu, "depth2")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr[-3000:]
    assert p.stderr.startswith("fsq-uvim: error: ") and f"{bad_depth}: 36x40 px, but its image" in p.stderr, p.stderr
    assert {e.name for e in (tmp_path / "cache").iterdir()} == before


def test_data_folder_without_classes(tmp_path):
    """`fsq-usage --data folder:PATH` runs its study on photographs, leaving out the data factor (scene complexity) with a
    line saying so; `fsq-maskgit` on a folder without class sub-folders trains an unconditional MaskGIT and, with no
    Inception weights in the (empty) torch hub cache, records FID, precision, recall and class accuracy as not measured."""
    import shutil
    from fsq_lit.sources import photo_folder
    from fsq_lit.usage import USAGE
    from fsq_lit.generation import MASKGIT
    flat = tmp_path / "flat"; flat.mkdir()
    for p in sorted(photo_folder(tmp_path / "photos", per_class=17).rglob("*.*")): shutil.copy(p, flat / p.name)   # 34 images, no classes
    env = {**cli_env(tmp_path), "TORCH_HOME": str(tmp_path / "torch")}
    run = lambda prog, *args: subprocess.run([console_script(prog), "--preset", "smoke", "--data", f"folder:{flat}", "--no_progress", *args],
                                             capture_output=True, text=True, env=env, timeout=600)
    p = run("fsq-usage", "--out", str(tmp_path / "u"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"the data factor (scene complexity) is a property of the procedural scenes: left out for folder:{flat}" in p.stdout
    st = USAGE.load(tmp_path / "u")
    assert {r["complexity"] for r in st["records"]} == {0} and len(st["records"]) == len(USAGE.plan(USAGE.config_of(st)))
    assert not (tmp_path / "u" / "data.png").exists() and (tmp_path / "u" / "eval.png").exists()
    check_smoke("fsq-usage", tmp_path / "u", p.stdout)
    p = run("fsq-maskgit", "--out", str(tmp_path / "m"), "--steps", "2", "--tok_steps", "2", "--n_samples", "8")
    assert p.returncode == 0, p.stderr[-3000:]
    st = MASKGIT.load(tmp_path / "m")
    assert st["meta"]["classes"] is None and st["meta"]["feature_space"] is None
    assert all(r[k] is None for r in st["records"] for k in ("fid", "precision", "recall", "class_accuracy", "rfid", "feature_space"))
    assert "[plumbing] not measurable: FSQ samples as well as VQ" in p.stdout and "FID not measured" in p.stdout
    check_smoke("fsq-maskgit", tmp_path / "m", p.stdout)
