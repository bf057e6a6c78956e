"""Build the documentation site into `_docs/` without Quarto: `python tools/build_docs.py [--out DIR] [--serve [--port N]]`.

nbdev renders fsq_lit's site with Quarto (`nbdev_docs`, configured by `_quarto.yml` and `nbs/sidebar.yml`), but
Quarto cannot be installed on every machine. This script builds the same site from the registries' tools:

1. nbdev processes the notebooks exactly as `nbdev_docs` would before calling Quarto (`_proc/`): `show_doc`
   cells rendered (including the automatic ones for exported code), `#| hide` / exported cells removed, and
   the title and description turned into front matter.
2. Each processed notebook becomes a Markdown page named like its Quarto page (`03_fsq.ipynb` → `fsq.md`,
   page `fsq.html`): prose, code, stored outputs (text, tables, figures saved as PNG files); directives
   (`#| ...`) are dropped, `echo: false` hides a cell's source, links between notebooks and to the site's
   own symbols point at the local pages.
3. An API reference page (`api.html`) renders `show_doc` for every name each module exports.
4. Material for MkDocs builds the site (navigation in the sidebar's order, offline search), in strict mode so
   a broken link between pages fails the build.
5. Maths (`$...$`, `$$...$$`, and exponents such as `2^16` in a chapter's description) is converted to MathML with
   latex2mathml, which browsers render natively: the site needs no JavaScript maths library and no network. The
   build fails if LaTeX or a `^` survives in a page's lead paragraph.
6. What a clean build must not have is reported, one line each starting `docs-build problem:` (on stderr), naming the
   notebook and cell or the page: a cell that nbdev's docs processor executes because it mixes imports with other
   code, a link to an anchor that does not exist, an entry listed twice in a page's contents. `--strict` makes any of
   them an error (exit 1); tests/test_docs.py checks the list.

The site's search loads its index with a request, which browsers refuse for pages opened as files: `--serve` builds,
then serves the site on localhost (Python's `http.server`) and prints the address to open. The script works from
any directory.
"""
import argparse, base64, collections, functools, html, http.server, importlib, inspect, json, os, re, shutil, subprocess, sys, warnings
from pathlib import Path

