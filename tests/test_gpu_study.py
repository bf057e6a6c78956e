"""bench/gpu_study.sh, the one command a lent GPU machine runs per study (issue 29), checked end to end on the CPU with
PRESET=smoke: the same script, wheels step, command line, time limit and packing as on the GPU, only the preset differs."""
import subprocess, tarfile
from pathlib import Path
from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_study.sh"


def study(tmp_path, *args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**cli_env(tmp_path), "RUNS": str(tmp_path / "runs"), "PRESET": "smoke", **env})


def test_gpu_study_smoke(tmp_path):
    "maskgit at the smoke size: exit 0, and OUTDIR holds at most 8 files under 16 MiB, the run folder packed without checkpoints."
    out = tmp_path / "out"
    p = study(tmp_path, "maskgit", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert files == ["log.txt", "maskgit.tar.gz", "results.json", "study.json"] and all((out / f).stat().st_size < 16 << 20 for f in files)
    log = (out / "log.txt").read_text()
    assert "$ fsq-maskgit --preset smoke" in log and "--max_minutes 6.5" in log and "wrote decoding.png, results.json" in log
    with tarfile.open(out / "maskgit.tar.gz") as t: names = {n.removeprefix("./") for n in t.getnames()}
    assert {"results.json", "study.json", "run.json", "samples.png", "sweeps.png", "decoding.png", "decoding.pt"} <= names
    assert not any(n.startswith(("stage1", "stage2", ".lock")) for n in names)
    assert (tmp_path / "runs" / "gpu-maskgit" / "stage2").is_dir()          # the checkpoints stay on the machine


def test_gpu_study_time_limit_and_usage_errors(tmp_path):
    "Past MAX_MINUTES: exit 3, and the log says why (the same call resumes); a wrong study or arity: one line, exit 2."
    out = tmp_path / "out"
    p = study(tmp_path, "uvim-depth", str(out), MAX_MINUTES="1e-9")
    assert p.returncode == 3, p.stdout[-3000:] + p.stderr[-3000:]
    assert "fsq-uvim: --max_minutes 1e-09 reached" in (out / "log.txt").read_text()
    for args in (("segmentation", str(out)), ("maskgit",)):
        p = study(tmp_path, *args)
        assert p.returncode == 2 and p.stderr.startswith("gpu_study.sh: ") and len(p.stderr.splitlines()) == 1, p.stderr
