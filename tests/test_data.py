"Bad dataset directories and multi-process loading: what the 02_data notebook cannot test well."
import json, shutil

import numpy as np
import pytest
import torch

from storygan.clevr_data import generate_clevr
from storygan.data import StoryDataset, ImageDataset, story_loaders


@pytest.fixture(scope='module')
def clevr_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'clevr'
    generate_clevr(root, n_train=12, n_test=4, size=32, seed=3, workers=1, progress=False)
    return root


@pytest.fixture
def copy(clevr_dir, tmp_path):
    "A writable copy of the small dataset"
    d = tmp_path / 'copy'
    shutil.copytree(clevr_dir, d)
    return d


def test_reads_what_was_written(clevr_dir):
    ds = StoryDataset(clevr_dir, 'test')
    assert len(ds) == 4 and ds.T == 4 and ds.text_dim == 75 and ds.label_dim == 15
    raw = np.load(clevr_dir / 'test' / 'images.npy')
    x = ds[3]['images']
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1), torch.from_numpy(raw[3]))
    assert ds[3]['sentences'] == json.loads((clevr_dir / 'test' / 'sentences.json').read_text())[3]


def test_missing_directory_and_files(tmp_path, copy):
    with pytest.raises(FileNotFoundError, match='does not exist'): StoryDataset(tmp_path / 'absent')
    (copy / 'train' / 'sentences.json').unlink()
    with pytest.raises(FileNotFoundError, match='sentences.json is missing'): StoryDataset(copy)
    (copy / 'info.json').unlink()
    with pytest.raises(FileNotFoundError, match='info.json is missing'): StoryDataset(copy)


@pytest.mark.parametrize('name,content,message', [
    ('images.npy', b'\x93NUMPY garbage', 'corrupt'),
    ('text.npy', b'', 'corrupt'),
    ('sentences.json', b'[["half', 'not valid JSON'),
])
def test_corrupt_files(copy, name, content, message):
    (copy / 'train' / name).write_bytes(content)
    with pytest.raises(ValueError, match=message): StoryDataset(copy)


def test_truncated_npy(copy):
    p = copy / 'train' / 'images.npy'
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(ValueError, match='images.npy is corrupt'): StoryDataset(copy)


def test_lengths_disagree(copy):
    t = np.load(copy / 'train' / 'text.npy')
    np.save(copy / 'train' / 'text.npy', t[:-1])
    with pytest.raises(ValueError, match=r"disagree on the number of stories.*'text.npy': 11"): StoryDataset(copy)


def test_wrong_T(clevr_dir, copy):
    with pytest.raises(ValueError, match='expected stories of T=5 frames.*T=4'): StoryDataset(clevr_dir, T=5)
    with pytest.raises(ValueError, match='expected stories of T=5'): story_loaders(clevr_dir, 2, 2, T=5)
    s = json.loads((copy / 'train' / 'sentences.json').read_text())
    s[7] = s[7][:3]
    (copy / 'train' / 'sentences.json').write_text(json.dumps(s))
    with pytest.raises(ValueError, match='story 7 has 3 sentences, expected T=4'): StoryDataset(copy)
    lab = np.load(copy / 'train' / 'labels.npy')
    np.save(copy / 'train' / 'labels.npy', lab[:, :3])
    with pytest.raises(ValueError, match='disagree on frames per story'): StoryDataset(copy)


def test_wrong_image_shape(copy):
    p = copy / 'train' / 'images.npy'
    im = np.load(p)
    np.save(p, im[..., :2])
    with pytest.raises(ValueError, match=r'must be uint8 \(N, T, H, W, 3\)'): StoryDataset(copy)
    np.save(p, im.astype(np.float32))
    with pytest.raises(ValueError, match='must be uint8'): StoryDataset(copy)
    np.save(p, im[:, :, :, :16])
    with pytest.raises(ValueError, match='32x16 frames'): StoryDataset(copy)


def test_wrong_dims_and_nan(copy):
    t = np.load(copy / 'train' / 'text.npy')
    np.save(copy / 'train' / 'text.npy', t[..., :70])
    with pytest.raises(ValueError, match='dim 70, info.json says text_dim=75'): StoryDataset(copy)
    t[2, 1, 0] = np.nan
    np.save(copy / 'train' / 'text.npy', t)
    with pytest.raises(ValueError, match='NaN'): StoryDataset(copy)


def test_index_errors(clevr_dir):
    with pytest.raises(IndexError): StoryDataset(clevr_dir)[12]
    with pytest.raises(IndexError): ImageDataset(clevr_dir)[48]


def test_workers_give_the_same_batches(clevr_dir):
    "num_workers > 0 works (the memory map is reopened per worker) and yields the same data as in-process loading"
    a = next(iter(story_loaders(clevr_dir, 4, 6, num_workers=0, seed=5)[0]))
    story_dl, image_dl = story_loaders(clevr_dir, 4, 6, num_workers=2, seed=5)
    b, ib = next(iter(story_dl)), next(iter(image_dl))
    assert torch.equal(a['images'], b['images']) and a['sentences'] == b['sentences']
    assert ib['image'].shape == (6, 3, 32, 32) and ib['story_text'].shape == (6, 4, 75) and len(ib['sentence']) == 6