import yaml
from fastcore.xtras import working_directory

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
DIRECTIVE = re.compile(r'^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
IMAGE_TYPES = ('.png', '.jpg', '.jpeg', '.gif', '.svg')
CSS = """
.nb-output { background: var(--md-code-bg-color); border-left: 3px solid var(--md-accent-fg-color--transparent, #ccc);
             padding: .5em .8em; overflow-x: auto; font-size: .75rem; }
.nb-output-html { overflow-x: auto; }
.md-typeset img.nb-figure { display: block; max-width: 100%; margin: .5em 0; }
.md-typeset .lead { font-size: 1.05rem; color: var(--md-default-fg-color--light); }
.md-typeset math[display="block"] { margin: .8em 0; padding: .3em 0; overflow-x: auto; overflow-y: hidden; }
/* show_doc's signatures (the code block under an entry's heading) wrap instead of running past the right edge */
.md-typeset :is(h2, h3, h4) + .highlight pre > code { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def notebooks():
    "The notebooks in the order of nbdev's sidebar (nbs/sidebar.yml), which both sites use."
    side = yaml.safe_load((NBS / 'sidebar.yml').read_text())
    return [c if isinstance(c, str) else c['href'] for c in side['website']['sidebar']['contents']]


def process_notebooks() -> tuple:
    """nbdev's own processing for Quarto (`nbdev_proc_nbs` without the Quarto check): writes `_proc/`. Returns it and the
    warnings raised while nbdev processed each notebook, as problems naming the notebook (and the cell, where nbdev quotes it)."""
    import nbdev.serve_drv as drv, nbdev.processors as procs
    from nbdev.serve import proc_nbs
    problems, process_one, def_names = [], drv.main, procs._def_names
    def recorded(o):          # nbdev processes one notebook per call of serve_drv.main: (source, destination, filters)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            process_one(o)
        problems.extend(nbdev_problem(Path(o[0]).name, str(w.message)) for w in caught)
    drv.main, procs._def_names = recorded, undocumented_names
    try: proc_nbs(path=str(NBS), force=True, n_workers=0)
    finally: drv.main, procs._def_names = process_one, def_names
    return ROOT / '_proc', problems


def undocumented_names(cell, shown) -> list:
    """nbdev's `_def_names` (the exported names that get an automatic `show_doc`), also leaving out a method patched
    onto a class that the chapter documents itself: nbdev 2.4 compares its bare name (`preset`) with the documented one
    (`Study.preset`) and so lists such a method twice in the page's contents."""
    from nbdev.processors import _def_types, showdoc_nm
    from fastcore.basics import concat
    tail = {s.split('.')[-1] for s in shown}
    return [showdoc_nm(o) for o in concat(cell.parsed_() or []) if isinstance(o, _def_types) and o.name not in tail
            and showdoc_nm(o) not in shown and (o.name[0] != '_' or o.name[:2] == '__')]


def nbdev_problem(nb: str, message: str) -> str:
    "A warning raised while nbdev processed notebook `nb` as one line; nbdev quotes the cell it warns about between `---` lines."
    head, m = message.split('\n')[0].strip(), re.search(r'\n---\n(.*)\n---', message, re.S)
    if not m: return f"{nb}: warning while nbdev ran its cells: {head}"
    first = next((l for l in m.group(1).splitlines() if l.strip() and not l.startswith('#|')), '')
    cells = json.loads((NBS / nb).read_text())['cells']
    i = next((i for i, c in enumerate(cells) if first and first in ''.join(c['source'])), '?')
    return f"{nb} cell {i}: {head} (nbdev's docs processor runs such a cell: move its imports to the hidden import cell)"


def front_matter(nb) -> dict:
    for c in nb['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'raw' and s.startswith('---'): return yaml.safe_load(s.strip().strip('-')) or {}
    return {}


def chapter_number(nb: str) -> str:
    "A notebook's chapter number, letter included, as the README's table writes it: 02a_kernel.ipynb → '02a'."
    return nb.split('_')[0]


def chapters() -> dict:
    """Notebook → (Markdown page, navigation label) in the sidebar's order, read from the processed notebooks' front
    matter; the page follows nbdev's `output-file` (03_fsq.ipynb → fsq.md, label '03 · The FSQ module'; 02a_kernel.ipynb →
    '02a · A Triton kernel')."""
    out = {}
    for nb in notebooks():
        fm = front_matter(json.loads((ROOT / '_proc' / nb).read_text()))
        page = Path(fm.get('output-file', Path(nb).stem + '.html')).with_suffix('.md').name
        out[nb] = (page, 'Tutorial' if nb == 'index.ipynb' else f"{chapter_number(nb)} · {fm.get('title', nb)}")
    return out


CODE_LINK = re.compile(r'\[(`[^\]`]+`)\]\((?:https?://[^)\s]+|[\w.-]+\.(?:ipynb|html|md)(?:#[^)\s]*)?)\)')   # [`name`](url)


def fix_links(md: str, pages: dict, site_url: str) -> str:
    "Links to notebooks and to the published site's pages point at this site's Markdown pages; in code blocks (show_doc's signatures) a link is only its text."
    md = re.sub(r'^```python\n.*?^```$', lambda m: CODE_LINK.sub(r'\1', m.group(0)), md, flags=re.S | re.M)
    md = re.sub(r'\]\(([\w.-]+\.ipynb)(#[^)]*)?\)', lambda m: f"]({pages.get(m.group(1), m.group(1))}{m.group(2) or ''})", md)
    if site_url:
        md = re.sub(re.escape(site_url.rstrip('/')) + r'/([\w.-]+)\.html', r'\1.md', md)
    # nbdev's anchors keep the dot of `Class.method` (Quarto's ids do); this site's headings drop it (`#studyrun`)
    return re.sub(r'(\]\([\w.-]+\.md#)([\w.-]+)\)', lambda m: f"{m.group(1)}{m.group(2).replace('.', '')})", md)


def fence(text: str, lang: str = '') -> str:
    ticks = '`' * max(3, 1 + max((len(t) for t in re.findall(r'`+', text)), default=0))
    return f"{ticks}{lang}\n{text}\n{ticks}"


def clean_stream(text: str) -> str:
    "Strip ANSI colours and keep what a terminal would show of lines rewritten with carriage returns."
    return '\n'.join(line.split('\r')[-1] for line in ANSI.sub('', text).split('\n'))


def pre(text: str) -> str:
    return f'<pre class="nb-output"><code>{html.escape(text.rstrip())}</code></pre>'


def render_outputs(outputs, stem: str, assets: Path, counter: list) -> list:
    "A code cell's stored outputs as Markdown/HTML blocks; figures are written to `assets/` (counter numbers them per page)."
    parts, stream = [], []
    def flush():
        if stream: parts.append(pre(''.join(stream))); stream.clear()
    for o in outputs:
        kind = o['output_type']
        if kind == 'stream':
            stream.append(clean_stream(''.join(o['text']))); continue
        flush()
        if kind == 'error':
            parts.append(pre(clean_stream('\n'.join(o['traceback'])))); continue
        data = o.get('data', {})
        if 'text/markdown' in data: parts.append(''.join(data['text/markdown']))
        elif 'image/png' in data or 'image/svg+xml' in data:
            counter[0] += 1
            if 'image/png' in data:
                name = f"{stem}_{counter[0]}.png"; (assets / name).write_bytes(base64.b64decode(''.join(data['image/png'])))
            else:
                name = f"{stem}_{counter[0]}.svg"; (assets / name).write_text(''.join(data['image/svg+xml']))
            parts.append(f'<img class="nb-figure" src="assets/{name}" alt="figure {counter[0]} of {stem}">')
        elif 'text/html' in data: parts.append(f'<div class="nb-output-html" markdown="0">\n{"".join(data["text/html"])}\n</div>')
        elif 'text/plain' in data: parts.append(pre(clean_stream(''.join(data['text/plain']))))
    flush()
    return parts


EXPONENT = re.compile(r'(?<![\w$\\^])(\w+)\^(?:\{([^{}$]*)\}|(\w+))(?![\w^])')
MATH_OR_CODE = re.compile(r'(\$[^$]+\$|`[^`]*`)')


def exponents_as_math(text: str) -> str:
    "Plain-text exponents (`2^16`, `2^{16}`) outside maths and code become inline maths: '2^16' → '$2^{16}$'."
    tex = lambda m: f"${m.group(1)}^{{{m.group(2) or m.group(3)}}}$"
    return ''.join(part if i % 2 else EXPONENT.sub(tex, part) for i, part in enumerate(MATH_OR_CODE.split(text)))


def notebook_page(nb_path: Path, pages: dict, site_url: str, assets: Path) -> str:
    "One processed notebook as a Markdown page."
    nb = json.loads(nb_path.read_text())
    fm = front_matter(nb)
    stem = Path(pages[nb_path.name]).stem
    parts = [f"# {fm.get('title', stem)}"]
    if fm.get('description'): parts.append(f'<p class="lead" markdown="1">{exponents_as_math(fm["description"])}</p>')
    counter = [0]
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            if src.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            parts.append(src)
        elif c['cell_type'] == 'code':
            lines = src.split('\n')
            opts = {m.group(1): m.group(2) for m in map(DIRECTIVE.match, lines) if m}
            code = '\n'.join(l for l in lines if not DIRECTIVE.match(l)).strip('\n')
            if code and opts.get('echo', 'true').lower() != 'false': parts.append(fence(code, 'python'))
            parts += render_outputs(c.get('outputs', []), stem, assets, counter)
    return fix_links('\n\n'.join(parts) + '\n', pages, site_url)


def api_page(chs: dict, site_url: str) -> str:
    "Every exported name of every module, rendered by nbdev's `show_doc`, in chapter order."
    from nbdev.showdoc import show_doc
    from nbdev.doclinks import NbdevLookup
    linkify = NbdevLookup().linkify
    parts = ["# API reference",
             "Every name `fsq_lit` exports, module by module, in the order of the chapters that define and explain them. "
             "`from fsq_lit import FSQ, levels_for` imports the quantizer and its levels table from the package top level."]
    mods = {nb: m.group(1) for nb in chs if (m := re.search(r'#\|\s*default_exp\s+([\w.]+)', (NBS / nb).read_text()))
            and m.group(1) != '__init__'}
    names = collections.Counter(n for mod in mods.values() for n in getattr(importlib.import_module(f"fsq_lit.{mod}"), '__all__', []))
    for nb, (page, label) in chs.items():
        if nb not in mods: continue
        modname = mods[nb]
        mod = importlib.import_module(f"fsq_lit.{modname}")
        parts.append(f"## fsq_lit.{modname}\n\nExplained in chapter [{label}]({page}).")
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name)
            if not callable(obj): continue          # constants (PAPER_LEVELS, PRESETS, ...) are described in their chapters
            members = [obj] + ([v for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith('_') and v.__doc__]
                               if inspect.isclass(obj) else [])
            for o in members:     # a method under its class's name (a decorator such as `torch.no_grad` hides it from show_doc)
                if type(o).__name__ == 'CustomOpDef': md = show_doc(o._init_fn, name=name)._repr_markdown_()   # an operator: its function
                else: md = show_doc(o, name=None if o is obj else f"{obj.__name__}.{o.__name__}")._repr_markdown_()
                try: line = inspect.getsourcelines(o)[1]
                except (OSError, TypeError): line = None
                md = md.replace('#LNone', f'#L{line}' if line else '')
                if names[name] > 1 and o is obj:     # a name several modules export (`main`): its heading names the module
                    md = re.sub(rf'^(#+) {re.escape(name)}$', rf'\1 {modname}.{name}', md, count=1, flags=re.M)
                parts.append(linkify(md))
    return fix_links('\n\n'.join(parts) + '\n', {nb: page for nb, (page, _) in chs.items()}, site_url)


def mkdocs_config(src: Path, out: Path, nav: list, site: dict) -> dict:
    return {
        'site_name': site.get('title', 'fsq_lit'), 'site_description': site.get('description', ''),
        'repo_url': site.get('repo-url'), 'edit_uri': '', 'docs_dir': str(src), 'site_dir': str(out),
        'use_directory_urls': False, 'strict': True, 'nav': nav,
        'theme': {'name': 'material', 'font': False, 'features': ['navigation.top', 'navigation.footer', 'toc.follow',
                                                                  'search.highlight', 'content.code.copy'],
                  'palette': {'primary': 'indigo', 'accent': 'indigo'}},
        'plugins': ['search'],
        'extra_css': ['assets/extra.css'],
        'markdown_extensions': ['tables', 'attr_list', 'md_in_html', 'admonition', 'footnotes', {'toc': {'permalink': True}},
                                {'pymdownx.arithmatex': {'generic': True}}, 'pymdownx.superfences',
                                {'pymdownx.highlight': {'use_pygments': True}}],
        'validation': {'links': {'not_found': 'warn', 'anchors': 'info', 'unrecognized_links': 'warn'}},
    }


MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)     # what pymdownx.arithmatex leaves
NAV_TEXT = re.compile(r'(<span class="md-ellipsis">)(.*?)(</span>)', re.S)     # table-of-contents entries (plain text)


