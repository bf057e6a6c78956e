"""What limits UViM's stage II (the language model) at CPU size: a measured ablation around the study's FIRST cpu preset
(4375 FSQ codes, 256 depth bins, 2000 scenes, a width-128 language model with cross-attention only), kept here as
`FIRST_CPU` so that the committed results stay reproducible; `bench/uvim_lm.py` is the ablation around the preset now.

    python bench/uvim_stage2.py                                  # depth: every variant below
    python bench/uvim_stage2.py --task panoptic --variants base,data8k
    python bench/uvim_stage2.py --quick --out /tmp/q.json        # a tiny version (smoke sizes) in well under a minute

One stage I per task and stage-I setting (the FSQ arm of `fsq_lit.uvim_study`'s cpu preset unless a variant changes it)
is trained once and cached under --cache; every variant then trains a language model on that frozen stage I's oracle
codes, changing ONE thing of the cpu preset (steps, width, depth, lr, the number of stage-II training scenes, or stage I's
codebook / code dropout), and decodes the `n_test` held-out scenes greedily, as the study does. Per variant: the task
metric of the prior code, the oracle and the language model, the closed fraction
(metric(lm) - metric(prior)) / (metric(oracle) - metric(prior)), the training token accuracy, and where the errors are:
the held-out teacher-forced and greedy token accuracy, the share of greedy tokens equal to the prior code, the accuracy on
the tokens where the oracle's code is not the prior code, and accuracy by how frequent the oracle's code is in training.
Stage-II training scenes beyond the study's n_train are taken after the held-out scenes (never the held-out ones).
Results merge into `bench/results/cpu-uvim-stage2.json` (key: task and variant), with the machine and the date.
"""
import argparse, dataclasses, datetime, hashlib, json, sys, time
from pathlib import Path
import torch
from fsq_lit.train import fit, hardware
from fsq_lit.uvim_study import UViMStudyConfig
from fsq_lit.uvim_tasks import get_task, scene_batch
from fsq_lit.uvim import (UViMStageOne, UViMLanguageModel, stage_one_loss, stage_two_loss, oracle_codes, prior_code,
                          codes_and_maps, code_tokens, decode_code)
from fsq_lit.quantizer import code_stats

RESULTS = Path(__file__).parent / 'results' / 'cpu-uvim-stage2.json'
LM_KEYS = ('lm_steps', 'lm_width', 'lm_enc_layers', 'lm_dec_layers', 'lm_lr', 'lm_batch_size')
S1_KEYS = ('levels', 'code_dropout', 'steps')
VARIANTS = {   # name -> changes to the cpu preset (n_lm: stage-II training scenes; levels, code_dropout, steps: stage I)
    'base': {},
    'steps3200': dict(lm_steps=3200),
    'data8k': dict(n_lm=8000),
    'data8k-steps3200': dict(n_lm=8000, lm_steps=3200),
    'width256': dict(lm_width=256),
    'deep4': dict(lm_enc_layers=4, lm_dec_layers=4),
    'lr5e-4': dict(lm_lr=5e-4),
    'levels125': dict(levels=(5, 5, 5)),
    'nodropout': dict(code_dropout='none'),
}
QUICK = dict(n_train=32, n_test=8, width=32, enc_layers=1, dec_layers=1, n_head=2, steps=4, batch_size=8, lm_width=32,
             lm_enc_layers=1, lm_dec_layers=1, lm_steps=4, lm_batch_size=8, n_show=4)
QUICK_VARIANTS = {'base': {}, 'data64': dict(n_lm=64), 'levels125': dict(levels=(5, 5, 5))}


FIRST_CPU = dict(n_train=2000, levels=(7, 5, 5, 5, 5), codebook_size=4096, lm_width=128, lm_aligned=False)   # the study's first cpu preset
FIRST_STEPS = {'panoptic': 2000}                                                                            # and its stage-I steps per task

def base_config(task: str, quick: bool) -> UViMStudyConfig:
    "The study's first cpu preset (smoke sizes with --quick) for `task`, FSQ arm, seed 0."
    kw = dict(QUICK) if quick else dict(FIRST_CPU, **({'steps': FIRST_STEPS[task]} if task in FIRST_STEPS else {}))
    return UViMStudyConfig(**kw | dict(task=task, arms=('fsq',), seeds=(0,), progress=False))

def _digest(obj) -> str: return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]

