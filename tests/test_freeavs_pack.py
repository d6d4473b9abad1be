"""FreeAVS media pack.

- The pack *format* (PackWriter -> PackMedia -> build -> validate -> AVSBenchSemantic) is always tested, on a
  miniature pack made from the toy media: no Debian packages needed.
- A real pack is tested only where one exists at <project>/data/freeavs_pack (made by `avss-nb freeavs pack`);
  otherwise the test is skipped with that reason.
- Extracting the pack from the Debian packages takes minutes; it runs only with AVSS_FREEAVS_PACK_TEST=1 and the
  .deb files in <project>/data/freeavs_cache/debs (skipped otherwise).
"""
import csv, hashlib, json, os
from pathlib import Path
import numpy as np
import pytest
import torch

from avss_nb.freeavs import BuildPlan, build_dataset, validate_dataset, SceneDataset, ToyMedia
from avss_nb.freeavs_media import PackMedia, write_toy_pack, make_pack, mulaw_decode, mulaw_encode, CATALOGUE
from avss_nb.labels import CLASS_INDEX

ROOT = Path(__file__).resolve().parent.parent
REAL_PACK = ROOT/'data'/'freeavs_pack'
CACHE = ROOT/'data'/'freeavs_cache'
PLAN = BuildPlan('t', {'v1s': (2, 1, 1), 'v1m': (1, 1, 1), 'v2': (1, 1, 1)}, 64)


def _digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


def test_pack_format_roundtrip(tmp_path):
    write_toy_pack(tmp_path/'pack', ToyMedia())
    media = PackMedia(tmp_path/'pack')
    dog = CLASS_INDEX['dog']
    assert not set(media.sprites(dog, 'train')) & set(media.sprites(dog, 'test'))
    assert media.sprite(media.sprites(dog, 'train')[0], 40).shape[2] == 4
    build_dataset(media, tmp_path/'ds', PLAN, seed=1, verbose=False)
    assert validate_dataset(tmp_path/'ds') == []
    assert 'synthetic (toy media)' in (tmp_path/'ds'/'ATTRIBUTION.md').read_text()


def test_stats_report_instances_per_class_and_split(tmp_path):
    "stats.json (and the manifest) count, per sounding class and split, the cut-outs and recordings a split draws from."
    write_toy_pack(tmp_path/'pack', ToyMedia())
    media = PackMedia(tmp_path/'pack')
    build_dataset(media, tmp_path/'ds', PLAN, seed=1, verbose=False)
    stats = json.loads((tmp_path/'ds'/'stats.json').read_text())
    counts, used = stats['instances'], stats['instances_used']
    assert set(counts) == set(media.manifest['classes']) and set(used) <= set(counts)
    for name, u in used.items():           # a split's videos show only what that split holds
        for s in ('train', 'val', 'test'):
            assert u['sprites'][s] <= len(media.sprites(CLASS_INDEX[name], s)) and u['clips'][s] <= len(media.clips(CLASS_INDEX[name], s)), name
    for name, c in counts.items():
        for split in ('train', 'val', 'test'):
            assert c['cutouts'][split] == len(media.sprites(CLASS_INDEX[name], split)), (name, split)
            assert c['recordings'][split] == len(media.clips(CLASS_INDEX[name], split)), (name, split)


def _same_bytes_same_splits(media):
    "Sprites with identical stored bytes (one picture under two names) must lie in the same splits."
    by = {}
    for key, e in media.manifest['sprites'].items():
        by.setdefault(hashlib.md5(media._arrays['sprite/' + key].tobytes()).hexdigest(), set()).add(tuple(e['splits']))
    return [s for s in by.values() if len(s) > 1]


def _lookalikes_across_splits(media, min_iou=0.95):
    "Sprite pairs of one class in different splits whose object masks (48 px, either way round) overlap nearly fully: one drawing twice."
    def mask(k):
        a = media.sprite(k, 48)[..., 3] > 127; h, w = a.shape; m = np.zeros((48, 48), bool)
        m[(48 - h) // 2:(48 - h) // 2 + h, (48 - w) // 2:(48 - w) // 2 + w] = a; return m
    keys = sorted(media.manifest['sprites']); masks = {k: mask(k) for k in keys}; bad = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ea, eb = media.manifest['sprites'][a], media.manifest['sprites'][b]
            if ea['class_name'] != eb['class_name'] or set(ea['splits']) == set(eb['splits']): continue
            iou = max(((masks[a] & m).sum() / max((masks[a] | m).sum(), 1)) for m in (masks[b], masks[b][:, ::-1]))
            if iou > min_iou: bad.append((a, b, round(float(iou), 3)))
    return bad


def test_pack_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='manifest.json'):
        PackMedia(tmp_path)