# latex2mathml leaves these as text after a size command (`\Big\lfloor`); their Unicode characters work everywhere
DELIMITERS = {'\\lfloor': '⌊', '\\rfloor': '⌋', '\\lceil': '⌈', '\\rceil': '⌉', '\\langle': '⟨', '\\rangle': '⟩',
              '\\arg': '\\operatorname{arg}'}   # and \arg, which it does not know
LEFTOVER = re.compile(r'>[^<]*\\[A-Za-z]+[^<]*<')


def tex_to_mathml(tex: str, block: bool = False) -> str:
    "LaTeX (without delimiters) as an inline or display MathML element; a command it cannot convert is an error."
    from latex2mathml.converter import convert
    for cmd, char in DELIMITERS.items(): tex = re.sub(re.escape(cmd) + r'(?![A-Za-z])', lambda _: char, tex)
    out = convert(tex, display='block' if block else 'inline')
    if LEFTOVER.search(out): raise ValueError(f"latex2mathml left LaTeX unconverted in {tex!r}: {LEFTOVER.search(out).group(0)}")
    return out


PLAIN_MATH = re.compile(r'\\\((.+?)\\\)|\\\[(.+?)\\\]', re.S)
CODE_SPANS = re.compile(r'(<pre>.*?</pre>|<code>.*?</code>)', re.S)