def stage_one(cfg: UViMStudyConfig, s1: dict, cache: Path) -> tuple:
    "Stage I (FSQ arm) with the changes `s1` (levels, code_dropout, steps), trained once and cached: (model in eval mode, info)."
    c = dataclasses.replace(cfg, **{k: v for k, v in s1.items() if k in ('levels', 'steps')})
    ucfg = dataclasses.replace(c.uvim_config('fsq'), code_dropout=s1.get('code_dropout', 'random'))
    key = dict(uvim={k: v for k, v in dataclasses.asdict(ucfg).items() if v is not None},   # fields added later at None: same key
                n_train=c.n_train, steps=c.steps, batch_size=c.batch_size, lr=c.lr, data_seed=c.data_seed)
    path = cache / f"stage1-{cfg.task}-{_digest(key)}.pt"
    model = UViMStageOne(ucfg)
    if path.exists():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved['model'])
        return model.eval(), saved['info']
    torch.manual_seed(0)
    res = fit(model, scene_batch(range(c.n_train), c.image_size, c.data_seed), stage_one_loss, c.train_config(1, 0))
    info = dict(key=key, stage_one_s=round(res.history[-1]['time'], 1), codebook_size=model.quantizer.codebook_size)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model=res.model.state_dict(), info=info), path)
    print(f"{cfg.task} stage I {s1 or 'cpu preset'}: {info['stage_one_s']:.0f} s", flush=True)
    return res.model.eval(), info

@torch.no_grad()
def probe(task: str, quick: bool, cache: Path) -> dict:
    """How the prior-to-oracle distance of the frozen stage I (cpu preset) depends on which tokens are right: the closed
    fraction of oracle codes kept only on some tokens (the rest the prior code), or moved in the FSQ lattice."""
    cfg = base_config(task, quick)
    model, _ = stage_one(cfg, {}, cache)
    tk, K, n = get_task(task), model.quantizer.codebook_size, cfg.n_test
    test = scene_batch(range(cfg.n_train, cfg.n_train + n), cfg.image_size, cfg.data_seed)
    train = oracle_codes(model, scene_batch(range(cfg.n_train), cfg.image_size, cfg.data_seed))
    oc, prior = oracle_codes(model, test), prior_code(train).expand(n, -1)
    score = lambda c: tk.metrics(decode_code(model, c, test['image']), test)[tk.metric]
    P, O = score(prior), score(oc)
    closed = lambda c: (score(c) - P) / (O - P) if O != P else None
    order, g = torch.bincount(train.flatten(), minlength=K).argsort(descending=True), torch.Generator().manual_seed(0)
    grid = int(round(oc.shape[1] ** 0.5)); row = torch.arange(oc.shape[1]) // grid
    out = dict(prior=P, oracle=O, prior_token_acc=(oc == prior).float().mean().item())
    for k in (10, 100, 1000):
        keep = torch.isin(oc, order[:k])
        out[f'oracle on the top-{k} codes only'] = dict(share=keep.float().mean().item(), closed=closed(torch.where(keep, oc, prior)))
    for name, keep in (('oracle on the top half of the grid only', row < grid // 2), ('oracle on the bottom half only', row >= grid // 2)):
        out[name] = closed(torch.where(keep.expand(n, -1), oc, prior))
    top, rare = order[:100], ~torch.isin(oc, order[:100])
    out['rare tokens (code rank > 100) replaced by the prior code'] = closed(torch.where(rare, prior, oc))
    out['rare tokens replaced by a random top-100 code'] = closed(torch.where(rare, top[torch.randint(0, 100, oc.shape, generator=g)], oc))
    if model.cfg.quantizer == 'fsq':
        L = torch.tensor(model.cfg.levels); basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), L[:-1]]), 0)
        digits = lambda c: (c[..., None] // basis) % L
        near = top[(digits(oc)[..., None, :] - digits(top)).abs().sum(-1).argmin(-1)]
        out['rare tokens replaced by the nearest top-100 code (FSQ lattice, L1)'] = closed(torch.where(rare, near, oc))
        for step in (1, 2):
            d, dim = digits(oc), torch.randint(0, len(L), oc.shape + (1,), generator=g)
            v = d.gather(-1, dim) + step * (torch.randint(0, 2, dim.shape, generator=g) * 2 - 1)
            v = torch.where((v < 0) | (v >= L[dim]), 2 * d.gather(-1, dim) - v, v)       # off the grid: the other way
            out[f'every token moved {step} FSQ level(s) in one random dimension'] = closed((d.scatter(-1, dim, v) * basis).sum(-1))
    print(f"{task} probe: " + "; ".join(f"{k}: {v if not isinstance(v, float) else round(v, 3)}" for k, v in out.items()), flush=True)
    return out

def lm_scenes(cfg: UViMStudyConfig, n: int) -> dict:
    "`n` stage-II training scenes: the study's 0 .. n_train - 1, then scenes after the held-out ones."
    idx = list(range(min(n, cfg.n_train))) + list(range(cfg.n_train + cfg.n_test, cfg.n_train + cfg.n_test + max(0, n - cfg.n_train)))
    return scene_batch(idx, cfg.image_size, cfg.data_seed)

@torch.no_grad()
def teacher_forced(lm, images, codes, chunk: int = 256) -> tuple:
    "Held-out teacher-forced cross-entropy and token accuracy."
    lm.eval(); ce, hit = 0.0, 0.0
    for i in range(0, len(images), chunk):
        logits, t = lm(images[i:i + chunk], codes[i:i + chunk]), code_tokens(codes[i:i + chunk])[1]
        ce += torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), t.flatten(), reduction='sum').item()
        hit += (logits.argmax(-1) == t).sum().item()
    return ce / codes.numel(), hit / codes.numel()

