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


AVERAGE_SCRIPT = '''
import sys, torch, torch.distributed as dist, torch.nn.functional as F
from storygan.story_encoder import StoryGANConfig
from storygan.training import StoryGANTrainer, train_preset
torch.set_num_threads(1)
world = int(sys.argv[2])
if world > 1: dist.init_process_group('gloo')
rank = dist.get_rank() if world > 1 else 0
cfg = StoryGANConfig.preset('tiny', d_batch_norm=False)         # no batch statistics: each frame's loss is its own
tr = StoryGANTrainer(cfg, train_preset('tiny', steps=1), rank=rank, world_size=world, device='cpu')
g = torch.Generator().manual_seed(0)
x, labels = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, (torch.rand(8, cfg.label_dim, generator=g) > 0.5).float()
part = slice(rank * 8 // world, (rank + 1) * 8 // world)        # this process's share of the batch
loss = F.binary_cross_entropy_with_logits(tr.D_I.classify(tr.D_I.encoder(x[part])), labels[part])
loss.backward()
tr._average_grads(tr.D_I)                                        # what every backward pass of a DDP run does
grads = torch.cat([p.grad.flatten() for p in tr.D_I.parameters() if p.grad is not None])
tr.opts['D_I'].step()
if rank == 0: torch.save(dict(grads=grads, weights=torch.cat([p.detach().flatten() for p in tr.D_I.parameters()])), sys.argv[1])
if world > 1: dist.barrier(); dist.destroy_process_group()   # both ranks done before the teardown
'''

def test_two_half_batches_make_one_whole_batch_update(tmp_path):
    "The trainer's gradient all-reduce: two processes on half the batch each give the update of one process on all of it"
    script = tmp_path / 'average.py'; script.write_text(AVERAGE_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / 'one.pt'), '1'], env=env, capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
                          str(tmp_path / 'two.pt'), '2'], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    a, b = torch.load(tmp_path / 'one.pt'), torch.load(tmp_path / 'two.pt')
    assert a['grads'].abs().max() > 0
    torch.testing.assert_close(b['grads'], a['grads'], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b['weights'], a['weights'], rtol=0, atol=1e-6)
