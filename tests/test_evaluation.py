"""What notebook 15's cells cannot test well: weights files of the wrong layout given to the command line, and the FID
reference cache on disk (another split, a stale file, another network). The pipeline itself (the FID Inception, the
64 -> 299 resize, the classifier layouts, micro-F1) is tested in notebook 15, the cartoon set end to end in notebook 21."""
import json, shutil

import pytest
import torch

pytest.importorskip('torch_fidelity')                       # torchmetrics' FID Inception lives in torch-fidelity

from storygan.core import main
from storygan.cartoon import generate_cartoon
from storygan.evaluation import fid_reference, fid_inception, random_weights

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "Weights files of the three layouts, random values: the FID Inception, a 9-character classifier, torchvision's ImageNet Inception"
    d = tmp_path_factory.mktemp('weights')
    return dict(fid=random_weights(d / 'fid.pth', 'fid'), clf=random_weights(d / 'clf9.pth', 'classifier'),
                imagenet=random_weights(d / 'imagenet.pth', 'imagenet'), dir=d)


@pytest.fixture(scope='module')
def fid_net(files): return fid_inception(files['fid'])


@pytest.fixture(scope='module')
def toon(tmp_path_factory):
    "A tiny cartoon set in the original Pororo-SV layout: 2 / 1 / 1 stories of 5 clips, 32-px strips"
    return generate_cartoon(tmp_path_factory.mktemp('toon') / 'toon', n_train=2, n_val=1, n_test=1, size=32, clips_per_episode=5, seed=0)


def test_reference_cache_is_keyed_by_content(files, fid_net, toon):
    ref = fid_reference(toon, files['fid'], net=fid_net)
    assert (ref['split'], ref['stories'], ref['frames'], ref['frame_index'], ref['cached']) == ('test', 1, 5, 0, False)
    again = fid_reference(toon, files['fid'], net=fid_net)
    assert again['cached'] and torch.equal(again['features'], ref['features'])
    val = fid_reference(toon, files['fid'], 'val', net=fid_net)              # another split: never the test split's cache
    assert not val['cached'] and val['key'] != ref['key'] and not torch.equal(val['features'], ref['features'])
    shutil.copy(ref['file'], val['file'])                                    # the test reference under the val reference's name
    stale = fid_reference(toon, files['fid'], 'val', net=fid_net)
    assert not stale['cached'] and torch.equal(stale['features'], val['features'])
    other = random_weights(files['dir'] / 'fid_other.pth', 'fid', seed=1)   # another network: another key
    assert fid_reference(toon, other, net=fid_net, cache=False)['key'] != ref['key']


def test_wrong_weights_files_from_the_command_line(files, toon, tmp_path, capsys):
    run = tmp_path / 'run'
    main(['train', '--data', toon, '--out', run, '--preset', 'tiny', '--steps', 2, '--story-bs', 2, '--image-bs', 4])
    seven = random_weights(files['dir'] / 'clf7.pth', 'classifier', n_labels=7)
    (files['dir'] / 'junk.pth').write_bytes(b'not a weights file')
    cases = [(['--fid-weights', files['imagenet']], "imagenet.pth is not an FID Inception weights file (it looks like torchvision's ImageNet Inception-v3: give it to --inception)"),
             (['--fid-weights', files['clf']], 'clf9.pth is not an FID Inception weights file (it looks like a character classifier of 9 labels'),
             (['--classifier', seven], 'clf7.pth is a classifier of 7 labels, the data has 9'),
             (['--classifier', files['fid']], 'fid.pth is not an Inception-v3 character classifier'),
             (['--fid-weights', files['dir'] / 'junk.pth'], 'junk.pth is not a readable weights file'),
             (['--fid-weights', files['dir'] / 'none.pth'], 'no FID Inception weights file at')]
    capsys.readouterr()
    for flags, msg in cases:
        with pytest.raises(SystemExit): main(['evaluate', '--ckpt', run / 'checkpoint.pt', *flags])
        err = capsys.readouterr().err
        assert err.startswith('storygan evaluate: error: ') and msg in err and 'Traceback' not in err, (flags, err)
    assert not (run / 'evaluation.json').exists()                             # refused before anything was judged
