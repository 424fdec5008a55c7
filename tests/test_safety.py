"Nothing run, nothing lost: pickle payloads in Pororo-SV tables, output folders the tool owns, links in run folders, every stop signal, errors by class."
import json, os, pickle, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from storygan.core import main, FolderLock, MANIFEST, claim_file
from storygan.clevr_data import generate_clevr
from storygan.cartoon import generate_cartoon
from storygan.pororo import read_pororo, PororoSV
from storygan.training import train_preset
from storygan.runs import train_storygan, load_checkpoint, read_metrics

sys.path.insert(0, str(Path(__file__).parent))
from test_pororo import write_fixture, save_py2

torch.set_num_threads(1)
TABLES = ('img_cache4.npy', 'following_cache4.npy', 'train_seen_unseen_ids.npy', 'labels.npy', 'descriptions.npy', 'descriptions_vec.npy')
SMALL = ['--steps', '1', '--story-bs', '4', '--image-bs', '8']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return generate_clevr(tmp_path_factory.mktemp('d') / 'clevr', n_train=16, n_test=4, size=32, seed=0, workers=1, progress=False)


@pytest.fixture(scope='module')
def pororo(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp('p') / 'pororo')


def cli_error(argv, capsys) -> str:
    "stderr of a command that fails with exit status 2 and no traceback"
    with pytest.raises(SystemExit) as e: main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'Traceback' not in err, err
    return err


class Touch:
    "A pickle payload: unpickling it creates a file"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))

class System:
    "A pickle payload that runs a shell command"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


# 1. pickles from data files never run

@pytest.mark.parametrize('table', TABLES)
def test_a_payload_in_any_table_never_runs(pororo, tmp_path, capsys, table):
    d = tmp_path / 'copy'; shutil.copytree(pororo, d)
    marker = tmp_path / 'ran'
    obj = np.empty(1, dtype=object); obj[0] = Touch(marker)
    if table.startswith('desc') or table == 'labels.npy': save_py2(d / table, {'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep1/0': System(marker)})
    else: np.save(d / table, obj, allow_pickle=True)
    with pytest.raises(ValueError, match=f'{table} holds a pickled .*refused, and nothing in the file was run'): read_pororo(d)
    err = cli_error(['train', '--data', d, '--out', tmp_path / 'run', '--steps', '1', '--story-bs', '2', '--image-bs', '4'], capsys)
    assert table in err and 'refused' in err
    assert not marker.exists()


def test_python2_tables_still_load(pororo):
    "The fixture's tables are pickled the way the Python-2 originals are (protocol 2, latin-1 strings)"
    tab = read_pororo(pororo)
    assert len(tab.ids) == 14 and tab.labels.shape == (14, 9) and len(PororoSV(pororo, 'train')) == 4


def test_the_cartoon_set_reads_with_pickles_refused(tmp_path, monkeypatch):
    a = generate_cartoon(tmp_path / 'c', 8, 2, 2, size=16, clips_per_episode=8, seed=0)
    def no_pickles(*args, **kw): raise AssertionError('a pickle was read')
    import storygan.pororo
    monkeypatch.setattr(storygan.pororo._TableUnpickler, 'load', no_pickles)
    monkeypatch.setattr(pickle, 'load', no_pickles)
    tab = read_pororo(a)
    assert len(tab.ids) > 0 and PororoSV(a, 'test')[0]['images'].shape == (5, 3, 16, 16)


# 2. folders and files the tool owns

def test_clevr_keeps_the_users_splits(tmp_path, capsys):
    out = tmp_path / 'set'
    for s in ('train', 'test'): (out / s).mkdir(parents=True); (out / s / 'mine.npy').write_bytes(b'the user\'s own ' + s.encode())
    args = ['clevr', '--out', out, '--train', '4', '--test', '0', '--size', '16', '--workers', '1', '--quiet']
    assert 'holds files this tool did not write (test, train)' in cli_error(args, capsys)
    assert 'was not written by this tool: move it away' in cli_error(args + ['--overwrite'], capsys)
    assert sorted(p.read_bytes() for p in out.rglob('mine.npy')) == [b"the user's own test", b"the user's own train"]


def test_clevr_over_a_cartoon_set_and_back(tmp_path, capsys):
    out = tmp_path / 'set'
    generate_cartoon(out, 4, 1, 1, size=16, clips_per_episode=8)
    (out / 'Cartoon_drawings').mkdir(); (out / 'Cartoon_drawings' / 'a.png').write_bytes(b'drawn by hand')
    assert 'was written by `storygan cartoon` (pororo-sv)' in cli_error(['clevr', '--out', out, '--train', '4', '--test', '2', '--size', '16'], capsys)
    assert main(['clevr', '--out', out, '--train', '4', '--test', '2', '--size', '16', '--workers', '1', '--quiet', '--overwrite']) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith('.')) == ['Cartoon_drawings', 'info.json', 'test', 'train']
    assert (out / 'Cartoon_drawings' / 'a.png').read_bytes() == b'drawn by hand'
    assert 'was written by `storygan clevr`' in cli_error(['cartoon', '--out', out, '--train', '4', '--val', '1', '--test', '1', '--size', '16'], capsys)


