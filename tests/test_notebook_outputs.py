"""The notebooks are committed with their outputs: every cell that draws a figure shows it, every notebook shows at least
one figure, and no output holds a path of the machine that ran it or a library's log line (a timestamp and a process
id). (`python .ci/outputs.py nbs/NN_name.ipynb` refreshes a notebook's outputs from the current code.)"""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'nbs').glob('[0-9][0-9]_*.ipynb'))
DRAWS = re.compile(r'\bplt\.|\bfig\s*[,=]|(?<!lambda: )show_story\(|ShowPNG\(|_chart\(|_grid\(|\.imshow\(|\.plot\(')
LOG_LINE = re.compile(r'\b[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^\s\]]+:\d+\]')   # glog's prefix, which torch's own loggers use
MACHINE_PATH = re.compile(r"(?<![\w>.~])(?:/tmp/|/var/folders/|/home/\w+/|/root/|/Users/\w+/|/work/|site-packages/)[^\s'\"]*")

def flags(src:str) -> set:
    return {m for m in re.findall(r'^#\|\s*(\w+)', src, re.M)}

def code_cells(path:Path):
    for i, c in enumerate(json.loads(path.read_text())['cells']):
        if c['cell_type'] == 'code': yield i, ''.join(c['source']), c.get('outputs', [])

def figure_cells_without_output(path:Path) -> list:
    "Cells (not exported, not slow or GPU-only) that draw a figure but have no saved output"
    return [i for i, src, outs in code_cells(path)
            if DRAWS.search(src) and not flags(src) & {'export', 'exporti', 'slow', 'gpu', 'hide'} and not outs]

def machine_paths(path:Path) -> list:
    return [(i, m) for i, _, outs in code_cells(path) for m in MACHINE_PATH.findall(json.dumps(outs))]

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_shown(nb):
    assert not figure_cells_without_output(nb), f"{nb.name}: cells {figure_cells_without_output(nb)} draw a figure but have no saved output"

def has_figure(path:Path) -> bool:
    "Does any saved output hold a picture (a PNG, an SVG or an HTML image)"
    return any('image/png' in o.get('data', {}) or 'image/svg+xml' in o.get('data', {}) or '<img' in ''.join(o.get('data', {}).get('text/html', ''))
               for _, _, outs in code_cells(path) for o in outs)

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_shows_a_figure(nb):
    assert has_figure(nb), f"{nb.name} shows no figure"

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_paths(nb):
    assert not machine_paths(nb), f"{nb.name}: outputs hold machine paths {machine_paths(nb)[:3]}"

def log_lines(path:Path) -> list:
    return [(i, m) for i, _, outs in code_cells(path) for m in LOG_LINE.findall(json.dumps(outs))]

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_no_log_lines(nb):
    assert not log_lines(nb), f"{nb.name}: outputs hold a library's log lines {log_lines(nb)[:3]}"

def test_the_checks_can_fail(tmp_path):
    nb = dict(cells=[dict(cell_type='code', source=['fig = plt.figure()'], outputs=[]),
                     dict(cell_type='code', source=['print(1)'], outputs=[dict(output_type='stream', text=['/tmp/abc/run'])]),
                     dict(cell_type='code', source=['import x'], outputs=[dict(output_type='stream', name='stderr',
                          text=["W1207 06:14:44.413000 14538 torch/utils/cpp_extension.py:183] No CUDA runtime is found\n"])])])
    p = tmp_path / '99_x.ipynb'; p.write_text(json.dumps(nb))
    assert figure_cells_without_output(p) == [0] and machine_paths(p) == [(1, '/tmp/abc/run')]
    assert [i for i, _ in log_lines(p)] == [2]
