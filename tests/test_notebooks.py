"""Every notebook in nbs/ as one pytest test, run the way `nbdev_test` runs it (cells flagged notest/slow skipped)."""
import os, pytest, torch
from pathlib import Path
from nbdev.test import test_nb as run_notebook
from nbdev.config import get_config

NBS = sorted(p for p in (Path(__file__).resolve().parents[1] / "nbs").glob("*.ipynb") if not p.name.startswith("_"))


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    torch.set_num_threads(os.cpu_count() or 1)   # in this process: every core's threads, also under `pytest -n 2` (conftest: one per
                                                 # worker), whose other worker has its one core; the notebooks are the longest file
    ok, secs = run_notebook(nb, skip_flags=get_config().tst_flags.split(), do_print=False)
    assert ok, f"{nb.name} failed (run `nbdev_test --path nbs/{nb.name}` to see the failing cell)"