def test_one_writer_per_dataset_folder(tmp_path, capsys):
    out = tmp_path / 'set'; out.mkdir()
    with FolderLock(out, '--out', 'another writer'):
        assert f'--out {out} is in use by another writer (pid {os.getpid()})' in cli_error(['clevr', '--out', out, '--train', '4', '--test', '0', '--size', '16'], capsys)
        assert 'is in use by another writer' in cli_error(['cartoon', '--out', out, '--train', '4', '--val', '0', '--test', '0', '--size', '16'], capsys)
    assert not (out / 'info.json').exists()


def test_train_owns_its_run_folder(data, tmp_path, capsys):
    mine = tmp_path / 'mine'; mine.mkdir(); (mine / 'notes.txt').write_text('keep')
    assert 'holds files this tool did not write (notes.txt)' in cli_error(['train', '--data', data, '--out', mine, *SMALL], capsys)
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, *SMALL, '--sample-every', '1']) == 0
    claim_file(run / 'evaluation.json', 'evaluate', 'evaluation'); (run / 'evaluation.json').write_text('{}')   # another command's file
    (run / 'my_notes.txt').write_text('keep')                                                                # and the user's
    assert main(['train', '--data', data, '--out', run, '--steps', '2', '--story-bs', '4', '--image-bs', '8', '--resume']) == 0
    assert 'already holds a run' in cli_error(['train', '--data', data, '--out', run, *SMALL], capsys)
    assert main(['train', '--data', data, '--out', run, *SMALL, '--sample-every', '0', '--overwrite']) == 0
    assert load_checkpoint(run)['step'] == 1 and sorted(q.name for q in (run / 'samples').iterdir()) == ['step_000001.png']   # the old run's step 2 went
    assert (run / 'my_notes.txt').read_text() == 'keep' and (run / 'evaluation.json').exists()
    # a quickstart never takes over a run `storygan train` wrote
    with pytest.raises(ValueError, match='was written by `storygan train` \\(run\\)'):
        train_storygan(data, run, tcfg=train_preset('tiny', steps=1, story_bs=4, image_bs=8), command='quickstart', restart=True)


def test_a_run_of_an_older_version_still_resumes(data, tmp_path):
    run = tmp_path / 'old'
    train_storygan(data, run, tcfg=train_preset('tiny', steps=1, story_bs=4, image_bs=8), progress=False)
    (run / MANIFEST).unlink()                                         # written before runs had a manifest
    assert train_storygan(data, run, tcfg=train_preset('tiny', steps=2, story_bs=4, image_bs=8), resume=True, progress=False).step == 2


def test_sample_and_inputs(data, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, *SMALL]) == 0
    photo = tmp_path / 'photo.png'; photo.write_bytes(b'the user\'s photo')
    args = ['sample', '--ckpt', run / 'checkpoint.pt', '--index', '0', '--out']
    assert 'exists and was not written by `storygan sample`' in cli_error(args + [photo], capsys)
    assert photo.read_bytes() == b"the user's photo"
    assert main(args + [tmp_path / 'mine.png']) == 0 and main(args + [tmp_path / 'mine.png']) == 0      # its own picture, again
    assert main(args + [photo, '--overwrite']) == 0 and photo.read_bytes() != b"the user's photo"
    # what `evaluate --out` uses: the checkpoint and the data are never an output, even with overwrite
    ck = run / 'checkpoint.pt'
    for target in (ck, data / 'info.json'):
        with pytest.raises(ValueError, match='inputs are never overwritten'):
            claim_file(target, 'evaluate', 'evaluation', inputs=[ck, data], overwrite=True)
    assert load_checkpoint(ck)['step'] == 1 and json.loads((data / 'info.json').read_text())['T'] == 4


