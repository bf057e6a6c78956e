"""What the one-factor-at-a-time benches share (`maskgit_stage2.py`, `uvim_lm.py`): their command line and their
results file, one row per variant, merged by name and rewritten after each variant with the machine and the date."""
import argparse, datetime
from pathlib import Path
import torch
from fsq_lit.train import hardware
from fsq_lit.runs import read_json, write_json


def parser(doc: str, variants: dict, cache: str, results: Path) -> argparse.ArgumentParser:
    "--variants (names of `variants`), --quick (smoke sizes), --cache (the variants' studies) and --out (the results file)."
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument('--variants', default=','.join(variants), help=f"comma-separated names of: {', '.join(variants)}")
    ap.add_argument('--quick', action='store_true', help='smoke sizes: checks the script, measures nothing')
    ap.add_argument('--cache', default=cache, help="folder of the variants' studies")
    ap.add_argument('--out', default=str(results))
    return ap


def run(ap: argparse.ArgumentParser, args, variants: dict, bench: str, measure, line, **about):
    """Each variant named by --variants: `measure(name, change, cache)` gives its row, `line(row)` what to print; the rows
    merge into --out by variant (in `variants`' order) with `about`, the machine and the date, written after every variant."""
    names = [v for v in args.variants.split(',') if v]
    if bad := [v for v in names if v not in variants]: ap.error(f"unknown variant {bad[0]!r}; choose from {', '.join(variants)}")
    out, cache = Path(args.out), Path(args.cache) / ('quick' if args.quick else 'cpu')
    doc = read_json(out, {})   # a damaged file: one error naming it
    doc.update(benchmark=bench, quick=args.quick, hardware=hardware(torch.device('cpu')), threads=torch.get_num_threads(),
               date=datetime.date.today().isoformat(), **about)
    rows = {r['variant']: r for r in doc.get('variants', [])}
    for n in names:
        rows[n] = measure(n, variants[n], cache)
        print(n, line(rows[n]), flush=True)
        doc['variants'] = [rows[v] for v in variants if v in rows]
        write_json(out, doc)       # atomically: a killed bench keeps the variants it finished
