"""Refresh the saved outputs of notebooks from the current code: `python .ci/outputs.py nbs/14_judge.ipynb ...`.

Every code cell runs as `nbdev_test` runs it (in the notebook's folder); cells flagged `#| slow` or `#| gpu` do not run and
keep the outputs they have (they were made by a slow run and read from `results/`). A temporary folder in an output is
written `<tmp>`, the checkout `.` and the home folder `~`; any other path of the machine that ran them is refused: the
notebook is not written."""
import json, os, re, sys, tempfile
from pathlib import Path

from execnb.shell import CaptureShell
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc

SKIP = {'slow', 'gpu', 'notest'}

def redact(text:str) -> str:
    "`text` with this machine's temporary folders, checkout and home folder written as `<tmp>`, `.` and `~`"
    tmp, repo, home = tempfile.gettempdir(), str(Path(__file__).resolve().parents[1]), str(Path.home())
    text = re.sub(re.escape(tmp) + r'/(?:tmp|storygan-)[\w-]+', '<tmp>', text)   # mkdtemp's and scratch_dir's folders
    return text.replace(repo + '/', './').replace(repo, '.').replace(home + '/', '~/')

def machine_paths(text:str) -> list:
    "Paths of this machine found in an output's text"
    roots = {tempfile.gettempdir(), str(Path.home()), str(Path(__file__).resolve().parents[1])}
    return sorted({m for r in roots if len(r) > 1 for m in re.findall(re.escape(r) + r'[^\s\'"]*', text)})

def refresh(path:Path) -> None:
    raw = json.loads(path.read_text())
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    code = [c for c in nb.cells if c.cell_type == 'code']
    skip = lambda c: c.cell_type != 'code' or bool(SKIP & set((getattr(c, 'directives_', {}) or {}).keys()))
    for c in code:
        if not skip(c): c['outputs'] = []                                  # a cell that prints nothing now keeps nothing from before
    os.environ['IN_TEST'] = '1'
    shell = CaptureShell(path)
    cwd = os.getcwd(); os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd)
    raw_code = [c for c in raw['cells'] if c['cell_type'] == 'code']
    assert len(raw_code) == len(code), f"{path}: {len(raw_code)} code cells, {len(code)} processed"
    bad = []
    for r, c in zip(raw_code, code):
        if skip(c): continue
        outs = json.loads(redact(json.dumps([dict(o) for o in (c.get('outputs') or [])])))
        for o in outs: o.pop('execution_count', None) if o.get('output_type') == 'stream' else None
        r['outputs'], r['execution_count'] = outs, None
        for o in outs: o['execution_count'] = None if 'execution_count' in o else o.get('execution_count')
        bad += machine_paths(json.dumps(outs))
    if bad: raise SystemExit(f"{path}: outputs hold paths of this machine ({', '.join(bad[:3])}): not written")
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    print(f"{path}: outputs refreshed")

if __name__ == '__main__':
    for p in sys.argv[1:]: refresh(Path(p).resolve())