def test_links_in_a_run_folder_are_not_followed(data, tmp_path):
    run, outside = tmp_path / 'run', tmp_path / 'outside'
    outside.mkdir()
    tc = lambda n: train_preset('tiny', steps=n, story_bs=4, image_bs=8)
    train_storygan(data, run, tcfg=tc(1), progress=False, sample_every=1, ckpt_every=1)
    names = {'config.json': 'c', f'.checkpoint.pt.{os.getpid()}.tmp': 't', 'samples/step_000002.png': 's'}
    for name, o in names.items():
        (outside / o).write_text('the user\'s file'); (run / name).unlink(missing_ok=True); (run / name).symlink_to(outside / o)
    train_storygan(data, run, tcfg=tc(2), resume=True, progress=False, sample_every=1, ckpt_every=1)
    assert all((outside / o).read_text() == "the user's file" for o in names.values())
    assert [r['step'] for r in read_metrics(run)] == [1, 2] and load_checkpoint(run)['step'] == 2
    (outside / 'm').write_text('{"step": 1}\n'); (run / 'metrics.jsonl').unlink(); (run / 'metrics.jsonl').symlink_to(outside / 'm')
    with pytest.raises(ValueError, match='metrics.jsonl is a symbolic link'): train_storygan(data, run, tcfg=tc(3), resume=True, progress=False, sample_every=1, ckpt_every=1)
    assert (outside / 'm').read_text() == '{"step": 1}\n'


# 3. every way a run is asked to stop saves it

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_a_checkpoint(data, tmp_path, sig):
    run = tmp_path / 'run'
    p = subprocess.Popen([sys.executable, '-m', 'storygan', 'train', '--data', str(data), '--out', str(run), '--steps', '100000',
                          '--story-bs', '4', '--image-bs', '8', '--sample-every', '0', '--ckpt-every', '0'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    t0 = time.time()
    while not ((run / 'metrics.jsonl').exists() and (run / 'metrics.jsonl').read_text().count('\n') >= 2):
        assert time.time() - t0 < 120 and p.poll() is None, p.communicate()
        time.sleep(0.2)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err
    step = load_checkpoint(run)['step']
    assert f'{signal.Signals(sig).name}: stopped after iteration {step}: checkpoint saved' in err and 'Traceback' not in err
    assert step >= 2 and [r['step'] for r in read_metrics(run)][-1] in (step, step + 1)    # within one iteration of the log


# 4. errors by class

@pytest.mark.parametrize('argv, message', [
    (['clevr', '--out', '{tmp}/c', '--size', '100000'], "argument --size: must be an integer >= 16 and <= 1024, got '100000'"),
    (['clevr', '--out', '{tmp}/c', '--train', '100000000', '--size', '1024'], 'needs about'),
    (['sample', '--ckpt', '{tmp}/x.pt', '--out', '{tmp}/x.png', '--index', '0', '--n', '100000000'], "argument --n: must be an integer >= 1 and <= 10000"),
    (['sample', '--ckpt', '{tmp}/x.pt', '--out', '{tmp}/x.png', '--index', '0', '--scale', '-5'], "argument --scale: must be an integer >= 1 and <= 64, got '-5'"),
    (['bench-train', '--iters', '0'], "argument --iters: must be an integer >= 1"),
    (['train', '--data', '{tmp}', '--out', '{tmp}/r', '--lr', 'inf'], "argument --lr: must be a finite number > 0, got 'inf'"),
    (['train', '--data', '{tmp}', '--out', '{tmp}/r', '--ema', 'nan'], "argument --ema: must be a finite number >= 0 and < 1, got 'nan'"),
    (['cartoon', '--out', '{tmp}/c', '--train', '1000000000000'], 'needs about'),
])
def test_numbers_are_checked_where_parsed(tmp_path, capsys, argv, message):
    assert message in cli_error([a.format(tmp=tmp_path) for a in argv], capsys)


def test_data_files_name_themselves(data, tmp_path, capsys):
    bad = tmp_path / 'bad'; shutil.copytree(data, bad)
    info = json.loads((data / 'info.json').read_text())
    (bad / 'info.json').write_text(json.dumps({**info, 'T': '4'}))
    assert f"{bad / 'info.json'}: T, image_size, text_dim and label_dim must be positive integers, got T='4'" in cli_error(['train', '--data', bad, '--out', tmp_path / 'r', *SMALL], capsys)
    (bad / 'info.json').write_text(json.dumps(info)); (bad / 'train' / 'sentences.json').write_bytes(b'[["\xff"]]')
    assert f"{bad / 'train' / 'sentences.json'} is not UTF-8 text" in cli_error(['train', '--data', bad, '--out', tmp_path / 'r', *SMALL], capsys)
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, *SMALL]) == 0
    (run / 'metrics.jsonl').write_text('{"step": "one"}\n')
    err = cli_error(['train', '--data', data, '--out', run, '--steps', '2', '--story-bs', '4', '--image-bs', '8', '--resume'], capsys)
    assert f"{run / 'metrics.jsonl'}: unexpected content" in err
    cart = generate_cartoon(tmp_path / 'cart', 4, 1, 1, size=16, clips_per_episode=8); (cart / 'source.json').write_text('[1')
    assert f"{cart / 'source.json'} is not valid JSON" in cli_error(['train', '--data', cart, '--out', tmp_path / 'r2', *SMALL], capsys)


