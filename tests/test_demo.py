"The story editor, driven headless: its callbacks, what it draws, keep-h0, and the messages for bad checkpoints (tiny model, a few steps)."
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip('ipywidgets')
from storygan.demo import *
from storygan.sampling import story_vectors, generate_stories
from storygan.quickstart import tiny_checkpoint

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp('demo'), steps=3)

@pytest.fixture
def editor(ckpt):
    return StoryEditor(ckpt, sentences=DEMO_STORY[:3])

def test_frame_controls_stay_in_sync():
    seen = []
    fr = ClevrFrame(DEMO_STORY[0], on_change=seen.append)
    fr.material.value = 'rubber'
    assert fr.sentence == 'A large red rubber cube is added at the front left.'
    fr.places['back', 'right'].value = True
    assert fr.sentence == 'A large red rubber cube is added at the back right.' and fr.place == ('back', 'right')
    assert [b.value for b in fr.places.values()].count(True) == 1
    fr.text.value = 'a tiny shiny yellow ball in the middle'
    assert fr.obj == dict(shape='sphere', color='yellow', material='metal', size='small', row='middle', col='center')
    fr.text.value = 'a cube'                                              # cannot be read: the controls stay
    assert 'names no color' in fr.error and fr.obj['color'] == 'yellow' and 'not understood' in fr.note.value
    assert len(seen) == 4

def test_story_changes_the_frames_and_the_seed_repeats_them(editor):
    assert editor.last_error is None and editor.X.shape == (1, 4, 3, 32, 32)
    X0 = editor.X.clone()
    png0 = editor._out[0]['generated'].value
    editor.frames[0].color.value = 'blue'
    assert editor.sentences[0] == 'A large blue metal cube is added at the front left.'
    assert not torch.equal(editor.X, X0) and editor._out[0]['generated'].value != png0
    editor.frames[0].color.value = 'red'
    assert torch.equal(editor.X, X0) and editor._out[0]['generated'].value == png0
    again = StoryEditor(editor.path.value, sentences=DEMO_STORY[:3])
    assert torch.equal(again.X, X0)                                      # a new editor, the same story and seed

def test_the_editor_draws_what_storygan_sample_draws(editor):
    editor.add_frame()
    S = story_vectors(editor.sentences, editor.cfg, editor.ck)
    assert torch.equal(editor.X, generate_stories(editor.G, S, editor.seed.value))

def test_a_shorter_story_repeats_its_last_scene(editor):
    S = editor.S
    assert torch.equal(S[0, 3], S[0, 2]) and not torch.equal(S[0, 2], S[0, 1])

def test_seed_slider_and_resample(editor):
    X0, s0 = editor.X.clone(), editor.seed.value
    editor.resample.click()
    assert editor.seed.value != s0 and not torch.equal(editor.X, X0)
    editor.seed.value = s0
    assert torch.equal(editor.X, X0)

def test_keep_h0_keeps_the_story_context(editor):
    editor.keep_h0.value = True
    h0, X0 = editor.h0.clone(), editor.X.clone()
    editor.frames[2].shape.value = 'sphere'                              # frame 3 changes
    assert torch.equal(editor.h0, h0)
    assert torch.equal(editor.X[0, :2], X0[0, :2]) and not torch.equal(editor.X[0, 2], X0[0, 2])
    editor.keep_h0.value = False                                         # the context of the new story
    assert not torch.equal(editor.h0, h0) and not torch.equal(editor.X[0, :2], X0[0, :2])

def test_add_and_remove_frames(editor):
    editor.add_frame()
    assert len(editor.frames) == 4 and editor.add_button.disabled
    with pytest.raises(ValueError, match='T=4'): editor.add_frame()
    third = editor.sentences[2]
    editor._out[1]['remove'].click()                                     # the remove button of frame 2
    assert len(editor.sentences) == 3 and editor.sentences[1] == third and not editor.add_button.disabled
    assert editor.target.shape[0] == 3 and len(editor.reading) == 3
    editor.remove_frame(); editor.remove_frame()
    assert editor._out[0]['remove'].disabled
    with pytest.raises(ValueError, match='at least one'): editor.remove_frame()
    editor.add_button.click()
    assert len(editor.frames) == 2 and len(editor.grid.children) == 7 * 3   # 7 rows of a label and 2 frames

