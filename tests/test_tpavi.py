"TPAVI against the official recipe: padded frames change nothing, and S4 runs train without the AVM term."
import pytest
import torch
from avss_nb.tpavi import build_tpavi
from avss_nb.freeavs import ToyAVS
from avss_nb.data import collate_items

def _mixed_batch(size=64):
    "A 5-frame (v1m) and a 10-frame (v2) toy clip, padded to 10 by the collate, and the 5-frame clip alone."
    short, long_ = ToyAVS('v1m', 'train', n_videos=1, size=size, binary=True)[0], ToyAVS('v2', 'train', n_videos=1, size=size, binary=True)[0]
    assert len(short['frames']) == 5 and len(long_['frames']) == 10
    return collate_items([short, long_], pad=True), collate_items([short]), collate_items([long_])

def _model(**kw):
    torch.manual_seed(0)
    model = build_tpavi('smoke', 'ms3', clip_frames=None, **kw)
    for block in model.tpavi.values(): torch.nn.init.normal_(block.w_z[1].weight)   # so that TPAVI's context matters
    return model

def test_padding_does_not_change_valid_frames_eval():
    "Eval mode: the padded clip's frames give the same logits and AVM term as the clip alone; N counts valid frames."
    mixed, short, long_ = _mixed_batch()
    assert mixed['valid'].sum(1).tolist() == [5, 10]
    model = _model().eval()
    with torch.no_grad(): om, os_, ol = model(mixed), model(short), model(long_)
    assert (om['logits'][:5] - os_['logits']).abs().max() < 1e-5
    assert (om['logits'][10:] - ol['logits']).abs().max() < 1e-5
    lm, ls, ll = model.loss(om, mixed), model.loss(os_, short), model.loss(ol, long_)
    expected = (5 * ls['loss_avm'] + 10 * ll['loss_avm']) / 15          # mean over the 15 real frames with GT
    assert abs(lm['loss_avm'].item() - expected.item()) < 1e-5

def test_padding_content_is_ignored_in_training():
    "Train mode (batch-norm statistics, TPAVI context): whatever the padded frames hold, valid outputs and the loss are the same."
    mixed, _, _ = _mixed_batch()
    noisy = dict(mixed, frames=mixed['frames'].clone(), audio=mixed['audio'].clone())
    pad = ~mixed['valid']
    noisy['frames'][pad] = torch.randn_like(noisy['frames'][pad]) * 3
    noisy['audio'][pad] = torch.randn_like(noisy['audio'][pad]) * 3
    model = _model().train()
    a, b = model(mixed), model(noisy)
    valid = mixed['valid'].flatten()
    assert (a['logits'][valid] - b['logits'][valid]).abs().max() < 1e-5
    assert abs(model.loss(a, mixed)['loss'].item() - model.loss(b, noisy)['loss'].item()) < 1e-6

@pytest.mark.parametrize('dataset, avm', [('avsbench-object:s4', False), ('toy:v1s', False), ('avsbench-object:ms3', True),
                                          ('toy:v1m', True), ('toy:v1s+v1m', True)])
def test_run_subset_reaches_the_model(dataset, avm):
    "A binary run on S4 data builds TPAVI without the AVM term and with frame-0 BCE (official S4, all five frames fed); MS3 keeps AVM."
    from avss_nb.runs import RunSpec, build_model
    model = build_model(RunSpec('tpavi', 'binary', dataset, train_frames='all'))
    assert (model.config.avm_weight > 0) == avm and model.config.first_frame_only == (not avm)
    repeat = build_model(RunSpec('tpavi', 'binary', dataset))   # default 'repeat': frame 0 with each second's audio, every fed frame labelled
    assert (repeat.config.avm_weight > 0) == avm and not repeat.config.first_frame_only
