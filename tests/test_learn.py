"Thread setting, length-bucketed training batches, quick's video cap, run hashes kept by the `audio` field."
import json
from pathlib import Path
import pytest, torch, torch.nn as nn
from torch.utils.data import ConcatDataset
from avss_nb.config import PRESETS, Preset, resolve_threads, get_settings
from avss_nb.freeavs import ToyAVS, BUILD_PRESETS
from avss_nb.train import Trainer, TrainConfig

ROOT = Path(__file__).resolve().parent.parent


class Probe(nn.Module):
    "Records the ids and padding of every training batch."
    def __init__(self):
        super().__init__(); self.w = nn.Parameter(torch.zeros(1)); self.seen = []
    def forward(self, batch):
        self.seen.append((list(batch['id']), bool(batch['valid'].all()) if 'valid' in batch else True))
        return dict(out=self.w * batch['frames'].mean())


def _train(bucket):
    ds = ConcatDataset([ToyAVS('v1s', 'train', n_videos=3, size=16), ToyAVS('v2', 'train', n_videos=3, size=16)])
    model = Probe()
    cfg = TrainConfig(epochs=2, batch_size=2, progress=False, tensorboard=False, device='cpu', bucket_by_length=bucket)
    Trainer(model, lambda out, batch: dict(loss=(out['out'] - 1) ** 2), ds, None, cfg, None).fit()
    ids = sorted(ds[i]['id'] for i in range(len(ds)))
    return model.seen, ids


def test_training_batches_hold_one_clip_length():
    seen, ids = _train(True)
    assert all(unpadded for _, unpadded in seen), seen
    per_epoch = len(seen) // 2
    for e in range(2):   # every item exactly once per epoch
        assert sorted(i for b, _ in seen[e * per_epoch:(e + 1) * per_epoch] for i in b) == ids
    old, _ = _train(False)   # without bucketing this seed mixes 5- and 10-frame clips (padded frames)
    assert not all(unpadded for _, unpadded in old)


def test_threads_auto_is_one_on_two_cores_and_env_overrides():
    assert resolve_threads('auto', cpus=2) == 1 and resolve_threads('auto', cpus=32) == 32
    assert get_settings(env={'AVSS_THREADS': '2'}).threads == '2'
    with pytest.raises(ValueError, match='AVSS_THREADS'): resolve_threads('many')


def test_epoch_videos_trains_on_a_new_window_each_epoch():
    "With `epoch_videos` the trainer takes that many videos per epoch, new ones until the training set is used up."
    ds = ToyAVS('v1s', 'train', n_videos=12, size=16)
    model = Probe()
    cfg = TrainConfig(epochs=3, batch_size=2, progress=False, tensorboard=False, device='cpu', epoch_videos=4)
    Trainer(model, lambda out, batch: dict(loss=(out['out'] - 1) ** 2), ds, None, cfg, None).fit()
    assert len(model.seen) == 3 * 2
    epochs = [sorted(i for ids, _ in model.seen[2 * e:2 * e + 2] for i in ids) for e in range(3)]
    assert all(len(e) == 4 for e in epochs)
    assert sorted(i for e in epochs for i in e) == sorted(ds[i]['id'] for i in range(len(ds)))


def test_quick_trains_on_fresh_scenes_each_epoch():
    "quick's FreeAVS build holds more training scenes than an epoch takes, and its TrainConfig passes the window on."
    p = PRESETS['quick']
    assert p.epoch_videos and BUILD_PRESETS[p.freeavs].counts['v1s'][0] >= 5 * p.epoch_videos
    assert TrainConfig.from_preset('quick').epoch_videos == p.epoch_videos
    from avss_nb.runs import RunSpec, train_config
    assert train_config(RunSpec(preset='quick', train={'epoch_videos': 600})).epoch_videos == 600   # a run may change it


def test_preset_video_cap_covers_its_freeavs_build():
    for p in PRESETS.values():
        plan = BUILD_PRESETS.get(p.freeavs)
        if plan is None or p.max_videos is None: continue
        largest = max(n for counts in plan.counts.values() for n in counts)
        assert p.max_videos >= largest, f"preset {p.name}: max_videos {p.max_videos} drops videos of FreeAVS {p.freeavs} ({largest})"


def test_default_audio_leaves_the_hash_unchanged():
    "The `audio` field at its default ('real') is left out of the hash, so a spec hashes as it did before the field existed."
    import hashlib
    from avss_nb.runs import RunSpec
    from avss_nb.config import get_preset
    for spec in (RunSpec(), RunSpec('tpavi', 'binary', 'toy:v1s', seed=3)):
        d = spec.to_dict(); del d['audio']                # the spec as written before `audio` existed
        text = json.dumps(dict(d, preset_values=get_preset(spec.preset).to_dict()), sort_keys=True, separators=(',', ':'))
        assert spec.key() == hashlib.sha256(text.encode()).hexdigest()[:12]
        assert spec.replace(audio='zero').key() != spec.key()

