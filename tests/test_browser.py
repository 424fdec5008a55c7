"""The story editor as a user sees it: notebook 22 in a real JupyterLab, in headless Chromium.

A tiny checkpoint is trained (a few iterations), JupyterLab serves a copy of nbs/22_demo.ipynb with
STORYGAN_DEMO_CKPT pointing at it, and the browser runs all cells, waits for the app, changes a color dropdown and
waits for the generated frames to be redrawn. It fails on an error output in the notebook, an error message in the
app, or an error in the browser console. Without Chromium or playwright it is skipped, unless
STORYGAN_REQUIRE_BROWSER=1 (CI), where that is a failure. A screenshot of the app goes to tmp_path and, when
STORYGAN_SCREENSHOT_DIR is set, there too; STORYGAN_DEMO_CKPT, when it names an existing checkpoint, is opened
instead of the tiny one.
"""
import json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get('STORYGAN_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

pytestmark = pytest.mark.browser

def _require(ok:bool, why:str):
    "Skip without what the test needs; under STORYGAN_REQUIRE_BROWSER=1 (CI) fail instead"
    if ok: return
    if os.environ.get('STORYGAN_REQUIRE_BROWSER') == '1': pytest.fail(f"{why} (STORYGAN_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(why)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _get(url:str, timeout:float=5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return r.status, r.read()

def _children(pid:int) -> list:
    "Ids of the processes whose parent is `pid` (the kernels JupyterLab started)"
    out = []
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: ppid = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError): continue
        if ppid == pid: out.append(int(p.name))
    return out

def _alive(pid:int) -> bool:
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    st = Path(f'/proc/{pid}/stat')
    return not (st.exists() and st.read_text().rsplit(')', 1)[1].split()[0] == 'Z')

@pytest.fixture
def lab(tmp_path):
    "JupyterLab serving a copy of notebook 22 that opens a tiny checkpoint: (url of the notebook, token, its folder)"
    _require(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try: import playwright.sync_api  # noqa: F401
    except ImportError: _require(False, "playwright is not installed (pip install playwright)")
    try: import jupyterlab, ipywidgets  # noqa: F401
    except ImportError as e: _require(False, f"JupyterLab and ipywidgets are needed: {e}")
    from storygan.quickstart import tiny_checkpoint
    work = tmp_path / 'lab'; work.mkdir()
    given = os.environ.get('STORYGAN_DEMO_CKPT')                            # a trained model, e.g. for a picture of the app
    if given and Path(given).exists(): ckpt = Path(given).resolve()
    else: ckpt = tiny_checkpoint(work / 'tiny', steps=3).relative_to(work)  # relative to the notebook, as a user would give it
    shutil.copy(ROOT / 'nbs' / '22_demo.ipynb', work / '22_demo.ipynb')
    shutil.copytree(ROOT / 'nbs' / 'images', work / 'images')   # the pictures its markdown shows
    home = tmp_path / 'home'
    settings = home / 'lab-settings' / '@jupyterlab' / 'apputils-extension'
    settings.mkdir(parents=True)
    (settings / 'notification.jupyterlab-settings').write_text(json.dumps(dict(fetchNews='false', checkForUpdates=False)))
    env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}          # the kernel draws inline, as for a user
    env.update(STORYGAN_DEMO_CKPT=str(ckpt), JUPYTER_CONFIG_DIR=str(home / 'config'), JUPYTER_DATA_DIR=str(home / 'data'),
               JUPYTER_RUNTIME_DIR=str(home / 'runtime'), JUPYTERLAB_SETTINGS_DIR=str(home / 'lab-settings'),
               JUPYTERLAB_WORKSPACES_DIR=str(home / 'workspaces'), IPYTHONDIR=str(home / 'ipython'), PYTHONUNBUFFERED='1')
    port, token = _free_port(), secrets.token_hex(16)
    lab_bin = Path(sys.executable).parent / 'jupyter-lab'
    cmd = [str(lab_bin)] if lab_bin.exists() else [sys.executable, '-m', 'jupyterlab']
    cmd += ['--no-browser', '--ip', '127.0.0.1', '--port', str(port), f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}',
            '--ServerApp.port_retries=0', '--LabApp.news_url=None'] + (['--allow-root'] if os.geteuid() == 0 else [])
    log = open(tmp_path / 'jupyterlab.log', 'w')
    server = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if server.poll() is not None: pytest.fail(f"JupyterLab exited with {server.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                if _get(f'{base}/api/status?token={token}')[0] == 200: break
            except OSError: pass
            if time.time() - t0 > 90: pytest.fail(f"JupyterLab did not answer within 90 s:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f'{base}/lab/tree/22_demo.ipynb?token={token}', base, token, work
    finally:
        kernels = _children(server.pid)
        try: urllib.request.urlopen(urllib.request.Request(f'{base}/api/shutdown?token={token}', method='POST'), timeout=10)
        except OSError: pass
        try: server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL); server.wait(10)
        for pid in kernels:                                                    # a kernel left behind: end it
            if _alive(pid): os.kill(pid, signal.SIGKILL)
        log.close()

JS_PROMPTS = "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"
JS_STARTED = f"() => ({JS_PROMPTS})().some(q => q !== '[ ]:')"
JS_SRCS = "() => [...document.querySelectorAll('.storygan-editor img.storygan-generated')].map(e => e.src)"

def test_demo_notebook_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout
    url, base, token, work = lab
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / 'chromium-profile'), executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS, viewport=dict(width=1400, height=1800))
        try:
            page = browser.new_page()
            page.on('console', lambda m: m.type == 'error' and problems.append(f"console error: {m.text} {m.location.get('url', '')}"))
            page.on('pageerror', lambda e: problems.append(f"page error: {e}"))
            page.goto(url)
            page.wait_for_selector('.jp-Notebook .jp-CodeCell', timeout=90_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', state='attached', timeout=90_000)   # the kernel is up
            for attempt in range(4):                                           # Run > Run All Cells, once the kernel listens
                page.wait_for_timeout(2000)
                page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
                page.locator('li.lm-Menu-item[data-command="runmenu:run-all"], li.lm-Menu-item[data-command="notebook:run-all-cells"]').first.click()
                try: page.wait_for_function(JS_STARTED, timeout=15_000); break
                except PlaywrightTimeout: page.keyboard.press('Escape')
            else: pytest.fail("Run All Cells did not start the notebook")
            t0, prompts, quiet = time.time(), [], 0
            while quiet < 2:                                                   # done (or stopped by an error): no [*]: left, kernel idle
                if time.time() - t0 > 150: pytest.fail(f"the notebook did not finish within 150 s; prompts: {prompts}")
                page.wait_for_timeout(1000)
                prompts = page.evaluate(JS_PROMPTS)
                idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
                quiet = quiet + 1 if idle and '[*]:' not in prompts else 0
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_text_contents()
            problems += [f"error output in the notebook:\n{t[-2000:]}" for t in errors if 'Traceback' in t]
            assert not problems, '\n'.join(problems)
            not_run = [i for i, q in enumerate(prompts) if not q[1:-2].isdigit()]
            assert not not_run, f"code cells {not_run} did not run; prompts: {prompts}"
            app = page.locator('.storygan-editor')
            app.wait_for(timeout=30_000)
            page.wait_for_function("() => document.querySelectorAll('.storygan-editor img.storygan-generated').length >= 4", timeout=30_000)
            before = page.evaluate(JS_SRCS)
            color = page.locator('.storygan-editor .storygan-color select').first
            color.scroll_into_view_if_needed()
            assert color.input_value() == 'red'
            color.select_option('blue')
            page.wait_for_function(f"() => document.querySelector('.storygan-editor img.storygan-generated').src !== {json.dumps(before[0])}",
                                   timeout=30_000)
            page.wait_for_function("() => document.querySelector('.storygan-editor .storygan-sentence textarea').value.includes('blue')", timeout=10_000)
            after = page.evaluate(JS_SRCS)
            assert after != before and all(s.startswith(('blob:', 'data:')) for s in after), (before, after)
            msg = app.locator('.storygan-message').inner_html()
            if 'storygan-error' in msg: problems.append(f"the app shows an error: {msg}")
            page.wait_for_timeout(500)
            app.scroll_into_view_if_needed()
            shots = [tmp_path / 'demo_jupyterlab.png']
            if os.environ.get('STORYGAN_SCREENSHOT_DIR'): shots.append(Path(os.environ['STORYGAN_SCREENSHOT_DIR']) / 'demo_jupyterlab.png')
            for s in shots:
                s.parent.mkdir(parents=True, exist_ok=True); app.screenshot(path=str(s))
            page.keyboard.press('Control+s')                                  # save, to read the outputs from the file
            page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)
        finally: browser.close()
    nb = json.loads((work / '22_demo.ipynb').read_text())
    problems += [f"cell {i} raised {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb['cells'])
                 for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not problems, '\n'.join(problems)
