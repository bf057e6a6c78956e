"""Every notebook in nbs/ as one pytest test, run the way `nbdev_test` runs it (cells flagged notest/slow skipped)."""
import pytest
from pathlib import Path
from nbdev.test import test_nb as run_notebook
from nbdev.config import get_config

NBS = sorted(p for p in (Path(__file__).resolve().parents[1] / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
HALVES = NBS[0::2], NBS[1::2]   # every other notebook: two classes, two scopes of `pytest -n 2 --dist loadscope`, run at once


def run(nb: Path, monkeypatch):
    monkeypatch.chdir(nb.parent)
    ok, secs = run_notebook(nb, skip_flags=get_config().tst_flags.split(), do_print=False)
    assert ok, f"{nb.name} failed (run `nbdev_test --path nbs/{nb.name}` to see the failing cell)"


class TestNotebooksA:
    @pytest.mark.parametrize("nb", HALVES[0], ids=[p.stem for p in HALVES[0]])
    def test_notebook(self, nb, monkeypatch): run(nb, monkeypatch)


class TestNotebooksB:
    @pytest.mark.parametrize("nb", HALVES[1], ids=[p.stem for p in HALVES[1]])
    def test_notebook(self, nb, monkeypatch): run(nb, monkeypatch)
