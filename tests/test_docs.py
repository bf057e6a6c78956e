"""The documentation site: `python tools/build_docs.py` builds it, and headless Chromium reads it.

The static checks run everywhere. The browser checks need Debian's `chromium` and `chromium-driver`
(`.ci/run` installs them); without them they are skipped, unless FSQ_LIT_BROWSER_TESTS=require (set by CI), in
which case a missing browser is a failure. Screenshots go to `_screenshots/` (or $FSQ_LIT_SCREENSHOTS).
"""
import html, json, os, re, shutil, subprocess, sys, time, urllib.request, warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import build_docs  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which('chromium') or shutil.which('chromium-browser'), shutil.which('chromedriver')
DIRECTIVE = re.compile(r'#\|\s*[a-z][\w-]*')          # `#| export`, `#| hide`, `#| echo: false` (not a progress bar's `#|`)
SHOTS = Path(os.environ.get('FSQ_LIT_SCREENSHOTS', ROOT / '_screenshots'))


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """The site as a reader gets it: `build_docs.py --serve --port 0`, started from a directory other than the
    repository's root. Yields the site's directory and the address it is served at."""
    out, elsewhere = tmp_path_factory.mktemp('site'), tmp_path_factory.mktemp('elsewhere')
    with open(elsewhere / 'stderr.txt', 'w') as err:    # the build's problems and warnings: test_build_is_clean
        proc = subprocess.Popen([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--out', str(out), '--quiet',
                                 '--serve', '--port', '0'], cwd=elsewhere, stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline()             # printed once the site is built (empty if the build failed)
    m = re.search(r'(http://127\.0\.0\.1:\d+)/index\.html', line)
    if not m:
        proc.kill(); proc.wait()
        pytest.fail(f"build_docs.py --serve printed no address ({line!r}): {(elsewhere / 'stderr.txt').read_text()[-3000:]}")
    yield out, m.group(1), elsewhere / 'stderr.txt'
    proc.terminate(); proc.wait(timeout=30)


@pytest.fixture(scope='module')
def site(served): return served[0]


@pytest.fixture(scope='module')
def server(served): return served[1]


@pytest.fixture(scope='module')
def pages(site):
    return {nb: Path(md).with_suffix('.html').name for nb, (md, _) in build_docs.chapters().items()}


def visible_text(page: Path) -> str:
    "The text a reader sees: tags, scripts and styles removed."
    return visible_text_of(page.read_text())


def visible_text_of(s: str) -> str:
    s = re.sub(r'<math\b.*?</math>', ' ', s, flags=re.S)       # MathML's own characters (a superscript is not a '^')
    s = re.sub(r'<(script|style)\b.*?</\1>', ' ', s, flags=re.S)
    return html.unescape(re.sub(r'<[^>]+>', ' ', s))


# ---- the site as files -------------------------------------------------------------------------------------------
def test_every_chapter_has_a_page(site, pages):
    nbs = sorted(p.name for p in (ROOT / 'nbs').glob('*.ipynb'))
    assert sorted(pages) == nbs                               # the sidebar lists every notebook
    assert pages['index.ipynb'] == 'index.html' and pages['03_fsq.ipynb'] == 'fsq.html'
    for page in list(pages.values()) + ['api.html', 'search/search_index.json']:
        assert (site / page).is_file(), page


def test_no_directives_or_raw_latex(site, pages):
    for page in list(pages.values()) + ['api.html']:
        text = visible_text(site / page)
        assert not DIRECTIVE.search(text), f"a raw nbdev directive shows on {page}: {DIRECTIVE.search(text).group(0)}"
        for raw in ('$$', '\\frac', '\\lfloor', '\\(', '\\['):
            assert raw not in text, f"unconverted LaTeX {raw!r} on {page}"
    assert (site / 'scalar.html').read_text().count('<math') > 20


def test_outputs_and_figures_are_stored(site, pages):
    fsq = (site / 'fsq.html').read_text()
    assert 'id="fsq"' in fsq and 'vectors hit' in fsq and 'speed-up' in fsq   # show_doc entry and stored text outputs
    assert 'codebook usage' in (site / 'runs.html').read_text()                # fsq-demo's output, in chapter 04a
    for page in pages.values():
        for src in re.findall(r'<img[^>]+src="([^"]+)"', (site / page).read_text()):
            assert (site / src).is_file(), f"{page} links a missing image {src}"
    n_figs = sum(len(re.findall(r'class="nb-figure"', (site / p).read_text())) for p in pages.values())
    assert n_figs >= 15
    assert 'results/compare-gpu/recon.png' in (site / 'compare.html').read_text()


def test_api_reference(site):
    api = (site / 'api.html').read_text()
    for name in ('fsq', 'levels_for', 'quantize_ste', 'tokenizer', 'vq', 'study', 'studyrun', 'fsqindices_to_codes'):
        assert f'id="{name}"' in api, name
    assert 'blob/main/fsq_lit/fsq.py#L' in api and '#LNone' not in api


def test_links_between_pages_resolve(site, pages):
    for page in list(pages.values()) + ['api.html']:
        for href in re.findall(r'href="([^"#:?]+\.html)(?:#[^"]*)?"', (site / page).read_text()):
            assert (site / page).parent.joinpath(href).resolve().is_file(), f"{page} links a missing page {href}"
        assert '.ipynb"' not in (site / page).read_text(), f"{page} links a notebook instead of its page"


def test_quarto_configuration_is_valid():
    "nbdev_docs still works where Quarto exists: its configuration is complete and consistent."
    top, nbs_q = yaml.safe_load((ROOT / '_quarto.yml').read_text()), yaml.safe_load((ROOT / 'nbs' / '_quarto.yml').read_text())
    assert top == nbs_q and nbs_q['project']['type'] == 'website'
    assert set(nbs_q['metadata-files']) == {'nbdev.yml', 'sidebar.yml'}
    assert yaml.safe_load((ROOT / 'nbs' / 'nbdev.yml').read_text())['project']['output-dir'] == '_docs'
    flow = yaml.safe_load((ROOT / '.github' / 'workflows' / 'deploy.yaml').read_text())
    assert 'fastai/workflows/quarto-ghp' in json.dumps(flow)


def test_built_and_served_from_another_directory(served):
    "`--serve` serves the built site over HTTP (search needs it: its index is fetched), from any working directory."
    site, url, _ = served
    with urllib.request.urlopen(f"{url}/index.html", timeout=30) as r: assert 'FSQ in five minutes' in r.read().decode()
    with urllib.request.urlopen(f"{url}/search/search_index.json", timeout=30) as r: docs = json.load(r)['docs']
    assert any(d['title'] == 'The straight-through estimator' for d in docs)


def test_make_readme_from_another_directory(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_readme.py'), '--check'], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_lead_paragraphs_show_maths_not_latex(site, tmp_path):
    "A chapter's description (the page's lead) gets MathML like its body: `2^8 to 2^16` is not shown raw."
    assert build_docs.exponents_as_math('sizes 2^8 to 2^{16}; `x^2` and $a^b$') == 'sizes $2^{8}$ to $2^{16}$; `x^2` and $a^b$'
    lead = build_docs.LEAD.search((site / 'compare.html').read_text()).group(1)
    assert '<math' in lead and '^' not in visible_text_of(lead), lead
    build_docs.check_leads(site)                                       # what the build checked, on the built site
    (tmp_path / 'bad.html').write_text('<p class="lead">codebooks of 2^8 codes</p>')
    with pytest.raises(ValueError, match='bad.html'): build_docs.check_leads(tmp_path)


# What the build still reports in chapters their owners are rewriting (the file to change, its chapter): tolerated
# here and listed as a warning of this test; any other problem fails it.
PENDING = {}


def test_build_is_clean(served):
    """The build prints nothing but its problems, and reports none: no cell that nbdev's docs processor runs for mixing
    imports with other code, no link to a missing anchor, no entry twice in a page's contents (`build_docs.py` reports
    them one line each, naming the notebook and cell or the page, and fails on them with --strict)."""
    lines = [l for l in served[2].read_text().splitlines() if l.strip()]
    problems = [l.removeprefix('docs-build problem: ') for l in lines if l.startswith('docs-build problem: ')]
    assert len(problems) == len(lines), f"the build printed more than its problems: {[l for l in lines if not l.startswith('docs-build')]}"
    pending = [p for p in problems if p.split(':')[0].split(' ')[0] in PENDING]
    if pending: warnings.warn(f"{len(pending)} docs-build problems left to their chapters' owners:\n" + '\n'.join(pending))
    assert not set(problems) - set(pending), "the docs build reports:\n" + '\n'.join(sorted(set(problems) - set(pending)))


def test_build_problems_are_found(tmp_path):
    "What the build reports, on small cases: nbdev's warning located in its notebook, mkdocs' anchor messages, a heading twice."
    msg = "Found cells containing imports and other code. See FAQ.\n---\nfrom fsq_lit.fsq import FSQ\nfsq = FSQ([8, 5, 5, 5])\n---\n"
    assert build_docs.nbdev_problem('03_fsq.ipynb', msg).startswith('03_fsq.ipynb cell ')
    log = "INFO    -  Doc file 'data.md' contains a link 'data.md#_x', but there is no such anchor on this page."
    assert build_docs.mkdocs_problems(log) == ["data.md: link data.md#_x: there is no such anchor on this page"]
    (tmp_path / 'p.html').write_text('<article><h3 id="a">A.f</h3><h2 id="b">B</h2><h3 id="a_1">A.f<a>¶</a></h3></article>')
    assert build_docs.duplicate_contents(tmp_path) == ["p.html: contents list 'A.f' 2 times"]
    assert build_docs.fix_links('[`Study.run`](study.md#study.run)', {}, '') == '[`Study.run`](study.md#studyrun)'


def test_one_chapter_numbering(site):
    "The sidebar of both sites and the README's chapter table number each chapter as its file does (02a, not 02)."
    side = yaml.safe_load((ROOT / 'nbs' / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    texts = {c['href']: c['text'] for c in side if isinstance(c, dict)}
    for nb, (_, label) in build_docs.chapters().items():
        if nb == 'index.ipynb': continue
        assert label.startswith(build_docs.chapter_number(nb) + ' · ') and texts.get(nb) == label, (nb, label, texts.get(nb))
    rows = re.findall(r'^\| \[(\w+) · [^\]]+\]\(nbs/(\w+?)_[\w]+\.ipynb\)', (ROOT / 'README.md').read_text(), re.M)
    assert len(rows) == len(texts) and all(n == f for n, f in rows), rows


LOCAL_PATH = re.compile(r'site-packages|dist-packages|/home/[^/\s]+/|/Users/[^/\s]+/|/root/|' + re.escape(str(ROOT)))
WARNING = re.compile(r'\b[A-Z]\w*Warning\b')


def stored_outputs():
    "(notebook, cell index, text) of every stored output of every notebook: streams, tracebacks and text data."
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            for o in c.get('outputs', []):
                data = [v for k, v in o.get('data', {}).items() if k.startswith('text/')]
                yield nb.name, i, '\n'.join(''.join(t) for t in [o.get('text', ''), o.get('traceback', []), *data])


def test_stored_outputs_carry_no_local_path_or_warning():
    "No stored output (what the site shows) names the machine that rendered it (its installation, home or checkout) or carries a warning."
    bad = [f"{nb} cell {i}: {m.group(0)!r} in {text[max(0, m.start() - 60):m.end() + 60]!r}"
           for nb, i, text in stored_outputs() for rx in (LOCAL_PATH, WARNING) if (m := rx.search(text))]
    assert not bad, '\n'.join(bad)


# ---- the site in a browser ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get('FSQ_LIT_BROWSER_TESTS') == 'require': pytest.fail("chromium and chromedriver are required but not installed")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-dev-shm-usage',
              '--disable-background-networking', '--disable-component-update', '--disable-sync', '--window-size=1280,1000',
              f'--user-data-dir={tmp_path_factory.mktemp("chromium")}'):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


PAGE_STATE = """
const maths = [...document.querySelectorAll('article math')];
const imgs = [...document.querySelectorAll('article img')];
const box = e => e.getBoundingClientRect();
return {
  title: document.title,
  text: document.querySelector('article').innerText,
  maths: maths.length,
  mathml: maths.every(m => m instanceof MathMLElement),
  math_boxes: maths.filter(m => box(m).width > 0 && box(m).height > 0).length,
  frac_taller: [...document.querySelectorAll('article math mfrac')].every(f => box(f).height > 1.3 * box(f.firstElementChild).height),
  imgs: imgs.length,
  loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
  nav: [...document.querySelectorAll('.md-nav--primary .md-nav__link')].map(a => a.innerText.trim()).filter(t => t),
};
"""


def open_page(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == 'complete')
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete)"))
    return driver.execute_script(PAGE_STATE)


def shoot(driver, name, css=None, nth=0):
    "Screenshot of the viewport, scrolled to the `nth` element matching `css` (-1: the last)."
    if css:
        driver.execute_script("[...document.querySelectorAll(arguments[0])].at(arguments[1]).scrollIntoView({block: 'center'})",
                              css, nth)
        time.sleep(0.5)          # let the header's title finish its cross-fade (cosmetic; nothing is asserted on it)
    driver.save_screenshot(str(SHOTS / name))


def check_page(state, min_maths, min_imgs):
    assert state['maths'] >= min_maths and state['mathml'] and state['math_boxes'] == state['maths'], state['maths']
    assert state['frac_taller'], "fractions are not laid out: MathML did not render"
    assert state['imgs'] >= min_imgs and not state['broken'], state['broken']
    assert not DIRECTIVE.search(state['text']) and '$$' not in state['text'] and '\\frac' not in state['text']


def test_tutorial_in_browser(browser, server):
    s = open_page(browser, f"{server}/index.html")
    check_page(s, min_maths=3, min_imgs=2)
    assert 'Tutorial' in s['nav'] and 'API reference' in s['nav'] and len(s['nav']) >= 11, s['nav']
    assert 'FSQ in five minutes' in s['text']
    shoot(browser, 'tutorial-top.png')
    shoot(browser, 'tutorial-grid-figure.png', 'article img.nb-figure')
    shoot(browser, 'tutorial-usage-figure.png', 'article img.nb-figure', -1)


def test_chapters_in_browser(browser, server):
    s = open_page(browser, f"{server}/scalar.html")              # chapter 00: maths and figures
    check_page(s, min_maths=20, min_imgs=3)
    shoot(browser, 'chapter-scalar-top.png')
    shoot(browser, 'chapter-scalar-figure.png', 'article img.nb-figure')
    s = open_page(browser, f"{server}/fsq.html")                 # chapter 03: the FSQ module and its show_doc entry
    check_page(s, min_maths=5, min_imgs=0)
    assert browser.execute_script("return document.querySelector('article h3#fsq') !== null")
    assert 'levels per channel' in s['text']
    shoot(browser, 'chapter-fsq-api-entry.png', 'article h3#fsq')


def test_api_and_search_in_browser(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    s = open_page(browser, f"{server}/api.html#fsq")
    assert 'FSQ' in s['text'] and 'levels per channel' in s['text']
    shoot(browser, 'api-fsq.png', 'article h3#fsq')
    sig = "const c = document.querySelector('article h3#generationconfig + .highlight pre > code'); return [c.scrollWidth, c.clientWidth, c.getBoundingClientRect().height];"
    wide, shown, height = browser.execute_script(sig)
    assert wide <= shown + 1 and height > 300, (wide, shown, height)    # GenerationConfig's long signature wraps: nothing cut at the edge
    shoot(browser, 'api-signature-wrapped.png', 'article h3#generationconfig')
    box = browser.find_element(By.CSS_SELECTOR, 'input.md-search__input')
    box.click()
    box.send_keys('straight-through')
    # the result list re-renders as the query is typed: read it in one script call, and wait until it has the hits
    results = lambda d: d.execute_script("return [...document.querySelectorAll('.md-search-result__item')].map(e => e.innerText)")
    hits = WebDriverWait(browser, 30).until(lambda d: [h for h in results(d) if 'straight-through' in h.lower()])
    assert any('The straight-through estimator' in h for h in hits), hits
    assert not any('\\(' in h or '\\operatorname' in h for h in results(browser))        # previews show MathML, not LaTeX
    shoot(browser, 'search.png')
