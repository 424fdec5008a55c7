"The command line as people type it: dashed flags, python -m storygan, and bad input that gets a clear one-line error."
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from storygan.core import main
from storygan.clevr_data import generate_clevr
from storygan.training import train_preset
from storygan.runs import train_storygan

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A tiny trained run on a tiny CLEVR-style set: (data folder, run folder)"
    d = tmp_path_factory.mktemp('cli')
    data = generate_clevr(d / 'clevr', n_train=16, n_test=4, size=32, seed=0, workers=1, progress=False)
    train_storygan(data, d / 'run', tcfg=train_preset('tiny', steps=2, story_bs=4, image_bs=8), progress=False)
    return data, d / 'run'

def cli_error(argv, capsys) -> str:
    "The stderr of a command that must fail with exit status 2 and no traceback"
    with pytest.raises(SystemExit) as e: main([str(a) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and err.startswith(f'storygan {argv[0]}: error: ') or err.startswith('usage:'), err
    return err

def test_dashes_and_underscores(run, tmp_path, capsys):
    data, _ = run
    for flags in (['--story-bs', '4', '--image-bs', '8', '--sample-every', '1'], ['--story_bs', '4', '--image_bs=8', '--sample_every', '1']):
        out = tmp_path / flags[0].strip('-')
        assert main(['train', '--data', data, '--out', out, '--steps', '1', *flags]) == 0
        assert json.loads((out / 'config.json').read_text())['train']['story_bs'] == 4
    r = subprocess.run([sys.executable, '-m', 'storygan', 'train', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--story-bs' in r.stdout and '--story_bs' not in r.stdout and '(default: tiny)' in r.stdout

def test_corrupt_checkpoints(run, tmp_path, capsys):
    "Not a torch file, or a real checkpoint cut short: every command that reads one names it and says what is wrong"
    data, good = run
    bad = {'text.pt': b'this is not a checkpoint\n', 'truncated.pt': (good / 'checkpoint.pt').read_bytes()[:100_000]}
    for name, content in bad.items():
        p = tmp_path / name; p.write_bytes(content)
        msg = f'{p} is not a readable StoryGAN checkpoint (truncated or corrupt?)'
        assert msg in cli_error(['sample', '--ckpt', p, '--out', tmp_path / 'x.png', '--index', '0'], capsys)
        assert msg in cli_error(['evaluate', '--ckpt', p, '--n', '2'], capsys)
        r = tmp_path / f'run_{name}'; r.mkdir(); (r / 'checkpoint.pt').write_bytes(content)
        assert f'{r / "checkpoint.pt"} is not a readable StoryGAN checkpoint' in cli_error(
            ['train', '--data', data, '--out', r, '--steps', '3', '--resume'], capsys)

def test_more_bad_input(run, tmp_path, capsys):
    data, good = run
    ck = good / 'checkpoint.pt'
    # a checkpoint that is a torch file but not StoryGAN's
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    assert 'is not a StoryGAN checkpoint' in cli_error(['sample', '--ckpt', tmp_path / 'other.pt', '--out', tmp_path / 'x.png', '--index', '0'], capsys)
    # sentences the CLEVR parser cannot read, and too few of them
    story = ['A large red metal cube is added at the front left.'] * 3 + ['A shiny thing is added somewhere.']
    assert 'names no' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--story', *story], capsys)
    assert 'T=4 frames, got 2 sentences' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--story', *story[:2]], capsys)
    # flags of the wrong type or value: argparse's own usage error, exit 2
    assert 'invalid int value' in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--steps', 'ten'], capsys)
    assert "invalid choice: 'maybe'" in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--amp', 'maybe'], capsys)
    assert 'image_size: expected 32 or 64, got 48' in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--image-size', '48', '--steps', '1'], capsys)
    assert 'story_bs=99' in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--story-bs', '99', '--steps', '1'], capsys)
    # a data folder that is not one, and a corrupt probe file
    assert 'is not a story dataset' in cli_error(['train', '--data', tmp_path, '--out', tmp_path / 'r', '--steps', '1'], capsys)
    (tmp_path / 'probe.pt').write_bytes(b'junk')
    assert 'is not a readable storygan-probe file' in cli_error(['evaluate', '--ckpt', ck, '--probe', tmp_path / 'probe.pt', '--n', '2'], capsys)
    assert 'no checkpoint at' in cli_error(['evaluate', '--ckpt', tmp_path / 'nothing.pt'], capsys)
    assert 'out of range: the test split' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--index', '999'], capsys)
    assert 'does not exist' in cli_error(['train', '--data', tmp_path / 'nope', '--out', tmp_path / 'r', '--steps', '1'], capsys)
    assert "preset must be one of ['clevr', 'pororo', 'tiny'], got 'nosuch'" in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--preset', 'nosuch'], capsys)
    assert 'size must be an int >= 16 (pixels), got 0' in cli_error(['clevr', '--out', tmp_path / 'c', '--size', '0'], capsys)
    assert 'n_train must be an int >= 0, got -3' in cli_error(['clevr', '--out', tmp_path / 'c', '--train', '-3'], capsys)
    # an unknown command
    with pytest.raises(SystemExit) as e: main(['trian'])
    assert e.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err
