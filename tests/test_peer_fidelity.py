"Fidelity of the peers to their official code (AVSegFormer) and paper (AVSC), where the smoke tests cannot see it."
import pytest
import torch, torch.nn as nn
from avss_nb.freeavs import ToyAVS
from avss_nb.data import collate_items
from avss_nb.avsegformer import build_avsegformer

def toy(task:str, subset:str='v1m', n:int=2, size:int=64) -> dict:
    "One collated toy batch of `n` videos."
    ds = ToyAVS(subset, 'train', n_videos=n, size=size, binary=task == 'binary')
    return collate_items([ds[i] for i in range(n)], pad=True)

def with_gt_prior(batch:dict) -> dict:
    return dict(batch, prior=((batch['target'] > 0) & (batch['target'] != 255)).float())

# --- AVSegFormer -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('task', ['ms3', 'avss'])
def test_avsegformer_mask_feature_nonnegative(task):
    "Official mask feature: GN + ReLU output times a sigmoid channel gate, so >= 0 (the mixing loss relies on it)."
    torch.manual_seed(0)
    model = build_avsegformer('smoke', task).eval()
    batch = toy('binary' if task == 'ms3' else 'semantic')
    with torch.no_grad(): feature = model(batch)['mask_feature']
    assert feature.min() >= 0, feature.min()
    assert feature.max() > 0

def test_avsegformer_mix_loss_before_prior():
    "The mixing loss is taken before prior fusion: a ground-truth prior and an empty one give the same mixing loss."
    torch.manual_seed(0)
    model = build_avsegformer('smoke', 'ms3', priors='mask_fusion').eval()
    batch = with_gt_prior(toy('binary'))
    empty = dict(batch, prior=torch.zeros_like(batch['prior']))
    with torch.no_grad():
        gt, none = model.loss(model(batch), batch), model.loss(model(empty), empty)
    assert abs(gt['loss_mix'].item() - none['loss_mix'].item()) < 1e-6, (gt['loss_mix'], none['loss_mix'])
    assert abs(gt['loss_dice'].item() - none['loss_dice'].item()) > 1e-6   # the prior does reach the prediction

def test_avsegformer_official_layers():
    "GELU in the encoder FFN and the decoder, no dropout in the query generator and mixer, xavier-initialised head."
    torch.manual_seed(0)
    model = build_avsegformer('full', 'ms3', backbone='resnet18', num_queries=30, head_ffn=256)
    x = torch.linspace(-3, 3, 13)
    enc = model.pixel_decoder.layers[0]
    assert torch.allclose(model.decoder.layers[0].activation(x), nn.functional.gelu(x))
    relu_enc = build_avsegformer('smoke', 'ms3', activation='relu').pixel_decoder.layers[0]
    assert type(enc).forward is not type(relu_enc).forward               # the GELU layer replaces the shared ReLU one
    assert all(m.p == 0 for part in (model.query_generator, model.mixer) for m in part.modules() if isinstance(m, nn.Dropout))
    assert not any(m.in_proj_bias is not None for m in model.query_generator.modules() if isinstance(m, nn.MultiheadAttention))
    for w in [model.query_mlp[0].weight, model.query_mlp[2].weight, model.fc[0].weight, model.query_generator.queries.weight]:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert w.abs().max() <= bound + 1e-6 and w.abs().max() > 0.95 * bound, (tuple(w.shape), w.abs().max().item(), bound)

def test_avsegformer_backbone_freeze_schedule():
    "The backbone gets no gradient before `freeze_backbone_epochs` (set by the trainer through `set_epoch`), then it does."
    from avss_nb.avsegformer import AVSegFormerConfig, official_recipe
    assert [AVSegFormerConfig.from_preset('full', t).freeze_backbone_epochs for t in ('s4', 'ms3', 'avss')] == [5, 10, 0]
    assert official_recipe('s4')['lr'] == 2e-5
    torch.manual_seed(0)
    model = build_avsegformer('smoke', 'ms3', freeze_backbone_epochs=2)
    batch = toy('binary')
    for epoch, frozen in [(0, True), (1, True), (2, False)]:
        model.zero_grad(set_to_none=True)
        model.set_epoch(epoch)
        model.loss(model(batch), batch)['loss'].backward()
        backbone = [p.grad for p in model.encoder.parameters()]
        assert all(g is None for g in backbone) == frozen, epoch
        assert model.query_mlp[0].weight.grad is not None