def diagnose(train_codes, prior, oracle, greedy, K: int) -> dict:
    "Where the greedy codes go wrong against the oracle's: overall, on non-prior tokens, by the code's training frequency, by grid row."
    ok, is_prior = greedy == oracle, oracle == prior
    freq = torch.bincount(train_codes.flatten(), minlength=K)
    rank = torch.empty(K, dtype=torch.long); rank[freq.argsort(descending=True)] = torch.arange(K)
    r, seen = rank[oracle], freq[oracle] > 0
    buckets = {'top1': r == 0, 'top2-10': (r >= 1) & (r < 10), 'top11-100': (r >= 10) & (r < 100), 'rest': (r >= 100) & seen, 'unseen': ~seen}
    g = int(round(oracle.shape[1] ** 0.5))
    return dict(greedy_acc=ok.float().mean().item(), prior_acc=is_prior.float().mean().item(),
                lm_equals_prior=(greedy == prior).float().mean().item(),
                lm_equals_top1=(greedy == freq.argmax()).float().mean().item(),
                acc_non_prior=ok[~is_prior].float().mean().item() if (~is_prior).any() else None,
                acc_prior_tokens=ok[is_prior].float().mean().item() if is_prior.any() else None,
                by_freq={k: dict(share=m.float().mean().item(), acc=ok[m].float().mean().item() if m.any() else None) for k, m in buckets.items()},
                acc_by_row=[round(x, 3) for x in ok.float().reshape(len(ok), g, -1).mean((0, 2)).tolist()] if g * g == oracle.shape[1] else None,
                train_code_usage=(freq > 0).float().mean().item())

def run_variant(task: str, name: str, change: dict, quick: bool, cache: Path, memo: dict) -> dict:
    "Train and measure one variant; stage I, its codes and the reference numbers (prior, oracle) are shared through `memo`."
    cfg = base_config(task, quick)
    s1 = {k: change[k] for k in S1_KEYS if k in change}
    cfg_v = dataclasses.replace(cfg, **{k: change[k] for k in LM_KEYS if k in change})
    n_lm, t0 = change.get('n_lm', cfg.n_train), time.perf_counter()
    tk = get_task(task); m = tk.metric
    sk = (task, _digest(s1))
    if sk not in memo:
        model, info = stage_one(cfg_v, s1, cache)
        test = scene_batch(range(cfg.n_train, cfg.n_train + cfg.n_test), cfg.image_size, cfg.data_seed)
        train_codes = oracle_codes(model, scene_batch(range(cfg.n_train), cfg.image_size, cfg.data_seed))
        prior = prior_code(train_codes)
        oc, omaps = codes_and_maps(model, test, None)
        _, pmaps = codes_and_maps(model, test, prior)
        memo[sk] = dict(model=model, info=info, test=test, train_codes=train_codes, prior=prior, oracle_codes=oc,
                        oracle=tk.metrics(omaps, test), prior_m=tk.metrics(pmaps, test),
                        oracle_usage=code_stats(oc, model.quantizer.codebook_size)['usage'])
    S = memo[sk]; model, K = S['model'], S['model'].quantizer.codebook_size
    data = lm_scenes(cfg, n_lm)
    codes = S['train_codes'] if n_lm == cfg.n_train else oracle_codes(model, data)
    torch.manual_seed(0)
    res = fit(UViMLanguageModel(cfg_v.lm_config(), model.cfg.code_len, K), {'image': data['image'], 'code': codes},
              stage_two_loss, cfg_v.train_config(2, 0))
    lm = res.model.eval()
    t1 = time.perf_counter()
    gcodes, lmaps = codes_and_maps(model, S['test'], lm)
    lm_m = tk.metrics(lmaps, S['test'])
    tf_ce, tf_acc = teacher_forced(lm, S['test']['image'], S['oracle_codes'])
    tr_ce, tr_acc = teacher_forced(lm, data['image'][:cfg.n_test], codes[:cfg.n_test])
    den = S['oracle'][m] - S['prior_m'][m]
    rec = dict(task=task, variant=name, change={k: list(v) if isinstance(v, tuple) else v for k, v in change.items()},
               settings=dict(n_lm=n_lm, **{k: getattr(cfg_v, k) for k in LM_KEYS}, levels=list(model.cfg.levels),
                             code_dropout=model.cfg.code_dropout, stage_one_steps=S['info']['key']['steps']),
               codebook_size=K, metric=m, prior=S['prior_m'][m], oracle=S['oracle'][m], lm=lm_m[m],
               closed=(lm_m[m] - S['prior_m'][m]) / den if den else None,
               lm_accuracy=res.history[-1]['accuracy'], train_tf_accuracy=tr_acc, train_tf_ce=tr_ce,
               test_tf_accuracy=tf_acc, test_tf_ce=tf_ce, oracle_usage=S['oracle_usage'],
               lm_usage=code_stats(gcodes, K)['usage'],
               **diagnose(S['train_codes'], S['prior'], S['oracle_codes'], gcodes, K),
               prior_metrics=S['prior_m'], oracle_metrics=S['oracle'], lm_metrics=lm_m,
               stage_one_s=S['info']['stage_one_s'], lm_s=round(res.history[-1]['time'], 1), eval_s=round(time.perf_counter() - t1, 1),
               seconds=round(time.perf_counter() - t0, 1))
    print(f"{task} {name:18s} {m} prior {rec['prior']:.4f} oracle {rec['oracle']:.4f} lm {rec['lm']:.4f}  closed {_pct(rec['closed'])}  "
          f"acc train {rec['lm_accuracy']:.3f} test-tf {tf_acc:.3f} greedy {rec['greedy_acc']:.3f} (prior {rec['prior_acc']:.3f}, "
          f"non-prior {rec['acc_non_prior'] or 0:.3f})  {rec['seconds']:.0f} s", flush=True)
    return rec

