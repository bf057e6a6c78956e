"""Tests for fsq_lit.scenes and fsq_lit.data beyond the notebooks' asserts: determinism across chunking, caching, splits,
errors, offline hub, and the cache surviving a killed writer and bit rot seen by a new process (subprocesses)."""
import os, signal, subprocess, sys, textwrap, time
import numpy as np
import pytest
import torch
import datasets
from fsq_lit import data
from fsq_lit.data import make_scenes, scene_tensors, load_digits_images, load_lfw, load_hub, hub_transform
from fsq_lit.scenes import render_scenes, SCENE_LABELS, SEMANTIC_CLASSES, FAR, MAX_OBJECTS

COLS = ("image", "depth", "semantic", "instance", "label")


def _rows(ds, cols=COLS):
    return {c: np.stack([np.asarray(v) for v in ds[c]]) for c in cols}


def test_render_shapes_and_ground_truth():
    r = render_scenes(range(12), size=48, seed=1)
    assert r["image"].shape == (12, 48, 48, 3) and r["image"].dtype == np.uint8
    assert r["depth"].shape == (12, 48, 48) and r["depth"].dtype == np.float32
    assert np.isfinite(r["depth"]).all() and (r["depth"] > 0).all() and (r["depth"] <= FAR).all()
    assert r["semantic"].max() < len(SEMANTIC_CLASSES) and r["instance"].max() <= MAX_OBJECTS
    assert ((r["semantic"] == 0) == (r["instance"] == 0)).all()
    assert set(np.unique(r["label"])) <= set(range(len(SCENE_LABELS)))
    # the nearest pixels (bottom row) are ground, at a few metres
    assert (r["semantic"][:, -1] == 0).mean() > 0.5 and r["depth"][:, -1].min() > 1


def test_render_deterministic_any_batching():
    big = render_scenes(range(70), size=32, seed=7)       # one batch of 64 and one of 6
    for lo, hi in [(5, 10), (60, 70), (63, 65)]:
        part = render_scenes(range(lo, hi), size=32, seed=7)
        for k in COLS: np.testing.assert_array_equal(part[k], big[k][lo:hi])
    rev = render_scenes(list(range(9, -1, -1)), size=32, seed=7)
    np.testing.assert_array_equal(rev["image"], big["image"][9::-1])
    other = render_scenes(range(10), size=32, seed=8)
    assert not np.array_equal(other["image"], big["image"][:10])


def test_make_scenes_matches_render_across_num_proc(tmp_path):
    a = make_scenes(300, size=16, seed=2, cache_dir=tmp_path / "a", num_proc=1, progress=False)
    b = make_scenes(300, size=16, seed=2, cache_dir=tmp_path / "b", num_proc=2, progress=False)
    assert isinstance(a, datasets.Dataset) and len(a) == 300
    assert isinstance(a.features["image"], datasets.Array3D) and a.features["label"].names == SCENE_LABELS
    ta, tb = scene_tensors(a, COLS), scene_tensors(b, COLS)
    for k in COLS: assert torch.equal(ta[k], tb[k])
    ref = render_scenes(range(295, 300), size=16, seed=2)
    np.testing.assert_array_equal(_rows(a.select(range(295, 300)))["image"], ref["image"])
    np.testing.assert_array_equal(_rows(a.select(range(295, 300)))["depth"], ref["depth"])


def test_make_scenes_cache_reused(tmp_path, monkeypatch):
    ds = make_scenes(20, size=16, cache_dir=tmp_path, progress=False)
    assert data.scenes_cache_path(20, 16, 0, 0, tmp_path).is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [data.scenes_cache_path(20, 16, 0, 0, tmp_path).name]   # no temp leftovers
    def boom(*a, **k): raise AssertionError("rendered again instead of loading the cache")
    monkeypatch.setattr(data, "render_scenes", boom)
    monkeypatch.setattr(data, "_render_range", boom)
    again = make_scenes(20, size=16, cache_dir=tmp_path, progress=False)
    assert again["label"] == ds["label"]
    with pytest.raises(AssertionError, match="rendered again"):   # other parameters -> another folder -> renders
        make_scenes(21, size=16, cache_dir=tmp_path, progress=False)


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FSQ_LIT_CACHE", str(tmp_path / "env"))
    make_scenes(3, size=16, progress=False, num_proc=1)
    assert data.scenes_cache_path(3, 16).parent == tmp_path / "env"
    assert data.scenes_cache_path(3, 16).is_dir()


def test_split_disjoint_and_deterministic(tmp_path):
    dd = make_scenes(40, size=16, seed=5, test=10, cache_dir=tmp_path, progress=False)
    assert isinstance(dd, datasets.DatasetDict) and set(dd) == {"train", "test"}
    assert (len(dd["train"]), len(dd["test"])) == (40, 10)
    tr, te = scene_tensors(dd["train"], ("image",))["image"], scene_tensors(dd["test"], ("image",))["image"]
    flat_tr = {bytes(x.numpy().tobytes()) for x in (tr * 255).round().byte()}
    assert not any(bytes(x.numpy().tobytes()) in flat_tr for x in (te * 255).round().byte())
    ref = render_scenes(range(40, 50), size=16, seed=5)["image"]
    np.testing.assert_array_equal((te.permute(0, 2, 3, 1) * 255).round().byte().numpy(), ref)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(n=0), ValueError, "n must"), (dict(n=-3), ValueError, "n must"), (dict(n=2.0), TypeError, "n must"),
    (dict(n=True), TypeError, "n must"), (dict(n=5, size=8), ValueError, "size"), (dict(n=5, size=1000), ValueError, "size"),
    (dict(n=5, size="64"), TypeError, "size"), (dict(n=5, seed=-1), ValueError, "seed"), (dict(n=5, test=-1), ValueError, "test"),
    (dict(n=5, num_proc=0), ValueError, "num_proc"),
])
def test_make_scenes_bad_args(tmp_path, kw, exc, msg):
    with pytest.raises(exc, match=msg): make_scenes(cache_dir=tmp_path, progress=False, **kw)
    assert not any(tmp_path.iterdir())


