"""What lets MaskGIT's samples show their class at CPU size: the study's first cpu preset, one factor at a time.

    python bench/maskgit_stage2.py                              # every variant below (about 35 minutes on 2 cores)
    python bench/maskgit_stage2.py --variants preset,4x-steps
    python bench/maskgit_stage2.py --quick --out /tmp/q.json    # smoke sizes, in about a minute

Each variant is the `fsq-maskgit` study itself (`MASKGIT.run`) with model fsq only (seed 0, no sweeps) and ONE change
to the first cpu preset (GenerationConfig's defaults: 600 MaskGIT steps of batch 64, 1200 tokenizer steps, 20,000 scenes), in its own folder under --cache (a finished variant is read back, not trained again; a variant of stage II reuses the preset's tokenizer). Per variant:
whether the transformer reads the class label at all (its masked-token accuracy on the held-out scenes' tokens, half
the tokens masked, with their own labels, with the labels shuffled across the scenes, and with the null class: a model
that ignores the label scores the same on all three), the seconds stage II trained, and the class accuracy of 500 samples for every sampler setting
of SAMPLERS (guidance, choice temperature), against that of the tokenizer's reconstructions (the ceiling: a sample is
decoded by the same tokenizer). Results merge into `bench/results/cpu-maskgit-stage2.json` (key: variant), with the
machine and the date.
"""
import json, time
from dataclasses import replace
from pathlib import Path
import torch
import _variants   # the benches' shared command line and results file (beside this script)
from fsq_lit.generation import MASKGIT, stage_two, real_set
from fsq_lit.maskgit import generate, condition_labels, token_loss
from fsq_lit.features import class_accuracy
from fsq_lit.tokens import make_tokens, token_tensors, data_tokens_key

RESULTS = Path(__file__).parent / 'results' / 'cpu-maskgit-stage2.json'
VARIANTS = {   # name -> changes to the first cpu preset
    'preset': {},
    '4x-steps': dict(steps=2400),
    'no-class-dropout': dict(class_dropout=0.0),
    'batch-16-4x-steps': dict(batch_size=16, steps=2400),   # the preset's images and compute, in 4x the steps
    '3x-lr': dict(lr=3e-3),
}
STAGE_ONE_SETTINGS = ('image_size', 'n_train', 'channels', 'ch_mult', 'num_res_blocks', 'tok_steps', 'tok_batch', 'tok_lr')
SAMPLERS = [(0.0, 4.5), (1.0, 4.5), (2.0, 4.5), (4.0, 4.5), (0.0, 1.0), (2.0, 1.0)]   # (guidance, choice temperature)
QUICK = dict(image_size=16, n_train=64, n_test=24, channels=8, ch_mult=(1, 2), tok_steps=4, tok_batch=8, n_layer=1, n_head=2,
             d_model=32, steps=4, batch_size=8, warmup=1, n_samples=12, sample_steps=4,
             feature=dict(width=4, feature_dim=16, n_train=64, n_test=24, steps=4, batch_size=16))


@torch.no_grad()
def reads_label(model, tokens: torch.Tensor, labels: torch.Tensor) -> dict:
    "Masked-token accuracy (half the tokens masked, the same positions every time) with the true, shuffled and null labels."
    cfg, g = model.cfg, torch.Generator().manual_seed(0)
    mask = torch.rand(tokens.shape, generator=g).argsort(-1) < tokens.shape[1] // 2
    masked = tokens.masked_fill(mask, cfg.codebook_size)
    def acc(lab): return token_loss(model(masked, lab)[mask], tokens[mask], cfg)[1].float().mean().item()
    return dict(true_labels=acc(labels), shuffled_labels=acc(labels[torch.randperm(len(labels), generator=g)]),
                null_label=acc(torch.full_like(labels, model.null_class)))


def run_variant(name: str, change: dict, cache: Path, quick: bool) -> dict:
    t0 = time.perf_counter()
    base = {**QUICK, **change, **({'steps': 4 * QUICK['steps']} if 'steps' in change else {})} if quick else change
    cfg = MASKGIT.preset('smoke', progress=False) if quick else MASKGIT.config(progress=False)   # the first cpu preset: the defaults
    cfg = replace(cfg, models=('fsq',), sweep_models=(), sweep_guidance=(), **base)
    out, given = cache / name, {}
    if name != 'preset' and change.keys().isdisjoint(STAGE_ONE_SETTINGS):   # the preset's tokenizer, trained once
        run_variant('preset', {}, cache, quick) if not (cache / 'preset' / 'results.json').is_file() else None
        given = {'fsq': str(cache / 'preset' / 'stage1' / 'fsq-s0' / 'tokenizer')}
    st = MASKGIT.run(cfg, out, tokenizers=given)
    ctx = dict(out=out, device=torch.device('cpu'), meta={}, tokenizers=given)
    MASKGIT.prepare(cfg, ctx)
    (tok, st1), (model, st2) = ctx['stage1']['fsq', cfg.seed], stage_two(cfg, 'fsq', ctx)
    data, clf = ctx['data'], ctx['metrics'].classifier
    key = data_tokens_key(cfg.data, cfg.image_size, cfg.data_seed, 0, len(data['test_x']), 'test')
    test_tokens = token_tensors(make_tokens(tok, data['test_x'], data['test_y'], key, progress=False))['tokens'].flatten(1)
    real, real_y = real_set(cfg, data)
    labels = condition_labels(real_y, cfg.n_samples)
    samples = {}
    for guidance, temp in SAMPLERS:
        fake = generate(model, tok.detokenize, labels, cfg.sample_steps, guidance, temp, cfg.seed)
        samples[f"guidance {guidance:g}, temperature {temp:g}"] = class_accuracy(clf, fake, labels)
    log = next((out / 'stage2').glob('fsq-*/metrics.jsonl')).read_text().splitlines()
    return dict(variant=name, change=change, source=str(out), train_steps=st2['train_steps'], stage_two_s=round(json.loads(log[-1])['time'], 1),
                train_token_accuracy=st2['train_token_accuracy'], recon_class_accuracy=st1['recon_class_accuracy'],
                fid=st['records'][0]['fid'], token_accuracy=reads_label(model, test_tokens, data['test_y']),
                sample_class_accuracy=samples, seconds=round(time.perf_counter() - t0, 1))


def main():
    ap = _variants.parser(__doc__, VARIANTS, 'runs/bench-maskgit-stage2', RESULTS)
    a = ap.parse_args()
    line = lambda r: (f"recon {r['recon_class_accuracy']:.3f} token acc {({k: round(v, 3) for k, v in r['token_accuracy'].items()})} samples "
                      f"{({k: round(v, 3) for k, v in r['sample_class_accuracy'].items()})} {r['seconds']:.0f} s")
    _variants.run(ap, a, VARIANTS, 'bench/maskgit_stage2.py', lambda n, change, cache: run_variant(n, change, cache, a.quick), line,
                  samplers=SAMPLERS)


if __name__ == '__main__': main()