def test_visual_only_run_records_present_class_miou(tmp_path):
    "A zero-audio semantic run: its items carry no audio, and its record has `miou_present` for val and test."
    from avss_nb.runs import RunSpec, train_run, _datasets
    settings = get_settings(env={}, runs_dir=str(tmp_path/'runs'), results_dir=str(tmp_path))
    spec = RunSpec('aavs', 'semantic', 'toy:v1s+v2', 'smoke', train={'epochs': 1}, audio='zero')
    val = _datasets(spec, 'val', settings)
    assert all(val[i]['audio'].abs().sum() == 0 for i in range(len(val)))
    assert _datasets(spec.replace(audio='real'), 'val', settings)[0]['audio'].abs().sum() > 0
    rec = train_run(spec, settings, progress=False)
    assert rec['spec']['audio'] == 'zero'
    for split in ('val', 'test'):
        m = rec['metrics'][split]
        assert m['miou'] <= m['miou_present'] <= 1 and m['classes_present'] >= 2, m


def test_preset_asking_for_pretraining_builds_models_from_it(tmp_path, monkeypatch):
    "A preset with visual_pretrained/audio_pretrained: build_model of a FreeAVS run trains both runs once (pack media) and starts from them."
    from dataclasses import replace
    from safetensors.torch import load_file
    from avss_nb.config import register_preset, get_preset
    from avss_nb.freeavs_media import write_toy_pack
    from avss_nb.freeavs import ToyMedia
    from avss_nb.runs import RunSpec, build_model
    write_toy_pack(tmp_path/'pack', ToyMedia())
    monkeypatch.setenv('AVSS_FREEAVS_PACK', str(tmp_path/'pack')); monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    register_preset(replace(get_preset('smoke'), name='smoke-pretrained', visual_pretrained='freeavs-seg',
                            audio_pretrained='freeavs-cls', pretrain_steps=2))
    try:
        spec = RunSpec('aavs', 'binary', 'freeavs:v1s', 'smoke-pretrained')   # (toy runs never pretrain: runs.build_model)
        assert spec.key() != RunSpec('aavs', 'binary', 'freeavs:v1s', 'smoke').key()
        model = build_model(spec)
        assert model.cfg.freeze == 'frozen_backbone' and not any(p.requires_grad for n, p in model.backbone.named_parameters() if '.adapter.' not in n)
        records = sorted((tmp_path/'runs').glob('pt-*.json'))
        assert len(records) == 2
        weights = {json.loads(r.read_text())['kind']: r.with_suffix('')/'encoder.safetensors' for r in records}
        enc = load_file(str(weights['visual']))
        assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in enc.items())
        aud = load_file(str(weights['audio']))
        assert all(torch.equal(model.audio_encoder.state_dict()[k], v) for k, v in aud.items())
        mtime = [r.stat().st_mtime for r in records]
        build_model(spec)                                    # reused, not trained again
        assert [r.stat().st_mtime for r in records] == mtime
        from avss_nb.pretrain import pretrained_overrides   # visual pretraining only: nothing for the audio encoder
        register_preset(replace(get_preset('smoke-pretrained'), name='smoke-visual', audio_pretrained=None))
        for m in ('aavs', 'tpavi'):
            out = pretrained_overrides(m, 'smoke-visual')
            assert 'audio_weights' not in out and set(out) == ({'backbone_weights', 'freeze'} if m == 'aavs' else {'backbone_weights'}), (m, out)
    finally:
        from avss_nb.config import PRESETS
        PRESETS.pop('smoke-pretrained', None); PRESETS.pop('smoke-visual', None)


def test_ddp_length_buckets_match_one_process(tmp_path):
    "Mixed 5/10-frame training under 2 gloo ranks x batch 1 takes the same steps (same losses) as 1 rank x batch 2."
    from test_train import start, finish
    procs = [start(['tiny', '--mix', '--videos', 8, '--out', tmp_path/'one', '--batch-size', 2, '--record', tmp_path/'one.json']),
             start(['tiny', '--mix', '--videos', 8, '--out', tmp_path/'two', '--batch-size', 1, '--record', tmp_path/'two.json'], torchrun=2)]
    for p in procs: finish(p)
    r1, r2 = json.loads((tmp_path/'one.json').read_text()), json.loads((tmp_path/'two.json').read_text())
    assert (r1['world_size'], r2['world_size']) == (1, 2)
    assert len(r1['losses']) == len(r2['losses']) == 8                   # (4 + 4 videos) / global batch 2, 2 epochs
    assert torch.allclose(torch.tensor(r1['losses']), torch.tensor(r2['losses']), rtol=1e-5, atol=1e-6), (r1['losses'], r2['losses'])
