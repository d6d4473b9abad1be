"FreeAVS: toy generator, writer determinism, validator, on-the-fly items vs the written copy. No Debian media needed."
import csv, hashlib, json
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

from avss_nb.freeavs import (ToyAVS, ToyMedia, BuildPlan, SceneDataset, build_dataset, make_toy_dataset, validate_dataset,
                             read_wav, write_wav, gt_frames, SUBSET_FRAMES, METADATA_COLUMNS)
from avss_nb.labels import PALETTE, IGNORE_INDEX, CLASS_INDEX
from avss_nb.audio import SAMPLE_RATE, clip_examples

PLAN = BuildPlan('t', {'v1s': (3, 1, 2), 'v1m': (1, 1, 2), 'v2': (1, 1, 2)}, 48)


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('freeavs')/'toy'
    build_dataset(ToyMedia(), root, PLAN, seed=3, verbose=False)
    return root


def test_layout_and_validator(toy_root):
    assert validate_dataset(toy_root) == []
    rows = list(csv.DictReader(open(toy_root/'metadata.csv')))
    assert tuple(rows[0]) == METADATA_COLUMNS
    assert len(rows) == sum(sum(c) for c in PLAN.counts.values())
    for row in rows:
        v, T = toy_root/row['label']/row['uid'], SUBSET_FRAMES[row['label']]
        assert len(list((v/'frames').glob('*.jpg'))) == T
        assert len(list((v/'labels_semantic').glob('*.png'))) == len(gt_frames(row['label'], row['split']))
        audio, sr = read_wav(v/'audio.wav')
        assert sr == 16000 and audio.shape == (T * 16000,)
    assert json.loads((toy_root/'label2idx.json').read_text())['background'] == 1


def test_same_seed_byte_identical(toy_root, tmp_path):
    again = tmp_path/'again'
    build_dataset(ToyMedia(), again, PLAN, seed=3, workers=2, verbose=False)   # worker count must not matter
    first, second = _digest(toy_root), _digest(again)
    first.pop('stats.json'); second.pop('stats.json')                          # holds nothing time-dependent, but be safe
    assert first == second
    other = tmp_path/'other'
    build_dataset(ToyMedia(), other, PLAN, seed=4, verbose=False)
    assert _digest(other)['metadata.csv'] != first['metadata.csv'] or _digest(other) != first


def test_validator_catches_problems(toy_root, tmp_path):
    import shutil
    root = tmp_path/'broken'; shutil.copytree(toy_root, root)
    rows = list(csv.DictReader(open(root/'metadata.csv')))
    v2 = next(r for r in rows if r['label'] == 'v2' and r['split'] == 'test')
    vdir = root/'v2'/v2['uid']
    (vdir/'frames'/'9.jpg').unlink()                                           # missing frame
    sem = np.asarray(Image.open(vdir/'labels_semantic'/'0.png')).copy()
    sem[0, 0] = (sem[0, 0] + 1) % 71; Image.fromarray(sem).save(vdir/'labels_semantic'/'0.png')  # rgb/semantic disagree
    # a sounding second made silent
    audio, _ = read_wav(vdir/'audio.wav'); lab = [np.asarray(Image.open(vdir/'labels_semantic'/f'{t}.png')) for t in range(10)]
    t_snd = next(t for t in range(10) if lab[t].any())
    audio = audio.copy(); audio[t_snd * 16000:(t_snd + 1) * 16000] = 0; write_wav(vdir/'audio.wav', audio)
    problems = '\n'.join(validate_dataset(root))
    assert 'frames: 9 frames' in problems
    assert 'does not match' in problems
    assert f'second {t_snd} is labelled sounding' in problems


def test_toy_items_contract():
    ds = ToyAVS('v1m', 'test', n_videos=3, size=64, seed=0)
    it = ds[0]
    assert it['frames'].shape == (5, 3, 64, 64) and it['frames'].dtype == torch.float32
    assert it['target'].shape == (5, 64, 64) and it['target'].dtype == torch.int64
    assert it['has_gt'].dtype == torch.bool and it['has_gt'].all()
    assert it['audio'].shape == (5, 96, 64) and it['audio'].dtype == torch.float32
    assert it['subset'] == 'v1m' and isinstance(it['id'], str)
    # two toy datasets with the same seed agree; binary targets are the sounding mask
    again = ToyAVS('v1m', 'test', n_videos=3, size=64, seed=0, binary=True)[0]
    assert torch.equal(again['frames'], it['frames'])
    assert torch.equal(again['target'], (it['target'] > 0).long())
    train = ToyAVS('v1s', 'train', n_videos=2)[1]
    assert train['has_gt'].tolist() == [True, False, False, False, False] and (train['target'][1:] == IGNORE_INDEX).all()


def test_on_the_fly_matches_disk(toy_root):
    "SceneDataset items equal what AVSBenchSemantic reads back from the written files, for every subset and split."
    from avss_nb.data import AVSBenchSemantic
    for sub, counts in PLAN.counts.items():
        for split, n in zip(('train', 'val', 'test'), counts):
            disk = AVSBenchSemantic(toy_root, sub, split, size=40)
            fly = SceneDataset(ToyMedia(), sub, split, n, size=40, seed=3, render_size=PLAN.size)
            assert disk.video_ids == [s.uid for s in fly.scenes]
            for i in range(n):
                a, b = disk[i], fly[i]
                for k in ('frames', 'target', 'has_gt', 'audio'): assert torch.equal(a[k], b[k]), (sub, split, i, k)


def test_toy_is_fast():
    import time
    t0 = time.time()
    ds = ToyAVS('v2', 'train', n_videos=12, size=64)
    for i in range(len(ds)): ds[i]
    assert time.time() - t0 < 5   # generous: ~0.5 s on the 2-core dev machine
