"Trainer: exact resume, checkpoints, interrupts, the train/sample CLI and bad input (tiny preset, 32x32, a few steps)."
import json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from storygan.core import main, FolderLock
from storygan.clevr_data import generate_clevr
from storygan.data import save_split, write_info
from storygan.training import *
from storygan.runs import *

torch.set_num_threads(1)

def tcfg(steps, **kw):
    "Tiny, fast settings: 16 stories per epoch of 4 iterations"
    return train_preset('tiny', **{**dict(steps=steps, story_bs=4, image_bs=8, decay_every=1), **kw})

def run_tiny(data, out, **kw):
    "`train_storygan` with a sample grid every 3 iterations and a checkpoint every 4 (unless `kw` says otherwise)"
    return train_storygan(data, out, **{**dict(sample_every=3, ckpt_every=4), **kw})

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return generate_clevr(tmp_path_factory.mktemp('d') / 'clevr', n_train=16, n_test=4, size=32, seed=0, workers=1, progress=False)

def states_equal(a, b):
    "Compare two nested state dicts exactly"
    if isinstance(a, torch.Tensor): return torch.equal(a, b)
    if isinstance(a, dict): return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b

def test_resume_is_exact(data, tmp_path):
    # 7 iterations straight vs 3 + resume + 4 (crossing an epoch boundary at 4 with a checkpoint mid-epoch)
    a = run_tiny(data, tmp_path / 'a', tcfg=tcfg(7))
    b = run_tiny(data, tmp_path / 'b', tcfg=tcfg(3))
    b = run_tiny(data, tmp_path / 'b', tcfg=tcfg(7), resume=True)
    sa, sb = a.state_dict(), b.state_dict()
    for k in ('models', 'optimizers', 'schedulers', 'data_state', 'step'): assert states_equal(sa[k], sb[k]), k
    la, lb = read_metrics(tmp_path / 'a'), read_metrics(tmp_path / 'b')
    assert [r['step'] for r in lb] == list(range(1, 8))
    timing = {'step_time', 'data_time', 'images_per_s', 'time'}
    for ra, rb in zip(la, lb): assert {k: v for k, v in ra.items() if k not in timing} == {k: v for k, v in rb.items() if k not in timing}
    # the learning rate halved after each epoch (decay_every=1 epoch of 4 iterations)
    assert la[3]['lr_G'] == pytest.approx(2e-4) and la[4]['lr_G'] == pytest.approx(1e-4)

def test_resume_other_config_fails(data, tmp_path):
    run_tiny(data, tmp_path / 'r', tcfg=tcfg(2))
    with pytest.raises(ValueError, match=r"train.lr: checkpoint 0.0002 vs now 0.001"):
        run_tiny(data, tmp_path / 'r', tcfg=tcfg(4, lr=1e-3), resume=True)
    with pytest.raises(ValueError, match=r"model.gf_dim"):
        run_tiny(data, tmp_path / 'r', tcfg=tcfg(4), resume=True, gf_dim=32)
    # a longer run or other output intervals are fine
    run_tiny(data, tmp_path / 'r', tcfg=tcfg(3), resume=True, sample_every=0, ckpt_every=1)
    with pytest.raises(ValueError, match='already holds a run'): run_tiny(data, tmp_path / 'r', tcfg=tcfg(2))

def test_interrupt_saves_checkpoint(data, tmp_path):
    def stop_at_2(tr, stats):
        if tr.step == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): run_tiny(data, tmp_path / 'i', tcfg=tcfg(6), callbacks=[stop_at_2])
    ck = load_checkpoint(tmp_path / 'i' / 'checkpoint.pt')
    assert ck['step'] == 2 and ck['data_state']['story'] == dict(epoch=0, batch=2)
    # and the run goes on from there, exactly
    b = run_tiny(data, tmp_path / 'i', tcfg=tcfg(6), resume=True)
    a = run_tiny(data, tmp_path / 'a', tcfg=tcfg(6))
    assert states_equal(a.state_dict()['models'], b.state_dict()['models'])

def test_learned_memory_warms_up_once(tmp_path, capsys):
    # the learned memory is warmed up on the vectors before iteration 1; a crashed run resumes without warming again, exactly
    new = generate_clevr(tmp_path / 'new', n_train=16, n_test=4, size=32, seed=0, workers=1, progress=False, sentences='new')
    mem = dict(layout_dim=8, memory_weight=1.0)
    def stop_at_2(tr, stats):
        if tr.step == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): run_tiny(new, tmp_path / 'i', tcfg=tcfg(6), callbacks=[stop_at_2], progress=False, **mem)
    b = run_tiny(new, tmp_path / 'i', tcfg=tcfg(6), resume=True, progress=False, **mem)
    a = run_tiny(new, tmp_path / 'a', tcfg=tcfg(6), progress=False, **mem)
    assert states_equal(a.state_dict()['models'], b.state_dict()['models'])
    said = capsys.readouterr()
    assert (said.out + said.err).count("warmed the learned memory up on 16 training stories' vectors (12 steps") == 2   # the two fresh runs, not the resumed one

