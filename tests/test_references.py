"Every 'notebook NN' in the notebooks and the README names a notebook that exists, and a name given with it is defined there"
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = {int(p.name[:2]): p for p in (ROOT / 'nbs').glob('[0-9][0-9]_*.ipynb')}
NAMED = re.compile(r'`(\w+)`(?:\(\))?(?:\s\(|,\s)(?:in\s|from\s)?notebook\s+(\d\d)\b')   # `name` (notebook NN), `name`, notebook NN
NOTEBOOK = re.compile(r'\bnotebooks?\s+(\d\d)\b')   # a line break may fall between the two words

def texts():
    "(where, text) of every markdown cell and the README"
    for n, p in sorted(NBS.items()):
        for i, c in enumerate(json.loads(p.read_text())['cells']):
            if c['cell_type'] == 'markdown': yield f'{p.name} cell {i}', ''.join(c['source'])
    yield 'README.md', (ROOT / 'README.md').read_text()
    for p in sorted((ROOT / 'tests').glob('*.py')):
        if p.name != Path(__file__).name: yield p.name, p.read_text()

def defined(n:int) -> set:
    "Top-level names a notebook's code cells define (def, class, assignment)"
    src = '\n'.join(''.join(c['source']) for c in json.loads(NBS[n].read_text())['cells'] if c['cell_type'] == 'code')
    return set(re.findall(r'^(?:def|class) (\w+)', src, re.M)) | set(re.findall(r'^(\w+)\s*=', src, re.M)) | \
           set(re.findall(r'^def \w+\(self:\w+', src, re.M)) | set(re.findall(r'^@patch[^\n]*\ndef (\w+)', src, re.M))

def test_numbered_notebooks_exist():
    bad = [(w, m) for w, t in texts() for m in NOTEBOOK.findall(t) if int(m) not in NBS]
    assert not bad, f"'notebook NN' naming no notebook: {bad}"

def test_names_live_where_said():
    known = set().union(*(defined(n) for n in NBS))          # functions, classes, constants (a config field is none of these)
    bad = [(w, name, nn) for w, t in texts() for name, nn in NAMED.findall(t)
           if int(nn) in NBS and name in known and name not in defined(int(nn))]
    assert not bad, f"a name said to be in a notebook that does not define it: {bad}"

def test_the_check_can_fail():
    assert NAMED.findall('`vector_layout` (notebook 01)') == [('vector_layout', '01')] and 'vector_layout' not in defined(1)
    assert 'vector_layout' in defined(6)


def test_the_repository_cites_only_itself_and_public_sources():
    "No reference to a design document outside the repository (the project cites papers, the official code and public docs by link)"
    bad = [w for w, t in texts() if re.search(r'\bSPEC\b', t)]
    assert not bad, f"'SPEC' in {bad}"
