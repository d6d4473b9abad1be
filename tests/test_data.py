"AVSBench readers read the fixture datasets back exactly; every bad input names its file."
import json, pickle, os, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from avss_nb.data import (AVSBenchObject, AVSBenchSemantic, AVSBenchError, collate_items, bench_loader,
                          IMAGENET_MEAN, IMAGENET_STD)
from avsbench_fixtures import write_object, write_semantic

MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def check_item(item, exp, vid):
    "Frames, target, has_gt and audio exactly as written."
    T, H, W, _ = exp.frames.shape
    assert item['id'] == vid and item['subset'] == exp.subset and item['category'] == exp.category
    frames = item['frames'].numpy()
    assert frames.shape == (T, 3, H, W) and frames.dtype == np.float32
    normalised = (exp.frames.astype(np.float64) / 255 - MEAN) / STD                      # [T,H,W,3]
    assert np.abs(frames.transpose(0, 2, 3, 1) - normalised).max() < 1e-5
    pixels = np.round((frames.transpose(0, 2, 3, 1) * STD + MEAN) * 255).astype(np.int64)
    assert np.array_equal(pixels, exp.frames)                                             # pixel-exact
    assert item['target'].dtype == torch.int64 and np.array_equal(item['target'].numpy(), exp.target)
    assert item['has_gt'].dtype == torch.bool and item['has_gt'].tolist() == exp.has_gt
    assert item['audio'].shape == (T, 96, 64) and item['audio'].dtype == torch.float32
    assert np.abs(item['audio'].numpy() - exp.audio).max() <= 1e-3


@pytest.fixture(scope='module')
def object_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('object')
    exp = write_object(root, 's4', {'train': [('s4a', 'dog'), ('s4b', 'car')], 'test': [('s4c', 'dog')]}, seed=1)
    exp |= write_object(root, 'ms3', {'train': ['m1'], 'val': ['m2']}, seed=2, pkl_format='torch')
    return root, exp


@pytest.fixture(scope='module')
def semantic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('semantic')
    exp = write_semantic(root, [dict(uid='s_tr', label='v1s', split='train'),
                                dict(uid='s_te', label='v1s', split='test', labels='semantic'),
                                dict(uid='m_tr', label='v1m', split='train', labels='semantic', audio_seconds=4.5),
                                dict(uid='v_tr', label='v2', split='train'),
                                dict(uid='v_te', label='v2', split='test', frame_size=(20, 14), label_size=(20, 14))],
                         seed=3)
    return root, exp


@pytest.mark.parametrize('subset,split', [('s4', 'train'), ('s4', 'test'), ('ms3', 'train'), ('ms3', 'val')])
def test_object_reads_back_exactly(object_root, subset, split):
    root, exp = object_root
    ds = AVSBenchObject(root, subset, split, size=None)
    ids = sorted(v for (s, v), e in exp.items() if s == split and e.subset == subset)
    assert sorted(ds.video_ids) == ids
    for i, vid in enumerate(ds.video_ids): check_item(ds[i], exp[(split, vid)], vid)
    if subset == 's4' and split == 'train':                     # S4 train: ground truth on frame 1 only
        assert ds[0]['has_gt'].tolist() == [True, False, False, False, False]
        assert (ds[0]['target'][1:] == 255).all()


@pytest.mark.parametrize('subset,split', [('v1s', 'train'), ('v1s', 'test'), ('v1m', 'train'), ('v2', 'train'), ('v2', 'test')])
def test_semantic_reads_back_exactly(semantic_root, subset, split):
    root, exp = semantic_root
    ds = AVSBenchSemantic(root, subset, split, size=None)
    assert len(ds) == 1
    vid = ds.video_ids[0]
    check_item(ds[0], exp[(split, vid)], vid)


def test_semantic_subset_list_binary_and_padded_collate(semantic_root):
    root, exp = semantic_root
    ds = AVSBenchSemantic(root, ['v1s', 'v1m', 'v2'], 'train', size=None, binary=True)
    assert sorted(ds.video_ids) == ['m_tr', 's_tr', 'v_tr'] and sorted(ds.num_frames) == [5, 5, 10]
    items = [ds[i] for i in range(len(ds))]
    for item in items:
        t = exp[('train', item['id'])].target
        assert np.array_equal(item['target'].numpy(), np.where(t == 255, 255, (t > 0).astype(np.int64)))
    with pytest.raises(ValueError, match='different frame counts'): collate_items(items)
    batch = collate_items(items, pad=True)
    assert batch['frames'].shape == (3, 10, 3, 12, 16) and batch['valid'].sum().item() == 20
    assert batch['id'] == [it['id'] for it in items]


