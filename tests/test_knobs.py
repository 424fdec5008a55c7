"Every config field earns its place: a preset, a command's flag or a committed study sets it (issue: knobs nobody turns are constants)."
import importlib, inspect, json
from dataclasses import fields
from pathlib import Path

from storygan.core import COMMANDS, COMMAND_MODULES
from storygan.story_encoder import StoryGANConfig, PRESETS
from storygan.training import TrainConfig, TRAIN_PRESETS

RESULTS = Path(__file__).parent.parent / 'nbs' / 'results'
FIELDS = {f.name for f in fields(StoryGANConfig)} | {f.name for f in fields(TrainConfig)}

def _walk(o):
    "Every dict inside `o` (lists, tuples and dicts, recursively)"
    if isinstance(o, dict):
        yield o
        for v in o.values(): yield from _walk(v)
    elif isinstance(o, (list, tuple)):
        for v in o: yield from _walk(v)

def setters() -> dict:
    "{field: where it is set}: the presets and the package's named settings, the commands' flags, and the studies in nbs/results"
    from storygan import quickstart, gpu_report, ablations           # the named settings: QUICKSTART, RECIPES, BENCH_SETTINGS, MEMORY_VARIANTS
    found = {}
    named = dict(PRESETS=PRESETS, TRAIN_PRESETS=TRAIN_PRESETS, QUICKSTART=quickstart.QUICKSTART, RECIPES=gpu_report.RECIPES,
                 BENCH_SETTINGS=gpu_report.BENCH_SETTINGS, MEMORY_VARIANTS=ablations.MEMORY_VARIANTS)
    for name, obj in named.items():
        for d in _walk(obj): found.update({k: name for k in d if k in FIELDS})
    if any(a for a, _ in ablations.MEMORY_VARIANTS.values()): found.setdefault('ablation', 'MEMORY_VARIANTS')
    for m, _ in COMMAND_MODULES.values(): importlib.import_module(f'storygan.{m}')
    for cmd, f in COMMANDS.items():
        for p in inspect.signature(f).parameters: found.setdefault(p, f'storygan {cmd} --{p.replace("_", "-")}')
    for p in sorted(RESULTS.rglob('*.json')):
        for d in _walk(json.loads(p.read_text())):
            for key in ('change', 'model', 'train'):
                if isinstance(d.get(key), dict): found.update({k: p.name for k in d[key] if k in FIELDS and k not in found})
    return {k: v for k, v in found.items() if k in FIELDS}

def test_no_dead_config_field():
    s = setters()
    dead = sorted(FIELDS - set(s))
    assert not dead, f"config fields that no preset, command or committed study sets: {dead} (make them constants with a comment)"

def test_at_most_40_fields_each_with_a_comment():
    assert len(FIELDS) <= 40, len(FIELDS)
    for cls in (StoryGANConfig, TrainConfig):
        src = inspect.getsource(cls).splitlines()
        for f in fields(cls):
            line = next(l for l in src if l.strip().startswith(f'{f.name}:'))
            assert '#' in line and len(line.split('#', 1)[1].strip()) > 20, f"{cls.__name__}.{f.name} needs a comment that says why: {line.strip()}"