def test_ctrl_c_stops_after_the_iteration(data, tmp_path):
    import signal
    before = signal.getsignal(signal.SIGINT)   # default_int_handler, or SIG_IGN when started in the background
    def ctrl_c_at_2(tr, stats):
        if tr.step == 2: os.kill(os.getpid(), signal.SIGINT)   # as if the user pressed Ctrl-C during iteration 2
    with pytest.raises(KeyboardInterrupt): run_tiny(data, tmp_path / 'c', tcfg=tcfg(6), callbacks=[ctrl_c_at_2])
    assert load_checkpoint(tmp_path / 'c' / 'checkpoint.pt')['step'] == 2
    assert signal.getsignal(signal.SIGINT) is before   # the handler is restored

def test_time_limit_stops_early_with_checkpoint(data, tmp_path):
    tr = run_tiny(data, tmp_path / 't', tcfg=tcfg(50), time_limit=1e-6)
    assert tr.step == 1 and load_checkpoint(tmp_path / 't' / 'checkpoint.pt')['step'] == 1
    assert (tmp_path / 't' / 'samples' / 'step_000001.png').exists()

def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    p = save_checkpoint(dict(format='storygan-checkpoint', step=1, w=torch.ones(3)), tmp_path / 'ck.pt')
    def broken_save(obj, f, *a, **k):
        f.write(b'partial'); raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'): save_checkpoint(dict(format='storygan-checkpoint', step=2), p)
    assert [q.name for q in tmp_path.iterdir()] == ['ck.pt']      # no temporary file left behind
    assert load_checkpoint(p)['step'] == 1                        # the previous checkpoint is intact

def test_cli_train_and_sample(data, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, '--steps', '3', '--story-bs', '4', '--image-bs', '8', '--sample-every', '2']) == 0
    assert (run / 'checkpoint.pt').exists() and len(read_metrics(run)) == 3
    assert sorted(p.name for p in (run / 'samples').iterdir()) == ['step_000002.png', 'step_000003.png']
    from PIL import Image
    out = main(['sample', '--ckpt', run / 'checkpoint.pt', '--out', tmp_path / 'idx.png', '--index', '0', '2', '--n', '2'])
    assert out == 0 and Image.open(tmp_path / 'idx.png').size[1] > Image.open(tmp_path / 'idx.png').size[0] // 2
    story = json.loads((data / 'test' / 'sentences.json').read_text())[0]
    assert main(['sample', '--ckpt', run / 'checkpoint.pt', '--out', tmp_path / 'story.png', '--story', *story]) == 0
    assert str(tmp_path / 'story.png') in capsys.readouterr().out
    # resume through the CLI
    assert main(['train', '--data', data, '--out', run, '--steps', '4', '--story-bs', '4', '--image-bs', '8', '--resume']) == 0
    assert load_checkpoint(run / 'checkpoint.pt')['step'] == 4

def cli_error(argv, capsys):
    with pytest.raises(SystemExit) as e: main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err

def test_bad_input(data, tmp_path, capsys):
    assert 'does not exist' in cli_error(['train', '--data', tmp_path / 'nowhere', '--out', tmp_path / 'x', '--steps', '1'], capsys)
    assert 'not both' in cli_error(['train', '--data', data, '--out', tmp_path / 'x', '--steps', '1', '--epochs', '1'], capsys)
    assert "preset must be one of" in cli_error(['train', '--data', data, '--out', tmp_path / 'x', '--preset', 'huge'], capsys)
    assert 'no checkpoint' in cli_error(['sample', '--ckpt', tmp_path / 'none.pt', '--out', tmp_path / 'x.png', '--index', '0'], capsys)
    run = tmp_path / 'run'
    main(['train', '--data', data, '--out', run, '--steps', '1', '--story-bs', '4', '--image-bs', '8'])
    ck = run / 'checkpoint.pt'
    assert 'T=4 frames, got 3 sentences' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--story', 'a', 'b', 'c'], capsys)
    assert 'either --story' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png'], capsys)
    assert 'out of range' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--index', '99'], capsys)
    # data with stories of another length than the checkpoint's
    d3 = tmp_path / 'd3'
    for split in ('train', 'test'):
        x = {k: np.load(data / split / f'{k}.npy')[:, :3] for k in ('images', 'text', 'labels')}
        save_split(d3, split, x['images'], x['text'], x['labels'], [s[:3] for s in json.loads((data / split / 'sentences.json').read_text())])
    write_info(d3, **{**json.loads((data / 'info.json').read_text()), 'T': 3})
    err = cli_error(['train', '--data', d3, '--out', run, '--steps', '2', '--story-bs', '4', '--image-bs', '8', '--resume'], capsys)
    assert 'T=3 in the data but T=4 in checkpoint' in err
    assert 'T=3 in the data but T=4' in cli_error(['sample', '--ckpt', ck, '--out', tmp_path / 'x.png', '--index', '0', '--data', d3], capsys)

