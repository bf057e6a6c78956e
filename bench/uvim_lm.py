"""What lets UViM's stage II learn at CPU size: the study's cpu preset on depth, one factor at a time.

    python bench/uvim_lm.py                                   # every variant below (about half an hour on 2 cores)
    python bench/uvim_lm.py --variants preset,cross-attention-only
    python bench/uvim_lm.py --quick --out /tmp/q.json         # smoke sizes, in about a minute

Each variant is the `fsq-uvim` study itself (`UVIM.run`), arms fsq (image context) and fsq-noctx, seed 0, with ONE
change to the cpu preset, in its own folder under --cache (a finished variant is read back, not trained again); the
preset itself is read from the committed cpu study of depth (--study) where its models are in that folder. Per
arm: the prior code's, the oracle's and UViM's (lm) RMSE, the share of the prior-to-oracle distance UViM closes, the
seconds of both stages, and whether the language model reads the image at all: its teacher-forced token accuracy on
the held-out scenes with their own images, with the images shuffled across the scenes, and with grey images. A model
that has learned only the code's own statistics scores the same on all three. Results merge into
`bench/results/cpu-uvim-lm.json` (key: variant), with the machine and the date.
"""
import time
from pathlib import Path
import torch
import _variants   # the benches' shared command line and results file (beside this script)
from fsq_lit.uvim_study import UVIM, closed, arm_means
from fsq_lit.uvim import oracle_codes, code_tokens

RESULTS = Path(__file__).parent / 'results' / 'cpu-uvim-lm.json'
ARMS = ('fsq', 'fsq-noctx')
VARIANTS = {   # name -> changes to the cpu preset
    'preset': {},
    'cross-attention-only': dict(lm_aligned=False),                   # big_vision's language model
    'cross-attention-only-4x-steps': dict(lm_aligned=False, lm_steps=3200),
    '2000-scenes': dict(n_train=2000),
    '4375-codes': dict(levels=(7, 5, 5, 5, 5), codebook_size=4096),   # the paper's levels (and VQ's 4096)
    '256-depth-bins': dict(labels={}),                                 # the task's own bins
}
QUICK = dict(n_train=64, n_test=16, width=32, enc_layers=1, dec_layers=1, n_head=2, steps=4, batch_size=8, lm_width=32,
             lm_enc_layers=1, lm_dec_layers=1, lm_steps=4, lm_batch_size=8, n_show=4)


@torch.no_grad()
def reads_image(cfg, out: Path, arm: str) -> dict:
    "Held-out teacher-forced token accuracy of (arm, seed 0)'s language model with the true, shuffled and grey images."
    ctx = dict(out=out, device=torch.device('cpu'), meta={})
    s1, lm = UVIM.stage_one(cfg, arm, 0, ctx)[0], UVIM.stage_two(cfg, arm, 0, ctx)[0]
    test = UVIM.data(cfg, ctx)[1]
    codes, g = oracle_codes(s1, test), torch.Generator().manual_seed(0)
    target = code_tokens(codes)[1]
    acc = lambda images: (lm(images, codes).argmax(-1) == target).float().mean().item()
    images = test['image']
    return dict(true_images=acc(images), shuffled_images=acc(images[torch.randperm(len(images), generator=g)]),
                grey_images=acc(torch.full_like(images, 0.5)))


def finished_study(study: Path | None, quick: bool):
    "The committed cpu study of depth at `study`, as (config, records), where it holds the models of seed 0 of both arms; else None."
    if study is None or quick or not all((study / 'stage1' / f'{a}-s0').is_dir() for a in ARMS): return None
    st = UVIM.load(study)
    cfg = UVIM.config_of(st)
    if cfg != UVIM.preset('cpu', task='depth', progress=cfg.progress): return None
    return cfg, [r for r in st['records'] if r['seed'] == 0 and r['arm'] in ARMS]


def run_variant(name: str, change: dict, cache: Path, quick: bool, study: Path | None = None) -> dict:
    t0 = time.perf_counter()
    if not change and (got := finished_study(study, quick)):           # the preset itself: the committed study's seed 0
        (cfg, records), out = got, study
        st = dict(records=records)
    else:
        kw = {**QUICK, **change, **({'lm_steps': 4 * QUICK['lm_steps']} if 'lm_steps' in change else {})} if quick else change
        cfg = UVIM.preset('smoke' if quick else 'cpu', task='depth', arms=ARMS, seeds=(0,), progress=False, **kw)
        out = cache / name
        st = UVIM.run(cfg, out)
    means, gone = arm_means(st['records'], 'depth'), closed(st['records'], 'depth')
    lm_row = {r['arm']: r for r in st['records'] if r['stage'] == 'lm'}
    oracle_row = {r['arm']: r for r in st['records'] if r['stage'] == 'oracle'}
    arms = {a: dict(prior=means[a, 'prior']['rmse'], oracle=means[a, 'oracle']['rmse'], lm=means[a, 'lm']['rmse'],
                    closed=gone[a][0], stage_one_s=oracle_row[a].get('stage_one_s'), lm_s=lm_row[a].get('lm_s'),
                    token_accuracy=reads_image(cfg, out, a)) for a in ARMS}
    return dict(variant=name, change={k: list(v) if isinstance(v, tuple) else v for k, v in change.items()}, source=str(out),
                codebook_size=st['records'][0]['codebook_size'], arms=arms, seconds=round(time.perf_counter() - t0, 1))


def main():
    ap = _variants.parser(__doc__, VARIANTS, 'runs/bench-uvim-lm', RESULTS)
    ap.add_argument('--study', default='nbs/results/uvim-depth-cpu',
                    help="the preset's variant is read from this finished cpu study of depth (seed 0) where its models are there")
    a = ap.parse_args()
    line = lambda row: ' '.join(f"{arm}: closed {v['closed']:.0%} (token acc {v['token_accuracy']['true_images']:.3f} with its images, "
                                f"{v['token_accuracy']['shuffled_images']:.3f} shuffled)" for arm, v in row['arms'].items())
    _variants.run(ap, a, VARIANTS, 'bench/uvim_lm.py', lambda n, change, cache: run_variant(n, change, cache, a.quick, Path(a.study)), line,
                  closed='(prior - lm) / (prior - oracle) in RMSE: the share of the prior-to-oracle distance UViM closes')


if __name__ == '__main__': main()
