"""Write README.md from nbs/index.ipynb (nbdev's own `nbdev_readme` needs Quarto, which these machines lack).

Markdown cells are copied (relative links and images are made relative to the repository root), code cells become
python blocks with their stored text outputs (progress bars as a terminal leaves them: their last state), Markdown outputs (`IPython.display.Markdown`) are copied as Markdown,
stored figures are written to `nbs/images/readme_N.png` and shown, cells marked `#| hide` or exported with
`#| export` are left out, and cells marked `#| echo: false` show only their outputs. Works from any directory.

    python tools/make_readme.py           # write README.md
    python tools/make_readme.py --check   # exit 1 if README.md is out of date
"""
import base64, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r'^#\|\s*(hide|export|exporti|default_exp)\b', re.M)
ECHO_OFF = re.compile(r'^#\|\s*echo:\s*false\b', re.M)
RELATIVE = re.compile(r'\]\((?!https?://|mailto:|#|/)([^)\s]+)\)')      # ](00_scalar.ipynb), ](results/x.png)
FIGURES = 'nbs/images/readme_{}.png'
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def terminal_text(text: str) -> str:
    "What a terminal shows of `text`: ANSI colours dropped, and of a line rewritten with carriage returns (a progress bar) its last state."
    return '\n'.join(line.split('\r')[-1] for line in ANSI.sub('', text).split('\n'))


def cell_text(cell):
    return ''.join(cell['source'])


def outputs_text(cell):
    out = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream': out.append(''.join(o['text']))
        elif o['output_type'] in ('execute_result', 'display_data') and 'text/plain' in o.get('data', {}):
            if not {'image/png', 'text/markdown'} & set(o['data']): out.append(''.join(o['data']['text/plain']) + '\n')
    return terminal_text(''.join(out)).rstrip('\n')


def render(nb_path=ROOT / 'nbs' / 'index.ipynb'):
    "README text and the figures it shows ({path: png bytes})."
    nb = json.loads(Path(nb_path).read_text())
    parts, figures = [], {}
    for cell in nb['cells']:
        src = cell_text(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(RELATIVE.sub(r'](nbs/\1)', src))
        elif cell['cell_type'] == 'code' and not HIDDEN.search(src):
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')
            block = '' if ECHO_OFF.search(src) else f"```python\n{code}\n```"
            out = outputs_text(cell)
            if out: block += f"\n\n```\n{out}\n```"
            for o in cell.get('outputs', []):
                if 'text/markdown' in o.get('data', {}): block += '\n\n' + RELATIVE.sub(r'](nbs/\1)', ''.join(o['data']['text/markdown']).strip('\n'))
            for o in cell.get('outputs', []):
                if 'image/png' in o.get('data', {}):
                    path = FIGURES.format(len(figures) + 1)
                    figures[path] = base64.b64decode(''.join(o['data']['image/png']))
                    block += f"\n\n![figure {len(figures)}]({path})"
            parts.append(block.strip('\n'))
    return '\n\n'.join(parts).rstrip() + '\n', figures


if __name__ == '__main__':
    (text, figures), readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        stale = [p for p, png in figures.items() if not (ROOT / p).is_file() or (ROOT / p).read_bytes() != png]
        if readme.read_text() != text or stale: sys.exit('README.md is out of date: run python tools/make_readme.py')
    else:
        readme.write_text(text)
        for p, png in figures.items(): (ROOT / p).write_bytes(png)