def plain_mathml(text: str) -> str:
    """`\\(...\\)` / `\\[...\\]` left as plain text (outside code), where tags were stripped: table-of-contents entries
    and the search index; converted to inline MathML, so they show formulas."""
    inline = lambda m: tex_to_mathml(html.unescape(m.group(1) or m.group(2)))
    return ''.join(part if i % 2 else PLAIN_MATH.sub(inline, part) for i, part in enumerate(CODE_SPANS.split(text)))


def arithmatex_mathml(m) -> str:
    tex = html.unescape(m.group(2)).strip()          # \(...\) inline or \[...\] display
    return tex_to_mathml(tex[2:-2], block=tex.startswith('\\['))


def mathml(site: Path) -> int:
    """Replace arithmatex's LaTeX by MathML in every page, in headings' table-of-contents entries and in the search
    index; returns the number of formulas on the pages."""
    n = 0
    for p in site.rglob('*.html'):
        text = p.read_text()
        new, k = MATH.subn(arithmatex_mathml, text)
        new = NAV_TEXT.sub(lambda m: m.group(1) + plain_mathml(m.group(2)) + m.group(3), new)
        if new != text: p.write_text(new); n += k
    index = site / 'search' / 'search_index.json'
    if index.is_file():
        data = json.loads(index.read_text())
        for doc in data['docs']: doc['title'], doc['text'] = plain_mathml(doc['title']), plain_mathml(doc['text'])
        index.write_text(json.dumps(data, ensure_ascii=False))
    return n