def test_trainer_calls_set_epoch(tmp_path):
    "The trainer tells the model each epoch (the hook the backbone freeze needs)."
    from avss_nb.train import Trainer, TrainConfig
    from avss_nb.models import build, criterion_for
    seen = []
    model = build('avsegformer', 'smoke', 'binary', freeze_backbone_epochs=1)
    inner_set_epoch = model.set_epoch
    model.set_epoch = lambda e: (seen.append(e), inner_set_epoch(e))
    ds = ToyAVS('v1s', 'train', n_videos=2, size=64, binary=True)
    Trainer(model, criterion_for(model), ds, None, TrainConfig(epochs=2, batch_size=2, device='cpu', progress=False,
                                                               tensorboard=False)).fit()
    assert seen == [0, 1] and model.backbone_frozen is False

# --- AVSC ------------------------------------------------------------------------------------------------------

def test_avsc_binary_uses_dataset_categories():
    "Binary tasks: K = the dataset's categories, the items' `category` labels the sounding segment, and the class loss sees it."
    from avss_nb.avsc import build_avsc
    from avss_nb.labels import CLASSES, NUM_CLASSES
    torch.manual_seed(0)
    model = build_avsc('smoke', 's4')
    assert model.config.num_classes == NUM_CLASSES
    assert model.audio_classifier.mlp[-1].out_features == NUM_CLASSES
    batch = toy('binary', 'v1s')                                          # toy v1s items carry their sounding class
    assert all(c in CLASSES for c in batch['category']), batch['category']
    targets = [t for t in model.targets(batch) if t is not None]
    assert targets and all(t['labels'].tolist() == [CLASSES.index(c)] for t, c in zip(targets, batch['category']))
    outputs = model(batch)
    other = dict(batch, category=['violin' if c != 'violin' else 'guitar' for c in batch['category']])
    torch.manual_seed(0); a = model.loss(outputs, batch)['loss_ce']
    torch.manual_seed(0); b = model.loss(outputs, other)['loss_ce']
    assert abs(a.item() - b.item()) > 1e-6, (a, b)

def test_avsc_score_filter_keeps_one_instance_per_category():
    "With dataset categories, two instances of different categories in a frame both survive the filters and both light up."
    from avss_nb.avsc import potential_instances, localisation_map
    from avss_nb.labels import CLASSES, NUM_CLASSES
    guitar, man = CLASSES.index('guitar'), CLASSES.index('man')
    logits = torch.full((1, 3, NUM_CLASSES + 1), -10.)
    logits[0, 0, guitar] = logits[0, 1, man] = logits[0, 2, -1] = 10.     # a guitar, a man, a non-object
    masks = torch.full((1, 3, 4, 4), -10.); masks[0, 0, :2] = 10; masks[0, 1, 2:] = 10
    keep, cats, binary = potential_instances(logits, masks)
    assert keep.tolist() == [[True, True, False]]
    p_a = torch.zeros(1, NUM_CLASSES); p_a[0, guitar] = 0.9               # the audio says: guitar
    s_asl, _ = localisation_map(p_a, keep, cats, binary)
    assert s_asl[0, :2].min() > 0.85 and s_asl[0, 2:].max() == 0         # the guitar is selected, the silent man is not

def test_avsc_paper_mask_loss_option():
    "mask_loss='focal' gives the paper's Eq. 3 weights (focal 20, Dice 1, class 1) and a finite, trainable loss."
    from avss_nb.avsc import build_avsc
    torch.manual_seed(0)
    model = build_avsc('smoke', 'ms3', mask_loss='focal')
    c = model.config
    assert (c.mask_weight, c.dice_weight, c.class_weight) == (20.0, 1.0, 1.0)
    batch = toy('binary')
    parts = model.loss(model(batch), batch)
    assert torch.isfinite(parts['loss']) and parts['loss_mask'] > 0
    parts['loss'].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.segmenter.parameters())

def test_avsc_unknown_category_is_named():
    "A category outside the class space names itself and the setting that fixes it: a warning by default, an error on request."
    from avss_nb.avsc import build_avsc
    batch = dict(toy('binary', 'v1s'), category=['banjo', 'banjo'])
    with pytest.raises(ValueError, match="categories="): build_avsc('smoke', 's4', unknown_categories='error').targets(batch)
    with pytest.warns(UserWarning, match="banjo.*categories="):
        targets = [t for t in build_avsc('smoke', 's4').targets(batch) if t is not None]
    assert targets and all(t['candidates'][:, 1:].all() for t in targets)   # trained as 'any category'

def test_semantic_layout_items_carry_category(tmp_path):
    "FreeAVS on disk (AVSBench-semantic layout) gives items the metadata's `a_obj`, which AVSC's binary targets read."
    from avss_nb.freeavs import make_toy_dataset
    from avss_nb.data import AVSBenchSemantic
    from avss_nb.labels import CLASSES
    make_toy_dataset(tmp_path, 2, size=32)
    item = AVSBenchSemantic(tmp_path, 'v1s', 'train', size=32, binary=True)[0]
    assert item['category'] in CLASSES[1:], item['category']