def test_probe_reading_and_page(editor, tmp_path):
    assert [len(r['objects']) for r in editor.reading] == [1, 2, 3]
    assert all('counts' in o['probe'].value for o in editor._out)
    fig = editor.sheet(tmp_path / 'page.png')
    assert (tmp_path / 'page.png').stat().st_size > 1000 and len(fig.axes) == 6

def test_a_typed_sentence_that_cannot_be_read(editor):
    X0 = editor.X.clone()
    editor.frames[1].text.value = 'A small sphere is added at the back.'
    assert 'storygan-error' in editor.message.value and 'frame 2' in editor.message.value and torch.equal(editor.X, X0)
    editor.frames[1].text.value = 'A small green rubber sphere is added at the back.'
    assert 'storygan-error' not in editor.message.value and not torch.equal(editor.X, X0)

def test_no_checkpoint_says_how_to_make_one(tmp_path):
    for ckpt in (None, tmp_path / 'nothing.pt', tmp_path):
        e = StoryEditor(ckpt)
        assert 'storygan quickstart' in e.message.value and QUICKSTART_CKPT in e.message.value, e.message.value
        assert e.G is None and e.X is None and e.target.shape == (2, 64, 64, 3) and e.last_error is None

def test_corrupt_and_wrong_kind_checkpoints(ckpt, tmp_path):
    data = ckpt.read_bytes()
    (tmp_path / 'cut.pt').write_bytes(data[:len(data) // 2])
    (tmp_path / 'text.pt').write_text('hello')
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    torch.save(dict(format='storygan-probe', state={}), tmp_path / 'probe.pt')
    ck = torch.load(ckpt, weights_only=True); del ck['models']['G']
    torch.save(ck, tmp_path / 'no_g.pt')
    for name in ('cut.pt', 'text.pt', 'list.pt', 'probe.pt', 'no_g.pt'):
        e = StoryEditor(tmp_path / name)
        assert 'storygan-error' in e.message.value and 'checkpoint' in e.message.value, (name, e.message.value)
        assert e.G is None and e.last_error is None

def test_clevr_controls_on_a_model_of_other_data(ckpt, tmp_path):
    ck = torch.load(ckpt, weights_only=True); ck['data']['source'] = 'pororo'
    torch.save(ck, tmp_path / 'other.pt')
    e = StoryEditor(tmp_path / 'other.pt', kind='clevr')
    assert 'not of CLEVR-style data' in e.message.value and e.G is None
    p = StoryEditor(tmp_path / 'other.pt')                                # its own controls: text and characters
    assert p.kind == 'pororo' and isinstance(p.frames[0], PororoFrame) and p.X is None and p.message.value

def test_missing_dataset_folder_skips_the_probe(ckpt, tmp_path):
    ck = torch.load(ckpt, weights_only=True); ck['data']['root'] = str(tmp_path / 'gone')
    torch.save(ck, tmp_path / 'moved.pt')
    e = StoryEditor(tmp_path / 'moved.pt')
    assert 'not on this machine' in e.message.value and e.probe is None and e.X is not None and e.reading is None
    assert e.last_error is None and all(o['probe'].value == '' for o in e._out)
    off = StoryEditor(ckpt, probe=False)
    assert off.probe is None and off.message.value == ''

def test_load_button_opens_another_checkpoint(ckpt, tmp_path):
    e = StoryEditor(tmp_path / 'nothing.pt')
    e.frames[0].color.value = 'purple'
    e.path.value = str(ckpt)
    e.load_button.click()
    assert e.G is not None and e.message.value == '' and e.X is not None
    assert e.sentences[0] == 'A large purple metal cube is added at the front left.'   # the story survives the load