LEAD = re.compile(r'<p class="lead">(.*?)</p>', re.S)
RAW_MATH = re.compile(r'\^|\\[A-Za-z]+|\$')


def check_leads(site: Path):
    "Fail if a page's lead paragraph (the chapter's description) shows LaTeX, a `$` or a `^` outside MathML and code."
    for p in sorted(site.glob('*.html')):
        for lead in LEAD.findall(p.read_text()):
            text = re.sub(r'<(math|code)\b.*?</\1>', ' ', lead, flags=re.S)
            if m := RAW_MATH.search(html.unescape(re.sub(r'<[^>]+>', '', text))):
                raise ValueError(f"{p.name}: raw maths {m.group(0)!r} in the lead paragraph {lead!r}: write it as $...$")


MKDOCS_ANCHOR = re.compile(r"Doc file '([^']+)' contains a link '([^']+)', but (.*?)\.?$")


def mkdocs_problems(log: str) -> list:
    "The links to missing anchors that mkdocs logged (at level INFO, which `-q` hides), one line each."
    return [f"{m.group(1)}: link {m.group(2)}: {m.group(3)}" for m in map(MKDOCS_ANCHOR.search, log.splitlines()) if m]


HEADING = re.compile(r'<h([2-6]) id="[^"]+"[^>]*>(.*?)</h\1>', re.S)


def duplicate_contents(site: Path) -> list:
    "Headings a page has more than once, each listed twice in its contents (a `show_doc` beside nbdev's own for an exported name), one line each."
    out = []
    for p in sorted(site.glob('*.html')):
        article = p.read_text().split('<article', 1)[-1].split('</article>', 1)[0]
        text = lambda h: html.unescape(re.sub(r'<[^>]+>', '', h)).replace('¶', '').strip()
        counts = collections.Counter(text(h) for _, h in HEADING.findall(article))
        out += [f"{p.name}: contents list {entry!r} {n} times" for entry, n in counts.items() if n > 1]
    return out


