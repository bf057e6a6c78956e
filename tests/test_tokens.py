"""Tests for fsq_lit.tokens beyond the notebook's asserts: what needs a second process (a checksum that must be the
same in every process, a writer killed in the middle of saving a tokens cache entry)."""
import signal, subprocess, sys, textwrap
import torch
from fsq_lit.tokens import make_tokens, token_tensors, tokenizer_checksum, tokens_cache_path

SETUP = """
import numpy as np, torch
from fsq_lit.tokenizer import Tokenizer, TokenizerConfig
torch.manual_seed(0)
tok = Tokenizer(TokenizerConfig(channels=8, ch_mult=(1, 2))).eval()
images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
labels, key = np.arange(12) % 3, dict(source="random", n=12, size=16, seed=0)
"""


def _python(code, timeout=120):
    "Run `code` in a fresh Python process; return the CompletedProcess."
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def test_killed_writer_and_checksum_across_processes(tmp_path):
    """A process computes the checksum, then is killed (SIGKILL) right after writing its temporary folder. This process
    gets the same checksum for the same weights (safetensors' header order varies between processes), removes the dead
    writer's folder, and writes the entry under the same name."""
    p = _python(SETUP + f"""
import os, signal, datasets
from fsq_lit.tokens import make_tokens, tokenizer_checksum
print(tokenizer_checksum(tok), flush=True)
save = datasets.Dataset.save_to_disk
def save_then_die(self, path, **kw):
    save(self, path, **kw); os.kill(os.getpid(), signal.SIGKILL)
datasets.Dataset.save_to_disk = save_then_die
make_tokens(tok, images, labels, key, cache_dir={str(tmp_path)!r}, progress=False)
""")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    left = [q.name for q in tmp_path.iterdir()]
    assert len(left) == 1 and ".tmp-" in left[0], left
    ns = {}
    exec(SETUP, ns)
    tok, images, labels, key = ns["tok"], ns["images"], ns["labels"], ns["key"]
    assert tokenizer_checksum(tok) == p.stdout.split()[0]
    entry = tokens_cache_path(tokenizer_checksum(tok), key, tmp_path)
    assert left[0].startswith(entry.name + ".tmp-")
    ds = make_tokens(tok, images, labels, key, cache_dir=tmp_path, progress=False)
    assert [q.name for q in tmp_path.iterdir()] == [entry.name]
    got = token_tensors(ds)
    assert torch.equal(got["tokens"], tok.tokenize(images.permute(0, 3, 1, 2).float() / 255).long())
    assert torch.equal(got["label"], torch.from_numpy(labels))
