"Two DDP processes (torchrun -m storygan, gloo backend, CPU) train the tiny preset through `storygan train`."
import json, os, subprocess, sys
from pathlib import Path

import torch

from storygan.clevr_data import generate_clevr
from storygan.runs import load_checkpoint, read_metrics

def test_ddp_two_processes(tmp_path):
    data = generate_clevr(tmp_path / 'clevr', n_train=16, n_test=4, size=32, seed=0, workers=1, progress=False)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'CI': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'storygan', 'train',
           '--data', str(data), '--out', str(tmp_path / 'run'), '--steps', '3', '--story_bs', '2', '--image-bs', '4', '--device', 'cpu']
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = load_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    assert ck['world_size'] == 2 and ck['step'] == 3 and len(ck['rng']) == 2
    # each process took its own half of the 16 stories: 4 iterations per epoch of 2 x 2 stories
    assert ck['steps_per_epoch'] == 4 and ck['data_state']['story'] == dict(epoch=0, batch=3)
    rows = read_metrics(tmp_path / 'run')
    assert [r['step'] for r in rows] == [1, 2, 3]                  # only rank 0 logs
    assert 'processes' in r.stdout and r.stdout.count('done:') == 1
