"""The UViM study (nbs/12b_uvim_study.ipynb): `fsq-uvim --task depth --preset smoke` as a console script, and its resume
(its usage errors: tests/test_commands.py)."""
import subprocess
from fsq_lit.uvim_study import UVIM, STAGES
from conftest import console_script, cli_env

FIELDS = {"task", "quantizer", "context", "stage", "usage", "rmse", "abs_rel", "delta1", "seed", "weights_checksum"}
FIGURES = {"predictions.png", "usage.png"}


def test_cli_smoke_and_resume(tmp_path):
    "fsq-uvim --task depth --preset smoke writes every record with its fields (its stage-I model's checksum included) and the figures; the same command again trains nothing."
    out, env = tmp_path / "uv", cli_env(tmp_path)
    run = lambda: subprocess.run([console_script("fsq-uvim"), "--task", "depth", "--preset", "smoke", "--out", str(out), "--no_progress"],
                                 capture_output=True, text=True, env=env, timeout=600)
    p = run()
    assert p.returncode == 0, p.stderr[-3000:]
    st, cfg = UVIM.load(out), UVIM.preset("smoke", task="depth")
    assert [UVIM.key(r) for r in st["records"]] == UVIM.plan(cfg)
    assert all(FIELDS <= set(r) and r["task"] == "depth" for r in st["records"])
    assert {r["quantizer"] for r in st["records"]} == {"fsq", "vq"} and {r["context"] for r in st["records"]} == {True, False}
    assert {r["stage"] for r in st["records"]} == set(STAGES)
    assert FIGURES <= {f.name for f in out.iterdir()} and {"hardware", "date", "config", "total_s"} <= set(st["meta"])
    assert "| fsq | fsq | True | oracle | 0 |" in p.stdout
    assert "PLUMBING CHECK, NOT EVIDENCE" in p.stdout and st["meta"]["verdicts"][0].startswith("PLUMBING CHECK")
    assert all(line.startswith("[plumbing] ") for line in st["meta"]["verdicts"][1:])
    runs = lambda: {q: q.read_bytes() for d in ("stage1", "stage2") for q in (out / d).rglob("*") if q.is_file() and not q.name.startswith(".")}
    before = runs()
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert UVIM.load(out)["records"] == st["records"]
    assert "seed 0 oracle" not in again.stdout                       # no record measured again
    assert runs() == before                                          # no training run changed (stage I is loaded to check its checksum)