def test_resize_eval_and_train(semantic_root):
    root, exp = semantic_root
    e = exp[('test', 'v_te')]                                                  # stored 20x14
    item = AVSBenchSemantic(root, 'v2', 'test', size=8)[0]
    assert item['frames'].shape == (10, 3, 8, 8) and item['target'].shape == (10, 8, 8)
    want = np.asarray(Image.fromarray(e.target[3].astype(np.uint8)).resize((8, 8), Image.NEAREST))
    assert np.array_equal(item['target'][3].numpy(), want)
    want_px = np.asarray(Image.fromarray(e.frames[0]).resize((8, 8), Image.BILINEAR)).astype(np.float64)
    got_px = (item['frames'][0].numpy().transpose(1, 2, 0) * STD + MEAN) * 255
    assert np.abs(got_px - want_px).max() < 1e-3
    crop = AVSBenchSemantic(root, 'v2', 'test', size=14, train_transform=True)[0]   # short side 14: centre crop 3..17
    assert np.array_equal(crop['target'].numpy(), e.target[:, :, 3:17])


def test_transform_hook_adds_field(semantic_root):
    root, _ = semantic_root
    def add_prior(item): return {**item, 'prior': torch.full(item['target'].shape, 0.5)}
    ds = AVSBenchSemantic(root, 'v2', 'train', size=None, transform=add_prior)
    batch = collate_items([ds[0], ds[0]])
    assert batch['prior'].shape == (2, 10, 12, 16)


def test_loader_workers_and_distributed_sampler(object_root):
    root, _ = object_root
    ds = AVSBenchObject(root, 's4', 'train', size=None)
    shards = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == [0, 1]
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate_items)))
    assert batch['frames'].shape == (2, 5, 3, 12, 16) and batch['has_gt'].shape == (2, 5)
    results = bench_loader(ds, workers=(0,), batch_size=1)
    assert results[0]['frames_timed'] == 5


# ---------------------------------------------------------------- bad input: each error names the file

def fresh_semantic(tmp_path, **video):
    exp = write_semantic(tmp_path, [dict(uid='bad', label=video.pop('label', 'v1m'), split='val', **video)], seed=5)
    return exp[('val', 'bad')]


def fresh_object(tmp_path, subset='s4'):
    names = {'val': [('bad', 'dog')]} if subset == 's4' else {'val': ['bad']}
    return next(iter(write_object(tmp_path, subset, names, seed=6).values()))


def expect_error(make, path, *more):
    with pytest.raises(AVSBenchError) as info: make()
    message = str(info.value)
    assert str(path) in message, message
    for text in more: assert text in message, message
    return message


def test_missing_frame(tmp_path):
    e = fresh_object(tmp_path); e.frame_files[2].unlink()
    expect_error(lambda: AVSBenchObject(tmp_path, 's4', 'val'), e.frame_files[2], 'not found', 'video bad')


def test_corrupt_frame(tmp_path):
    e = fresh_semantic(tmp_path); e.frame_files[1].write_bytes(b'not a jpeg')
    ds = AVSBenchSemantic(tmp_path, 'v1m', 'val')
    expect_error(lambda: ds[0], e.frame_files[1], 'cannot read image', 'video bad')


def test_missing_mask(tmp_path):
    e = fresh_object(tmp_path, 'ms3'); e.mask_files[4].unlink()
    expect_error(lambda: AVSBenchObject(tmp_path, 'ms3', 'val'), e.mask_files[4], 'not found')


def test_corrupt_mask(tmp_path):
    e = fresh_semantic(tmp_path, labels='semantic'); e.mask_files[0].write_bytes(b'\x89PNG garbage')
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val')[0], e.mask_files[0], 'cannot read image')


def test_unknown_palette_colour(tmp_path):
    e = fresh_semantic(tmp_path)
    rgb = np.asarray(Image.open(e.mask_files[2]).convert('RGB')).copy(); rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(e.mask_files[2])
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val')[0], e.mask_files[2], '(1, 2, 3)', 'video bad')


def test_class_id_out_of_range(tmp_path):
    e = fresh_semantic(tmp_path, labels='semantic')
    Image.fromarray(np.full((12, 16), 99, np.uint8), 'L').save(e.mask_files[0])
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val')[0], e.mask_files[0], '[99]')


def test_missing_wav(tmp_path):
    e = fresh_semantic(tmp_path); e.audio_file.unlink()
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val'), e.audio_file, 'not found')


