import os, sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never reach a hub
ROOT = Path(__file__).resolve().parents[1]
