import os, sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never reach a hub
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
    "{setting: (committed, now)} where a committed study's config differs from the preset `cfg` as it is now (device and progress aside)."
    import json
    from dataclasses import asdict
    now = json.loads(json.dumps(asdict(cfg)))   # as the study wrote it: tuples as lists, also in nested configs
    keys = (set(now) | set(saved_config)) - {"device", "progress"}
    return {k: (saved_config.get(k, "<absent>"), now.get(k, "<absent>")) for k in sorted(keys) if saved_config.get(k, "<absent>") != now.get(k, "<absent>")}