def test_corrupt_wav(tmp_path):
    e = fresh_semantic(tmp_path); e.audio_file.write_bytes(b'RIFF....WAVEjunk')
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val')[0], e.audio_file, 'cannot read audio')


def test_wav_shorter_than_expected(tmp_path):
    e = fresh_semantic(tmp_path, audio_seconds=2.0)
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val')[0], e.audio_file, 'shorter than expected')


def test_missing_pkl(tmp_path):
    e = fresh_object(tmp_path); e.audio_file.unlink()
    expect_error(lambda: AVSBenchObject(tmp_path, 's4', 'val'), e.audio_file, 'not found')


def test_corrupt_pkl(tmp_path):
    e = fresh_object(tmp_path); e.audio_file.write_bytes(b'\x80\x04garbage')
    expect_error(lambda: AVSBenchObject(tmp_path, 's4', 'val')[0], e.audio_file, 'cannot read log-mel pickle')


def test_pkl_with_foreign_global_is_refused(tmp_path):
    e = fresh_object(tmp_path)
    class Payload:
        def __reduce__(self): return (os.system, ('echo should-not-run',))
    with open(e.audio_file, 'wb') as f: pickle.dump(Payload(), f)
    expect_error(lambda: AVSBenchObject(tmp_path, 's4', 'val')[0], e.audio_file, 'refused global', 'system')


def test_pkl_shorter_than_expected(tmp_path):
    e = fresh_object(tmp_path)
    with open(e.audio_file, 'wb') as f: pickle.dump(torch.zeros(3, 1, 96, 64), f)
    expect_error(lambda: AVSBenchObject(tmp_path, 's4', 'val')[0], e.audio_file, 'shorter than expected')


def test_wrong_number_of_frames(tmp_path):
    e = fresh_semantic(tmp_path, label='v2')
    Image.new('RGB', (16, 12)).save(e.frame_files[0].parent / '10.jpg')
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v2', 'val'), e.frame_files[0].parent, 'wrong number of frames: 11')
    e = fresh_object(tmp_path / 'obj'); Image.new('RGB', (16, 12)).save(e.frame_files[0].parent / 'bad_6.png')
    expect_error(lambda: AVSBenchObject(tmp_path / 'obj', 's4', 'val'), e.frame_files[0].parent, 'wrong number of frames: 6')


def test_empty_split(tmp_path):
    e = fresh_semantic(tmp_path)
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'train'), e.csv_file, 'empty split')
    o = fresh_object(tmp_path / 'obj')
    expect_error(lambda: AVSBenchObject(tmp_path / 'obj', 's4', 'train'), o.csv_file, 'empty split')


def test_csv_without_needed_columns(tmp_path):
    e = fresh_semantic(tmp_path)
    e.csv_file.write_text('vid,uid,split\n0,bad,val\n')
    expect_error(lambda: AVSBenchSemantic(tmp_path, 'v1m', 'val'), e.csv_file, "missing column(s) ['label']")
    o = fresh_object(tmp_path / 'obj')
    o.csv_file.write_text('name,split\nbad,val\n')
    expect_error(lambda: AVSBenchObject(tmp_path / 'obj', 's4', 'val'), o.csv_file, 'needs 4 columns')


def test_on_error_report_skips_and_lists(tmp_path):
    exp = write_semantic(tmp_path, [dict(uid='good', label='v2', split='val'), dict(uid='broken', label='v2', split='val'),
                                    dict(uid='short', label='v2', split='val', audio_seconds=3.0)], seed=7)
    exp[('val', 'broken')].frame_files[4].write_bytes(b'junk')
    report = tmp_path / 'problems.json'
    with pytest.warns(UserWarning, match='skipped 2 video'):
        ds = AVSBenchSemantic(tmp_path, 'v2', 'val', on_error='report', report_path=report)
    assert ds.video_ids == ['good']
    listed = json.loads(report.read_text())['problems']
    assert {p['video'] for p in listed} == {'broken', 'short'}
    assert {p['file'] for p in listed} == {str(exp[('val', 'broken')].frame_files[4]), str(exp[('val', 'short')].audio_file)}


def test_bench_data_cli(object_root, capsys):
    from avss_nb.cli import build_parser
    from avss_nb.config import get_settings
    root, _ = object_root
    args = build_parser(['avss_nb.data']).parse_args(['bench', 'data', '--root', str(root), '--subset', 'ms3',
                                                     '--split', 'train', '--size', '16', '--workers', '0'])
    args.settings = get_settings(); args.func(args)
    out = capsys.readouterr().out
    assert 'ms3-train' in out and 'workers=0:' in out and 'frames/s' in out and 'nan' not in out
