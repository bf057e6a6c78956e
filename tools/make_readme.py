"""Write README.md from nbs/index.ipynb (nbdev's own `nbdev_readme` needs Quarto, which these machines lack).

Markdown cells are copied (links to chapters are made relative to the repository root), code cells become
python blocks with their stored text outputs, and cells marked `#| hide` or exported with `#| export` are left out.

    python tools/make_readme.py           # write README.md
    python tools/make_readme.py --check   # exit 1 if README.md is out of date
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r'^#\|\s*(hide|export|exporti|default_exp)\b', re.M)


def cell_text(cell):
    return ''.join(cell['source'])


def outputs_text(cell):
    out = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream': out.append(''.join(o['text']))
        elif o['output_type'] in ('execute_result', 'display_data') and 'text/plain' in o.get('data', {}):
            if 'image/png' not in o['data']: out.append(''.join(o['data']['text/plain']) + '\n')
    return ''.join(out).rstrip('\n')


def render(nb_path=ROOT / 'nbs' / 'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb['cells']:
        src = cell_text(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(re.sub(r'\]\((\d\d_[^)]+\.ipynb)\)', r'](nbs/\1)', src))
        elif cell['cell_type'] == 'code' and not HIDDEN.search(src):
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')
            block = f"```python\n{code}\n```"
            out = outputs_text(cell)
            if out: block += f"\n\n```\n{out}\n```"
            parts.append(block)
    return '\n\n'.join(parts).rstrip() + '\n'


if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text: sys.exit('README.md is out of date: run python tools/make_readme.py')
    else:
        readme.write_text(text)