def test_amp_auto_follows_the_kernels_pytorch_may_use():
    "ATen held to AVX2 (how a slow CPU is emulated on a fast one) emulates bf16 whatever the CPU has: `auto` leaves it off"
    code = "import torch; from storygan.training import fast_bf16; print(torch.backends.cpu.get_cpu_capability(), fast_bf16('cpu'))"
    r = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'ATEN_CPU_CAPABILITY': 'avx2'}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cap, fast = r.stdout.split()
    assert cap in ('AVX2', 'DEFAULT') and fast == 'False', r.stdout + r.stderr

def test_workers_do_not_change_what_G_sees(data, tmp_path):
    "G's noise, the object head's empty places and a layout's random crops come from seeded generators: 0 or 2 loader processes, the same run"
    from storygan.cartoon import generate_cartoon
    cart = generate_cartoon(tmp_path / 'cart', 24, 4, 4, size=32, clips_per_episode=14, seed=0)
    model = dict(layout_dim=8, obj_weight=1.0)                       # the object head draws empty places at random
    for d, kw in ((data, model), (cart, {})):
        runs = [read_metrics(run_tiny(d, tmp_path / f'{d.name}{w}', tcfg=tcfg(3), workers=w, sample_every=0, **kw).run_dir)
                for w in (0, 2)]
        keys = [k for k in runs[0][0] if k.startswith(('d_', 'g', 'p_', 'kl'))]
        assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[1]], d

def test_a_crash_keeps_whole_iterations(data, tmp_path, monkeypatch):
    "A crash between iterations writes a checkpoint; one inside an iteration leaves the last checkpoint; kill -9 leftovers are removed"
    def crash_at_3(tr, stats):
        if tr.step == 3: raise RuntimeError('a callback failed')
    with pytest.raises(RuntimeError, match='a callback failed'):
        run_tiny(data, tmp_path / 'cb', tcfg=tcfg(6), ckpt_every=0, callbacks=[crash_at_3])
    assert load_checkpoint(tmp_path / 'cb')['step'] == 3
    step = StoryGANTrainer.train_step
    def fails_at_3(self, *a):
        if self.step == 2: raise RuntimeError('CUDA out of memory (a stand-in)')
        return step(self, *a)
    monkeypatch.setattr(StoryGANTrainer, 'train_step', fails_at_3)
    with pytest.raises(RuntimeError, match='out of memory'):
        monkeypatch.setattr('storygan.runs.CKPT_MINUTES', 1e-9)                            # a checkpoint after every iteration
        run_tiny(data, tmp_path / 'mid', tcfg=tcfg(6), ckpt_every=0)
    assert load_checkpoint(tmp_path / 'mid')['step'] == 2                                      # the half-done third is not saved
    monkeypatch.setattr(StoryGANTrainer, 'train_step', step)
    (tmp_path / 'mid' / '.checkpoint.pt.999999999.tmp').write_bytes(b'left by a writer killed mid-write')
    assert run_tiny(data, tmp_path / 'mid', tcfg=tcfg(4), resume=True).step == 4
    assert not list((tmp_path / 'mid').glob('.checkpoint.pt.*.tmp'))

def test_one_run_per_folder(data, tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(ValueError, match=f'the run folder {tmp_path} is in use by another run \\(pid {os.getpid()}\\)'):
            run_tiny(data, tmp_path, tcfg=tcfg(2))
    assert not (tmp_path / 'metrics.jsonl').exists()
    r = subprocess.run([sys.executable, '-c', f"""
import fcntl, subprocess, sys
f = open({str(tmp_path / '.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 1234'); f.flush()
r = subprocess.run([sys.executable, '-m', 'storygan', 'train', '--data', {str(data)!r}, '--out', {str(tmp_path)!r}, '--steps', '1'],
                   capture_output=True, text=True)
print(r.returncode, r.stderr.strip())"""], capture_output=True, text=True)
    assert r.stdout.startswith('2 storygan train: error: the run folder') and 'in use by another run (pid 1234)' in r.stdout, r.stdout + r.stderr