def test_mulaw_roundtrip():
    "8-bit mu-law: error proportional to the level (< 3.5 %), a few 1e-4 near silence."
    x = np.linspace(-1, 1, 10001, dtype=np.float32)
    err = np.abs(mulaw_decode(mulaw_encode(x)) - x)
    loud, quiet = np.abs(x) > 0.01, np.abs(x) < 0.002
    assert (err[loud] / np.abs(x[loud])).max() < 0.035 and err[quiet].max() < 3e-4


@pytest.mark.skipif(not (REAL_PACK/'manifest.json').is_file(), reason=f'no real pack at {REAL_PACK} (run `avss-nb freeavs pack`)')
def test_real_pack_builds_deterministic_smoke(tmp_path):
    media = PackMedia(REAL_PACK)
    m = media.manifest
    assert sum((REAL_PACK/f).stat().st_size for f in ('media.npz', 'manifest.json', 'ATTRIBUTION.md')) <= 40 * 2**20
    for split in ('train', 'val', 'test'): assert len(media.sounding_classes(split)) >= 25
    attribution = media.attribution
    assert 'drum_kit.ogg' not in attribution
    for e in list(m['sprites'].values()) + list(m['clips'].values()) + list(m['backgrounds'].values()):
        for ref in e['sources']: assert f'`{ref}`' in attribution, ref
    # no leakage: a cut-out or recording in two splits is one the manifest lists as shared (or val+test only)
    shared = set(m['shared_instances'])
    for key, e in m['sprites'].items():
        if 'train' in e['splits'] and len(e['splits']) > 1: assert e['class_name'] in shared, key
    shared_rec = set(m['shared_recordings'])
    for key, e in m['clips'].items():
        if 'train' in e['splits'] and len(e['splits']) > 1: assert set(e['sources']) <= shared_rec, key
    for key, e in m['backgrounds'].items(): assert len(e['splits']) == 1, key
    assert _same_bytes_same_splits(media) == []
    assert _lookalikes_across_splits(media) == []
    a, b = tmp_path/'a', tmp_path/'b'
    build_dataset(media, a, 'smoke', seed=5, workers=1, verbose=False)
    build_dataset(media, b, 'smoke', seed=5, workers=2, verbose=False)
    da, db = _digest(a), _digest(b)
    assert da == db
    assert validate_dataset(a) == []
    stats = json.loads((a/'stats.json').read_text())
    assert stats['instances'] == media.notes['instances']
    for name, u in stats['instances_used'].items():
        for s in ('train', 'val', 'test'): assert u['sprites'][s] <= len(media.sprites(CLASS_INDEX[name], s)), (name, s)
    from avss_nb.data import AVSBenchSemantic
    disk = AVSBenchSemantic(a, 'v2', 'test', size=64)
    fly = SceneDataset(media, 'v2', 'test', len(disk), size=64, seed=5)
    for i in range(len(disk)):
        x, y = disk[i], fly[i]
        for k in ('frames', 'target', 'has_gt', 'audio'): assert torch.equal(x[k], y[k]), k


@pytest.mark.skipif(os.environ.get('AVSS_FREEAVS_PACK_TEST') != '1' or not list((CACHE/'debs').glob('gcompris-qt-data_*.deb')),
                    reason='extracting the pack takes minutes: set AVSS_FREEAVS_PACK_TEST=1 with the .deb files in data/freeavs_cache/debs')
def test_make_pack_from_debian(tmp_path):
    m = make_pack(CACHE, tmp_path/'pack', download=False, verbose=False)
    assert sum(m['sizes'].values()) <= 40 * 2**20
    assert len(m['classes']) >= 25 and set(m['classes']) == set(CATALOGUE)
    for name, sp in m['speakers'].items():   # speech grouped by pitch: men lower than women
        assert (sp['f0_hz'] < 170) if name.startswith('man/') else (sp['f0_hz'] > 180), (name, sp)
    media = PackMedia(tmp_path/'pack')
    assert _same_bytes_same_splits(media) == []
    assert m['instances'] == media.notes['instances'] and set(m['instances']) == set(CATALOGUE)
    for name, c in m['instances'].items():   # every class can be drawn in every split; the pack holds more than one instance per class
        assert all(c[k][s] >= 1 for k in ('cutouts', 'recordings') for s in ('train', 'val', 'test')), name
    assert sum(c['cutouts']['train'] for c in m['instances'].values()) >= 200
