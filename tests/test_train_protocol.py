"S4 training items: only frames that carry a loss reach the model, and every model takes the T it then sees; empty MS3 videos can be skipped."
import pytest
import torch
from avss_nb.data import TrainProtocol, collate_items
from avss_nb.freeavs import ToyAVS
from avss_nb.models import MODELS, build, criterion_for
from avss_nb.runs import RunSpec, build_model, _datasets
from avss_nb.config import get_settings

S = 64   # smoke image size


def _v1s_train(n=2): return ToyAVS('v1s', 'train', n_videos=n, size=S, binary=True)


def test_default_run_feeds_frame0_with_each_audio_second(tmp_path):
    "A run's v1s training items: frame 0 five times, with the five audio examples, all of them supervised."
    spec = RunSpec('aavs', 'binary', 'toy:v1s', 'smoke')
    assert spec.train_frames == 'repeat'
    raw, item = _v1s_train(1)[0], _datasets(spec, 'train', get_settings(runs_dir=tmp_path))[0]
    assert raw['has_gt'].sum() == 1 and bool(item['has_gt'].all())         # as read: 1 of 5 frames labelled; fed: 5 of 5
    assert all(torch.equal(item['frames'][t], raw['frames'][0]) for t in range(5))
    assert torch.equal(item['audio'], raw['audio']) and not torch.equal(item['audio'][0], item['audio'][1])
    labelled = _datasets(spec.replace(train_frames='labelled'), 'train', get_settings(runs_dir=tmp_path))[0]
    assert labelled['frames'].shape[0] == 1 and torch.equal(labelled['audio'][0], raw['audio'][0])
    assert _datasets(spec.replace(train_frames='all'), 'train', get_settings(runs_dir=tmp_path))[0]['has_gt'].sum() == 1
    assert _datasets(spec, 'val', get_settings(runs_dir=tmp_path))[0]['has_gt'].all()     # evaluation is untouched


@pytest.mark.parametrize('name', MODELS)
def test_every_model_trains_on_the_fed_frames(name):
    """Repeated (T=5) and labelled-only (T=1, padded beside a 5-frame v1m clip) S4 items: finite loss, gradients, per-frame
    predictions; and a skipped empty v1m video carries no loss."""
    torch.manual_seed(0)
    model = build_model(RunSpec(name, 'binary', 'toy:v1s', 'smoke'))
    loss_fn = criterion_for(model)
    v1m = ToyAVS('v1m', 'train', n_videos=1, size=S, binary=True)[0]
    for mode, others in [('repeat', []), ('labelled', [v1m])]:
        items = [TrainProtocol(_v1s_train(), mode)[i] for i in range(2)] + others
        batch = collate_items(items, pad=True)
        model.zero_grad()
        loss = loss_fn(model(batch), batch)['loss']
        assert torch.isfinite(loss) and loss > 0, (name, mode)
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), (name, mode)
        pred = model.predict(batch, size=S)['labels']
        assert pred.shape[0] == batch['frames'].shape[0] * batch['frames'].shape[1], (name, mode)
    # empty_v1m='skip' (official Stepping-Stones): a v1m training video whose masks are all empty gives no loss
    base = ToyAVS('v1m', 'train', n_videos=2, size=S, binary=True)
    empty = [dict(base[i], target=torch.zeros_like(base[i]['target'])) for i in range(2)]
    kept, skipped = (collate_items([TrainProtocol(empty, 'repeat', e)[i] for i in range(2)]) for e in ('train', 'skip'))
    assert loss_fn(model(kept), kept)['loss'] > 0                                # trained on: all-background targets
    out = loss_fn(model(skipped), skipped)
    supervised = {k: float(v.detach()) for k, v in out.items() if k not in ('loss', 'loss_avm')}
    assert supervised and all(v == 0 for v in supervised.values()), supervised   # skipped: no supervised loss
    if 'loss_avm' not in out: assert out['loss'] == 0                            # (TPAVI's AVM term is unsupervised: its
                                                                                 #  masking by has_gt is TPAVI's own issue item)


def test_the_spec_names_the_protocol():
    spec = RunSpec('aavs', 'binary', 'toy:v1m', 'smoke')
    assert spec.key() != spec.replace(empty_v1m='skip').key() != spec.replace(train_frames='all').key()
    with pytest.raises(ValueError, match='train_frames must be one of'): RunSpec(train_frames='first')
    with pytest.raises(ValueError, match='empty_v1m must be one of'): RunSpec(empty_v1m='drop')


def test_models_supervising_frame0_only_are_told_every_fed_frame_is_labelled(monkeypatch):
    "A model whose own S4 config supervises frame 0 only (official AVSBench/AVSegFormer) learns from all repeated copies."
    from avss_nb import models, runs
    from avss_nb.tpavi import build_tpavi
    monkeypatch.setattr(models, 'build', lambda name, preset, task, priors, **kw: build_tpavi(preset, 's4', priors, **kw))
    assert build_tpavi('smoke', 's4').config.first_frame_only                               # the official S4 loss
    assert runs.build_model(RunSpec('tpavi', 'binary', 'toy:v1s', 'smoke')).config.first_frame_only is False
    assert runs.build_model(RunSpec('tpavi', 'binary', 'toy:v1s', 'smoke', train_frames='all')).config.first_frame_only
    assert runs.build_model(RunSpec('tpavi', 'binary', 'toy:v1s', 'smoke', variant={'first_frame_only': True})).config.first_frame_only