def test_the_resume_diff_is_printed_whole(data, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, *SMALL]) == 0
    err = cli_error(['train', '--data', data, '--out', run, '--steps', '2', '--story-bs', '4', '--image-bs', '8', '--lr', '1e-3', '--g-steps', '3', '--resume'], capsys)
    assert err.startswith('storygan train: error: the checkpoint was written with a different configuration:\n')
    assert 'train.lr: checkpoint 0.0002 vs now 0.001' in err and 'train.g_steps: checkpoint' in err


def test_a_planted_manifest_deletes_nothing_outside(tmp_path, capsys):
    out, precious = tmp_path / 'set', tmp_path / 'precious.txt'
    out.mkdir(); precious.write_text('keep')
    (out / MANIFEST).write_text(json.dumps(dict(command='cartoon', kind='pororo-sv', files={'../precious.txt': ['cartoon', 'pororo-sv'],
                                                                                            str(precious): ['cartoon', 'pororo-sv']})))
    assert main(['clevr', '--out', out, '--train', '4', '--test', '0', '--size', '16', '--workers', '1', '--quiet', '--overwrite']) == 0
    assert precious.read_text() == 'keep'


def test_evaluate_never_overwrites_an_input_or_a_users_file(data, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(['train', '--data', data, '--out', run, *SMALL]) == 0
    ck, before = run / 'checkpoint.pt', (run / 'checkpoint.pt').read_bytes()
    note = tmp_path / 'note.txt'; note.write_text('mine')
    (tmp_path / 'outside.json').write_text('outside'); (tmp_path / 'link.json').symlink_to(tmp_path / 'outside.json')
    base = ['evaluate', '--ckpt', ck, '--n', '2']
    for out, message in ((ck, 'inputs are never overwritten'), (data / 'info.json', 'inputs are never overwritten'),
                         (tmp_path / 'link.json', 'symbolic link')):                     # refused even with --overwrite
        assert message in cli_error(base + ['--out', out], capsys) and message in cli_error(base + ['--out', out, '--overwrite'], capsys)
    assert 'exists and was not written by `storygan evaluate`' in cli_error(base + ['--out', note], capsys)
    assert ck.read_bytes() == before and json.loads((data / 'info.json').read_text())['T'] == 4 and (tmp_path / 'outside.json').read_text() == 'outside'
    assert note.read_text() == 'mine'
    assert main(base + ['--out', note, '--overwrite']) == 0 and 'judge' in json.loads(note.read_text())   # the user asked for it
    assert '--classifier nowhere.pt: no such file' in cli_error(base + ['--classifier', 'nowhere.pt'], capsys)
    assert main(base + ['--out', tmp_path / 'e.json']) == 0 and main(base + ['--out', tmp_path / 'e.json']) == 0    # its own file, again
    res = json.loads((tmp_path / 'e.json').read_text())                                                          # strict JSON: no NaN
    assert res['n_stories'] == 2 and 'judge' in res and 'probes' in res


def test_quickstart_owns_its_folder(tmp_path, capsys):
    out = tmp_path / 'qs'; out.mkdir(); (out / 'notes.txt').write_text('keep')
    args = ['quickstart', '--out', out, '--iterations', '2', '--train-stories', '8', '--test-stories', '2', '--workers', '1']
    assert 'holds files this tool did not write (notes.txt)' in cli_error(args, capsys)
    run = tmp_path / 'train_run'
    assert main(['quickstart', '--out', tmp_path / 'q2', *args[3:]]) == 0 and main(['quickstart', '--out', tmp_path / 'q2', *args[3:]]) == 0   # again: replaced
    assert (tmp_path / 'q2' / 'quickstart.json').exists() and load_checkpoint(tmp_path / 'q2' / 'run')['step'] == 2
    assert main(['train', '--data', tmp_path / 'q2' / 'data', '--out', run, *SMALL]) == 0
    shutil.move(run, tmp_path / 'q3'); (tmp_path / 'q3').rename(tmp_path / 'q3_run')
    q3 = tmp_path / 'q3'; q3.mkdir(); shutil.move(tmp_path / 'q3_run', q3 / 'run')   # a `train` run where the quickstart puts its own
    err = cli_error(['quickstart', '--out', q3, *args[3:]], capsys)
    assert 'holds files this tool did not write (run)' in err or 'was written by `storygan train`' in err, err
    assert load_checkpoint(q3 / 'run')['step'] == 1
