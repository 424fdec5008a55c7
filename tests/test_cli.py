"The command line as people type it: dashed flags, python -m storygan, and bad input that gets a clear one-line error."
import json, shutil, subprocess, sys
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
    assert 'Traceback' not in err and (err.startswith(f'storygan {argv[0]}: error: ') or err.startswith('usage:')), err
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
    assert "argument --steps: must be an integer >= 1, got 'ten'" in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--steps', 'ten'], capsys)
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
    assert "preset must be one of ['clevr', 'paper_tiny', 'paper_tiny+layout', 'pororo', 'tiny'], got 'nosuch'" in cli_error(['train', '--data', data, '--out', tmp_path / 'r', '--preset', 'nosuch'], capsys)
    assert "argument --size: must be an integer >= 16 and <= 1024, got '0'" in cli_error(['clevr', '--out', tmp_path / 'c', '--size', '0'], capsys)
    assert "argument --train: must be an integer >= 0, got '-3'" in cli_error(['clevr', '--out', tmp_path / 'c', '--train', '-3'], capsys)
    # an unknown command
    with pytest.raises(SystemExit) as e: main(['trian'])
    assert e.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err

def test_bad_inputs_found_by_hand(run, tmp_path, capsys, monkeypatch):
    "Each case a user ran into: one line that names the path or the flag, exit status 2, and nothing lost"
    data, good = run
    train = lambda *a: ['train', '--data', data, '--steps', '1', *a]
    # broken dataset files
    bad = tmp_path / 'bad'; shutil.copytree(data, bad)
    (bad / 'info.json').write_text('7')
    assert f"{bad / 'info.json'} must hold a JSON object" in cli_error(['train', '--data', bad, '--out', tmp_path / 'r1', '--steps', '1'], capsys)
    shutil.copy(data / 'info.json', bad / 'info.json'); (bad / 'train' / 'sentences.json').write_text('{"0": []}')
    assert f"{bad / 'train' / 'sentences.json'} must hold a list of stories" in cli_error(['train', '--data', bad, '--out', tmp_path / 'r2', '--steps', '1'], capsys)
    # --out that cannot be a run folder: a file, a path under a file, a folder that cannot be created
    f = tmp_path / 'file.txt'; f.write_text('x')
    assert f'the run folder {f} is a file, not a folder' in cli_error(train('--out', f), capsys)
    assert f'cannot be created: {f} is a file' in cli_error(train('--out', f / 'run'), capsys)
    assert 'the run folder /proc/storygan_run cannot be created or written' in cli_error(train('--out', '/proc/storygan_run'), capsys)
    assert f'--out {f} is a file, not a folder' in cli_error(['quickstart', '--out', f], capsys)
    # values that used to be accepted silently
    assert "argument --time-limit: must be a finite number > 0, got '-1'" in cli_error(train('--out', tmp_path / 'r3', '--time-limit', '-1'), capsys)
    assert "argument --minutes: must be a finite number > 0, got '-1'" in cli_error(['quickstart', '--out', tmp_path / 'q', '--minutes', '-1'], capsys)
    assert main(['train', '--data', data, '--out', tmp_path / 'six', '--steps', '6', '--story-bs', '4', '--image-bs', '8']) == 0
    assert 'is already at iteration 6, past the 3 asked for' in cli_error(
        ['train', '--data', data, '--out', tmp_path / 'six', '--steps', '3', '--story-bs', '4', '--image-bs', '8', '--resume'], capsys)
    # a picture, a JSON file and batch sizes named wrongly
    assert f'--out {tmp_path} is a folder: give a picture file name' in cli_error(['sample', '--ckpt', good, '--out', tmp_path, '--index', '0'], capsys)
    assert "give a picture file name that ends in .png (or .jpg), got 'no extension'" in cli_error(['sample', '--ckpt', good, '--out', tmp_path / 'story', '--index', '0'], capsys)
    monkeypatch.setattr('storygan.evaluation.evaluate', lambda *a, **k: pytest.fail('evaluated before checking --out'))
    assert f'--out {tmp_path} is a folder: give the JSON file to write' in cli_error(['evaluate', '--ckpt', good, '--out', tmp_path], capsys)
    assert "--batch-sizes: expected STORY/IMAGE batch sizes such as 4/16, or one number such as 8, got 'x'" in cli_error(['bench-train', '--batch-sizes', 'x'], capsys)
    if not torch.cuda.is_available():
        assert "device 'cuda': PyTorch sees no CUDA GPU here" in cli_error(train('--out', tmp_path / 'r4', '--device', 'cuda'), capsys)

def test_disk_full_while_checkpointing(run, tmp_path, capsys, monkeypatch):
    "torch.save's RuntimeError from deep in its zip writer becomes one line that says the disk is full; the last checkpoint stays"
    import errno
    data, _ = run
    out = tmp_path / 'full'
    assert main(['train', '--data', data, '--out', out, '--steps', '2', '--story-bs', '4', '--image-bs', '8']) == 0
    before = (out / 'checkpoint.pt').read_bytes()
    def full(obj, f, *a, **k):
        f.write(b'part of a checkpoint')
        try: raise OSError(errno.ENOSPC, 'No space left on device')
        except OSError: raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0')
    monkeypatch.setattr(torch, 'save', full)
    err = cli_error(['train', '--data', data, '--out', out, '--steps', '4', '--story-bs', '4', '--image-bs', '8', '--resume'], capsys)
    assert err.strip() == f"storygan train: error: could not write {out / 'checkpoint.pt'}: No space left on device"
    assert (out / 'checkpoint.pt').read_bytes() == before and not list(out.glob('.checkpoint.pt.*.tmp'))

def test_importing_the_package_prints_nothing():
    "Every command imports the package first: torch's benchmark module, imported bare, warns on a CPU machine that it found no CUDA runtime"
    r = subprocess.run([sys.executable, '-c', 'import storygan.quickstart, storygan.bench'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == '' and r.stdout == '', r.stderr