def test_scene_tensors_layout(tmp_path):
    ds = make_scenes(8, size=24, cache_dir=tmp_path, progress=False)
    t = scene_tensors(ds, COLS)
    assert t["image"].shape == (8, 3, 24, 24) and t["image"].dtype == torch.float32
    assert 0 <= t["image"].min() and t["image"].max() <= 1 and t["image"].max() > 0.5
    assert t["depth"].shape == (8, 1, 24, 24) and t["depth"].dtype == torch.float32
    assert t["semantic"].shape == (8, 24, 24) and t["semantic"].dtype == torch.int64
    assert t["instance"].dtype == torch.int64 and t["label"].shape == (8,) and t["label"].dtype == torch.int64
    t["depth"] += 1                                           # writable (not a view of the memory-mapped cache)
    shuffled = ds.shuffle(seed=0)
    assert scene_tensors(shuffled, "label")["label"].tolist() == shuffled["label"]
    with pytest.raises(ValueError, match="depthz"): scene_tensors(ds, ("depthz",))


def test_small_real_images():
    d = load_digits_images(16)
    assert len(d) == 1797 and d.features["label"].num_classes == 10
    x = scene_tensors(d, ("image", "label"))
    assert x["image"].shape == (1797, 3, 16, 16) and torch.equal(x["image"][:, 0], x["image"][:, 2])
    assert x["label"][:10].tolist() == list(range(10))
    f = load_lfw(32)
    y = scene_tensors(f, ("image", "label"))
    assert y["image"].shape == (200, 3, 32, 32) and y["label"].sum() == 100 and y["image"].std() > 0.1
    with pytest.raises(TypeError): load_lfw(32.5)


def test_load_hub_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, hub_id in [("mnist", "ylecun/mnist"), ("coco-panoptic", "nielsr/coco-panoptic-val2017")]:
        t0 = time.perf_counter()
        with pytest.raises(ConnectionError) as e: load_hub(name, size=32)
        assert time.perf_counter() - t0 < 30   # a guard against a retry loop, not a speed target
        msg = str(e.value)
        assert hub_id in msg and "HF_HUB_OFFLINE" in msg and "make_scenes" in msg and "load_dataset" in msg


def test_load_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(data, "_hub_offline", lambda: False)
    monkeypatch.setattr(data, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ConnectionError, match="unreachable"): load_hub("cifar10")


def test_load_hub_unknown_name():
    with pytest.raises(ValueError, match="cifar10"): load_hub("cifar100")


def test_hub_transform_resize_crop():
    from PIL import Image
    img = Image.fromarray(np.tile(np.arange(60, dtype=np.uint8)[None, :, None], (20, 1, 3)))   # 20 x 60, ramp along x
    out = hub_transform("imagenet-1k", 10)({"image": [img], "label": [5]})
    x = out["image"][0]
    assert x.shape == (3, 10, 10) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert abs(x.mean().item() * 255 - 29.5) < 1.5              # the centre crop of the ramp
    assert out["label"][0].item() == 5


def _python(code, timeout=120):
    "Run `code` in a fresh Python process; return the CompletedProcess."
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def test_killed_save_leaves_no_temp_folder(tmp_path):
    "A writer killed (SIGKILL) in the middle of a save leaves its temporary folder; the next call removes it."
    p = _python(f"""
        import os, signal, datasets
        from fsq_lit.data import make_scenes
        save = datasets.Dataset.save_to_disk
        def save_then_die(self, path, **kw):
            save(self, path, **kw); os.kill(os.getpid(), signal.SIGKILL)
        datasets.Dataset.save_to_disk = save_then_die
        make_scenes(16, size=16, cache_dir={str(tmp_path)!r}, num_proc=1, progress=False)
    """)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    entry = data.scenes_cache_path(16, 16, cache_dir=tmp_path)
    left = [q.name for q in tmp_path.iterdir()]
    assert len(left) == 1 and ".tmp-" in left[0] and not entry.exists()
    ds = make_scenes(16, size=16, cache_dir=tmp_path, num_proc=1, progress=False)
    assert [q.name for q in tmp_path.iterdir()] == [entry.name]
    np.testing.assert_array_equal(scene_tensors(ds, "image", raw=True)["image"].numpy(), render_scenes(range(16), 16)["image"])


def test_new_process_finds_bit_rot(tmp_path):
    "A flipped byte whose file keeps its size and mtime is found by the next process, which warns and renders again."
    make_scenes(16, size=16, cache_dir=tmp_path, num_proc=1, progress=False)
    entry = data.scenes_cache_path(16, 16, cache_dir=tmp_path)
    f = next(entry.rglob("*.arrow"))
    st, b = f.stat(), bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x01; f.write_bytes(b); os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    p = _python(f"""
        import numpy as np
        from fsq_lit.data import make_scenes, scene_tensors
        from fsq_lit.scenes import render_scenes
        ds = make_scenes(16, size=16, cache_dir={str(tmp_path)!r}, num_proc=1, progress=False)
        got, ref = scene_tensors(ds, ("image", "depth", "semantic", "instance", "label"), raw=True), render_scenes(range(16), 16)
        assert all(np.array_equal(got[k].numpy(), ref[k]) for k in ref)
    """)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"scenes cache {entry} failed its check" in p.stderr and "SHA-256" in p.stderr