def build(out: Path = ROOT / '_docs', quiet: bool = False, strict: bool = False) -> tuple:
    """Build the site into `out` (from any working directory: nbdev reads its settings from the repository root).
    Returns the site's folder and its problems (printed, one line each, on stderr); `strict`: a ValueError if any."""
    out = Path(out).resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / 'index.html').is_file():
        raise ValueError(f"{out} is not empty and holds no site: refusing to replace it (choose an empty or new --out)")
    with working_directory(ROOT): site, problems = _build(out, quiet)
    for p in problems: print(f"docs-build problem: {p}", file=sys.stderr, flush=True)
    if strict and problems: raise ValueError(f"the docs build has {len(problems)} problems (listed above)")
    return site, problems


def _build(out: Path, quiet: bool) -> tuple:
    proc, problems = process_notebooks()
    chs = chapters()
    pages = {nb: page for nb, (page, _) in chs.items()}
    site = yaml.safe_load((NBS / 'nbdev.yml').read_text()).get('website', {})
    site_url = site.get('site-url', '')
    work = ROOT / '_docs_src'          # mkdocs.yml and docs/ (the Markdown pages), rebuilt every time
    shutil.rmtree(work, ignore_errors=True)
    src = work / 'docs'
    assets = src / 'assets'; assets.mkdir(parents=True)
    (assets / 'extra.css').write_text(CSS)
    for f in NBS.rglob('*'):     # images the notebooks link to (nbs/images, nbs/results/...)
        rel = f.relative_to(NBS)
        if f.suffix.lower() in IMAGE_TYPES and not any(p.startswith(('_', '.')) for p in rel.parts):
            (src / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, src / rel)
    nav = []
    for nb, (page, label) in chs.items():
        (src / page).write_text(notebook_page(proc / nb, pages, site_url, assets))
        nav.append({label: page})
    (src / 'api.md').write_text(api_page(chs, site_url))
    nav.append({'API reference': 'api.md'})
    cfg = work / 'mkdocs.yml'
    cfg.write_text(yaml.safe_dump(mkdocs_config(src, out, nav, site), sort_keys=False, allow_unicode=True))
    shutil.rmtree(out, ignore_errors=True)
    res = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-f', str(cfg)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    if res.returncode: raise RuntimeError(f"mkdocs build failed:\n{res.stdout}{res.stderr}")
    if not quiet: print(res.stdout + res.stderr, end='')
    problems += mkdocs_problems(res.stdout + res.stderr)
    n = mathml(out)
    check_leads(out)
    problems += duplicate_contents(out)
    if not quiet: print(f"wrote {out} ({len(nav)} pages, {n} formulas as MathML)")
    return out, problems


def serve(site: Path, port: int = 8000, host: str = '127.0.0.1') -> http.server.ThreadingHTTPServer:
    "An HTTP server for `site` (not yet serving: call `serve_forever`); port 0 picks a free one."
    quiet = type('Quiet', (http.server.SimpleHTTPRequestHandler,), {'log_message': lambda *a: None})
    return http.server.ThreadingHTTPServer((host, port), functools.partial(quiet, directory=str(site)))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_docs'), help='site directory (default: _docs)')
    ap.add_argument('--quiet', action='store_true')
    ap.add_argument('--strict', action='store_true', help='fail (exit 1) if the build reports a problem')
    ap.add_argument('--serve', action='store_true', help='then serve the site on localhost (search needs a server)')
    ap.add_argument('--port', type=int, default=8000, help='port for --serve (default 8000; 0 picks a free one)')
    a = ap.parse_args()
    try: site, _ = build(Path(a.out), a.quiet, a.strict)
    except ValueError as e: sys.exit(f"build_docs.py: {e}")
    if a.serve:
        srv = serve(site, a.port)
        print(f"serving {site} at http://{srv.server_address[0]}:{srv.server_address[1]}/index.html (Ctrl-C stops)", flush=True)
        try: srv.serve_forever()
        except KeyboardInterrupt: pass
