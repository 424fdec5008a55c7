"The `storygan clevr` command end to end: files, shapes, dtypes, info.json, determinism and bad arguments."
import json

import numpy as np
import pytest

from storygan.core import main, MANIFEST
from storygan.clevr import label_names, text_names, sentences_to_vectors

FILES = ('images.npy', 'text.npy', 'labels.npy', 'sentences.json')


def run(out, *extra, seed=1):
    return main(['clevr', '--out', str(out), '--train', '8', '--test', '4', '--size', '32', '--seed', str(seed), '--quiet', *extra])


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp('clevr') / 'a'
    assert run(out) == 0
    return out


def test_files_shapes_dtypes(made):
    for split, n in (('train', 8), ('test', 4)):
        d = made / split
        assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
        images = np.load(d / 'images.npy', mmap_mode='r')
        text, labels = np.load(d / 'text.npy'), np.load(d / 'labels.npy')
        sentences = json.loads((d / 'sentences.json').read_text())
        assert images.shape == (n, 4, 32, 32, 3) and images.dtype == np.uint8
        assert text.shape == (n, 4, 75) and text.dtype == np.float32
        assert labels.shape == (n, 4, 15) and labels.dtype == np.float32
        assert len(sentences) == n and all(len(s) == 4 and all(isinstance(x, str) for x in s) for s in sentences)
        assert set(np.unique(labels)) <= {0.0, 1.0}
        # frames are not blank and each frame differs from the previous one (an object was added)
        assert (images.std(axis=(2, 3, 4)) > 5).all()
        assert all((images[:, t] != images[:, t - 1]).any() for t in range(1, 4))
        # the sentences encode the vectors' attributes exactly
        for s, v in zip(sentences, text):
            np.testing.assert_array_equal(sentences_to_vectors(s)[:, :72].reshape(4, 4, 18)[..., :15],
                                          v[:, :72].reshape(4, 4, 18)[..., :15])
    assert not [p for p in made.iterdir() if p.name.startswith('.') and p.name not in ('.lock', MANIFEST)], 'temporary files left behind'


def test_info(made):
    info = json.loads((made / 'info.json').read_text())
    assert info['format'] == 'storygan-stories' and info['version'] == 1 and info['source'] == 'clevr'
    assert (info['T'], info['image_size'], info['text_dim'], info['label_dim']) == (4, 32, 75, 15)
    assert info['label_names'] == label_names and len(info['text_names']) == 75 and info['text_names'] == text_names
    assert info['splits'] == {'train': 8, 'test': 4} and info['seed'] == 1


def test_same_seed_same_bytes_other_seed_differs(made, tmp_path):
    assert run(tmp_path / 'b', '--workers', '2') == 0      # another worker count: still identical
    assert run(tmp_path / 'c', seed=2) == 0
    for split in ('train', 'test'):
        for f in FILES:
            assert (made / split / f).read_bytes() == (tmp_path / 'b' / split / f).read_bytes(), (split, f)
        for f in ('images.npy', 'text.npy', 'sentences.json'):
            assert (made / split / f).read_bytes() != (tmp_path / 'c' / split / f).read_bytes(), (split, f)
    assert (made / 'info.json').read_bytes() == (tmp_path / 'b' / 'info.json').read_bytes()


def test_rerun_replaces_split(tmp_path):
    out = tmp_path / 'r'
    assert run(out, seed=3) == 0
    assert main(['clevr', '--out', str(out), '--train', '2', '--test', '1', '--size', '16', '--seed', '3', '--quiet']) == 0
    assert np.load(out / 'train' / 'images.npy').shape == (2, 4, 16, 16, 3)
    info = json.loads((out / 'info.json').read_text())
    assert info['splits'] == {'train': 2, 'test': 1} and info['image_size'] == 16
    assert main(['clevr', '--out', str(out), '--train', '2', '--test', '0', '--size', '16', '--quiet']) == 0
    assert not (out / 'test').exists() and json.loads((out / 'info.json').read_text())['splits'] == {'train': 2}


@pytest.mark.parametrize('args,message', [
    (['--train', '-1'], "argument --train: must be an integer >= 0, got '-1'"),
    (['--test', '-5'], "argument --test: must be an integer >= 0, got '-5'"),
    (['--train', '0', '--test', '0'], 'nothing to draw'),
    (['--size', '8'], "argument --size: must be an integer >= 16 and <= 1024, got '8'"),
    (['--seed', '-2'], "argument --seed: must be an integer >= 0 and <= 4294967295, got '-2'"),
    (['--workers', '-1'], "argument --workers: must be an integer >= 0 and <= 1024, got '-1'"),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(['clevr', '--out', str(tmp_path / 'x'), '--train', '2', '--test', '1', '--size', '16', '--quiet', *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'storygan clevr: error: ' in err and message in err      # flags out of range: argparse's usage line, then the error
    assert not (tmp_path / 'x' / 'info.json').exists()


def test_out_is_required(capsys):
    with pytest.raises(SystemExit): main(['clevr', '--train', '2'])
    assert '--out DIR is required' in capsys.readouterr().err


def test_bench_prints_frames_per_second(capsys):
    assert main(['bench-clevr', '--stories', '4', '--size', '16', '--workers', '1']) == 0
    out = capsys.readouterr().out
    assert 'frames/s' in out and '13,000 stories' in out