def _pct(x) -> str: return '-' if x is None else f'{x:+.1%}'

def save(path: Path, recs: list, quick: bool, probes: dict | None = None):
    "Merge `recs` into the result file at `path` (replacing the same task and variant)."
    old = json.loads(path.read_text()) if path.exists() else {}
    keep = [r for r in old.get('variants', []) if (r['task'], r['variant']) not in {(x['task'], x['variant']) for x in recs}]
    cfgs = {t: {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(base_config(t, quick)).items()}
            for t in sorted({r['task'] for r in keep + recs})}
    res = dict(benchmark='bench/uvim_stage2.py', quick=quick, hardware=hardware(), threads=torch.get_num_threads(),
               date=datetime.date.today().isoformat(), base=cfgs,
               closed='(metric(lm) - metric(prior)) / (metric(oracle) - metric(prior)): the share of the prior-to-oracle distance UViM closes',
               probes=old.get('probes', {}) | (probes or {}), variants=keep + recs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + '\n')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--task', default='depth', help='depth or panoptic (comma-separated for both)')
    ap.add_argument('--variants', default=None, help=f'comma-separated names of {list(VARIANTS)} (default: all)')
    ap.add_argument('--quick', action='store_true', help='smoke sizes: a tiny version in well under a minute')
    ap.add_argument('--probe', action='store_true', help='only the probe of the cpu-preset stage I (which tokens carry the distance)')
    ap.add_argument('--cache', default='/tmp/uvim_stage2', help='folder caching the stage-I models')
    ap.add_argument('--out', default=None, help=f'result file (default: {RESULTS}; with --quick, CACHE/quick.json)')
    a = ap.parse_args(argv)
    table = QUICK_VARIANTS if a.quick else VARIANTS
    names = a.variants.split(',') if a.variants else list(table)
    try:
        if bad := [n for n in names if n not in table]: raise ValueError(f"unknown variant {bad[0]!r}; choose from {list(table)}")
        tasks = a.task.split(',')
        for t in tasks: get_task(t)
    except ValueError as e:
        print(f"uvim_stage2: error: {e}", file=sys.stderr); sys.exit(2)
    cache = Path(a.cache) / ('quick' if a.quick else 'cpu')
    out = Path(a.out) if a.out else (Path(a.cache) / 'quick.json' if a.quick else RESULTS)
    print(f"{hardware()}, {torch.get_num_threads()} threads", flush=True)
    for t in tasks:
        if a.probe or a.quick: save(out, [], a.quick, {t: probe(t, a.quick, cache)})
        if a.probe: continue
        memo, recs = {}, []
        for n in names:
            recs.append(run_variant(t, n, table[n], a.quick, cache, memo))
            save(out, recs, a.quick)

if __name__ == '__main__':
    main()
