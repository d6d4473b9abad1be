"Matcher and losses against brute force, direct formulas and HuggingFace's Mask2FormerLoss."
import itertools, math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avss_nb.criterion import (CriterionConfig, SetCriterion, HungarianMatcher, semantic_targets, point_sample,
                               pairwise_mask_costs, uncertain_points, bce_loss, dice_loss, focal_loss, ce_loss)

# ---------------------------------------------------------------- targets

def test_semantic_targets():
    t = torch.tensor([[[[2, 2], [0, 255]], [[0, 0], [0, 0]]], [[[255, 255], [255, 255]], [[1, 2], [1, 1]]]])   # [B=2,T=2,2,2]
    has_gt = torch.tensor([[True, True], [True, False]])
    segs = semantic_targets(t, has_gt, num_classes=3)
    assert len(segs) == 4 and segs[2] is None and segs[3] is None
    assert segs[0]['labels'].tolist() == [0, 2]
    assert segs[0]['masks'].tolist() == [[[0, 0], [1, 0]], [[1, 1], [0, 0]]]
    assert segs[0]['valid'].tolist() == [[1, 1], [1, 0]]
    assert segs[1]['labels'].tolist() == [0] and segs[1]['valid'] is None
    with pytest.raises(ValueError, match='outside 0..1'): semantic_targets(t, num_classes=2)
    with pytest.raises(ValueError, match='has_gt'): semantic_targets(t, has_gt=torch.ones(3, dtype=torch.bool))

# ---------------------------------------------------------------- costs and matcher

def direct_costs(point_logits, point_targets, probs, labels, w=None, cc=1.0, cm=5.0, cd=5.0):
    "Cost matrix by the formulas, one pair at a time (float64)."
    x, t = point_logits.double(), point_targets.double()
    w = torch.ones(x.shape[1], dtype=torch.float64) if w is None else w.double()
    q, n = x.shape[0], t.shape[0]
    out = torch.zeros(q, n, dtype=torch.float64)
    for i in range(q):
        s = torch.sigmoid(x[i])
        for j in range(n):
            bce = -(t[j] * torch.log(s) + (1 - t[j]) * torch.log(1 - s))
            mask = (bce * w).sum() / w.sum()
            dice = 1 - (2 * (s * t[j] * w).sum() + 1) / ((s * w).sum() + (t[j] * w).sum() + 1)
            out[i, j] = cm * mask + cd * dice - cc * probs[i, labels[j]]
    return out

def test_pairwise_costs_vs_direct_and_hf():
    from transformers.models.mask2former.modeling_mask2former import pair_wise_dice_loss, pair_wise_sigmoid_cross_entropy_loss
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 50, generator=g), (torch.rand(3, 50, generator=g) > 0.5).float()
    bce, dice = pairwise_mask_costs(x, t)
    assert torch.allclose(bce, pair_wise_sigmoid_cross_entropy_loss(x, t), atol=1e-5)
    assert torch.allclose(dice, pair_wise_dice_loss(x, t), atol=1e-6)
    w = (torch.rand(50, generator=g) > 0.3).float()
    bce_w, dice_w = pairwise_mask_costs(x, t, w)
    keep = w.bool()
    assert torch.allclose(bce_w, pair_wise_sigmoid_cross_entropy_loss(x[:, keep], t[:, keep]), atol=1e-5)   # weight 0 = absent
    assert torch.allclose(dice_w, pair_wise_dice_loss(x[:, keep], t[:, keep]), atol=1e-6)

@pytest.mark.parametrize('seed', range(6))
def test_matcher_vs_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    q = 2 + seed % 4
    k = 4
    logits, masks = torch.randn(2, q, k + 1, generator=g), 3 * torch.randn(2, q, 6, 6, generator=g)
    target = torch.randint(0, k, (2, 16, 16), generator=g)
    target[1, :, :8] = 255
    targets = [t for t in semantic_targets(target, num_classes=k)]
    targets = [dict(t, labels=t['labels'][:q], masks=t['masks'][:q]) for t in targets]   # at most q segments
    matcher = HungarianMatcher(num_points=80)
    coords = torch.rand(2, 80, 2, generator=g)
    costs = matcher.cost_matrices(logits, masks, targets, coords)
    for i, (cost, (rows, cols), tgt) in enumerate(zip(costs, matcher(logits, masks, targets, coords), targets)):
        pl = point_sample(masks[i:i + 1], coords[i:i + 1])[0]
        pt = point_sample(tgt['masks'][None], coords[i:i + 1])[0]
        w = None if tgt['valid'] is None else point_sample(tgt['valid'][None, None], coords[i:i + 1])[0, 0]
        ref = direct_costs(pl, pt, logits[i].softmax(-1), tgt['labels'], w)
        assert torch.allclose(cost.double(), ref, atol=1e-4)
        n = cost.shape[1]
        best = min(sum(ref[p[j], j].item() for j in range(n)) for p in itertools.permutations(range(q), n))
        assert len(rows) == n and len(set(rows.tolist())) == n and sorted(cols.tolist()) == list(range(n))
        assert abs(ref[rows, cols].sum().item() - best) < 1e-4

def test_matcher_survives_nan_costs():
    logits = torch.randn(1, 3, 3); logits[0, 1] = float('nan')
    targets = semantic_targets(torch.randint(0, 2, (1, 8, 8)), num_classes=2)
    rows, cols = HungarianMatcher(num_points=20)(logits, torch.randn(1, 3, 4, 4), targets)[0]
    assert 1 not in rows.tolist()                          # the NaN query is matched only if nothing else is possible

# ---------------------------------------------------------------- the set criterion vs HuggingFace Mask2FormerLoss

def hf_loss(cfg, outputs, targets):
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss
    config = Mask2FormerConfig(num_labels=cfg.num_classes, no_object_weight=cfg.no_object_weight, class_weight=cfg.cost_class,
                               mask_weight=cfg.cost_mask, dice_weight=cfg.cost_dice, train_num_points=cfg.num_points,
                               oversample_ratio=cfg.oversample_ratio, importance_sample_ratio=cfg.importance_sample_ratio)
    loss = Mask2FormerLoss(config, weight_dict={})
    aux = [dict(masks_queries_logits=a['pred_masks'], class_queries_logits=a['pred_logits']) for a in outputs['aux_outputs']]
    return loss(outputs['pred_masks'], outputs['pred_logits'], [t['masks'] for t in targets], [t['labels'] for t in targets], aux)

@pytest.mark.parametrize('num_classes', [2, 7])
def test_set_criterion_equals_hf_mask2former_loss(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    cfg = CriterionConfig(num_classes=num_classes, num_points=64)
    n, q = 3, 5
    outputs = dict(pred_logits=torch.randn(n, q, num_classes + 1, generator=g), pred_masks=2 * torch.randn(n, q, 8, 8, generator=g))
    outputs['aux_outputs'] = [dict(pred_logits=torch.randn(n, q, num_classes + 1, generator=g),
                                   pred_masks=torch.randn(n, q, 8, 8, generator=g)) for _ in range(2)]
    target = torch.randint(0, num_classes, (1, n, 32, 32), generator=g)
    target[0, 1] = 0                                                  # an empty-GT frame: only the background segment
    torch.manual_seed(123); ours = SetCriterion(cfg)(outputs, dict(target=target, has_gt=torch.ones(1, n, dtype=torch.bool)))
    torch.manual_seed(123); theirs = hf_loss(cfg, outputs, semantic_targets(target, num_classes=num_classes))
    for key in ('ce', 'mask', 'dice'):
        hf_key = 'cross_entropy' if key == 'ce' else key
        assert torch.allclose(ours[f'loss_{key}'], theirs[f'loss_{hf_key}'], atol=1e-5), key
        for j in range(2): assert torch.allclose(ours[f'loss_{key}_{j}'], theirs[f'loss_{hf_key}_{j}'], atol=1e-5), (key, j)
    total = sum(w * (ours[f'loss_{k}'] + sum(ours[f'loss_{k}_{j}'] for j in range(2)))
                for k, w in (('ce', 2.0), ('mask', 5.0), ('dice', 5.0)))
    assert torch.allclose(ours['loss'], total)

def _toy(seed=0, n=4, q=4, k=2, size=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, q, k + 1, generator=g, requires_grad=True)
    masks = torch.randn(n, q, size // 4, size // 4, generator=g, requires_grad=True)
    target = torch.randint(0, k, (n // 2, 2, size, size), generator=g)
    return logits, masks, target

def test_frames_without_gt_contribute_nothing():
    logits, masks, target = _toy()
    cfg = CriterionConfig(num_points=32)
    has_gt = torch.tensor([[True, False], [False, True]])
    torch.manual_seed(0); full = SetCriterion(cfg)(dict(pred_logits=logits, pred_masks=masks), dict(target=target, has_gt=has_gt))
    keep = [0, 3]
    torch.manual_seed(0)
    only = SetCriterion(cfg)(dict(pred_logits=logits[keep], pred_masks=masks[keep]), dict(target=target.reshape(4, 16, 16)[keep]))
    assert torch.allclose(full['loss'], only['loss'])
    full['loss'].backward()
    assert masks.grad[[1, 2]].abs().sum() == 0 and logits.grad[[1, 2]].abs().sum() == 0
    # 255 everywhere in a frame is the same as has_gt False
    t255 = target.clone().reshape(4, 16, 16); t255[[1, 2]] = 255
    torch.manual_seed(0)
    same = SetCriterion(cfg)(dict(pred_logits=logits, pred_masks=masks), dict(target=t255.reshape(2, 2, 16, 16)))
    assert torch.allclose(same['loss'], only['loss'])

def test_ignored_pixels_do_not_matter():
    logits, masks, target = _toy(1, n=2)
    cfg = CriterionConfig(num_points=200, importance_sample_ratio=0.0)   # points independent of the prediction
    target = target.clone(); target[..., :, 8:] = 255                   # right half ignored (mask cols 2..3)
    batch = dict(target=target)
    torch.manual_seed(0); a = SetCriterion(cfg)(dict(pred_logits=logits, pred_masks=masks), batch)
    other = masks.detach().clone(); other[..., :, 3:] = 50 * torch.randn_like(other[..., :, 3:])   # only inside the ignored part
    torch.manual_seed(0); b = SetCriterion(cfg)(dict(pred_logits=logits, pred_masks=other), batch)
    assert torch.allclose(a['loss'], b['loss'], atol=1e-5)

def test_no_gt_batch_gives_zero_that_backprops():
    logits, masks, target = _toy()
    aux_l, aux_m = logits * 2, masks * 2
    out = dict(pred_logits=logits, pred_masks=masks, aux_outputs=[dict(pred_logits=aux_l, pred_masks=aux_m)])
    r = SetCriterion(CriterionConfig(num_points=32))(out, dict(target=target, has_gt=torch.zeros(2, 2, dtype=torch.bool)))
    assert r['loss'].item() == 0 and 'loss_dice_0' in r
    r['loss'].backward()
    assert torch.isfinite(masks.grad).all() and masks.grad.abs().sum() == 0 and logits.grad.abs().sum() == 0

def test_deep_supervision_switch_and_weights():
    logits, masks, target = _toy(2)
    out = dict(pred_logits=logits, pred_masks=masks, aux_outputs=[dict(pred_logits=logits, pred_masks=masks)])
    torch.manual_seed(0); off = SetCriterion(CriterionConfig(num_points=32, deep_supervision=False))(out, dict(target=target))
    assert 'loss_ce_0' not in off
    assert torch.allclose(off['loss'], 2 * off['loss_ce'] + 5 * off['loss_mask'] + 5 * off['loss_dice'])
    torch.manual_seed(0)
    w = SetCriterion(CriterionConfig(num_points=32, class_weight=1.0, mask_weight=0.0, dice_weight=3.0, aux_weight=0.5))(out, dict(target=target))
    assert torch.allclose(w['loss'], w['loss_ce'] + 3 * w['loss_dice'] + 0.5 * (w['loss_ce_0'] + 3 * w['loss_dice_0']))
    with pytest.raises(ValueError, match='num_classes'): SetCriterion(CriterionConfig(num_classes=5))(out, dict(target=target))

def test_ce_no_object_weight_direct():
    # one frame, 3 queries, one segment (background everywhere): the CE is a weighted mean with weight 0.1 on no-object
    logits = torch.randn(1, 3, 3); masks = torch.randn(1, 3, 4, 4)
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    crit = SetCriterion(CriterionConfig(num_points=16))
    torch.manual_seed(0); r = crit(dict(pred_logits=logits, pred_masks=masks), dict(target=target))
    torch.manual_seed(0); (rows, cols), = crit.matcher(logits, masks, semantic_targets(target, num_classes=2))
    lsm = logits[0].log_softmax(-1)
    cls = torch.full((3,), 2); cls[rows] = 0
    w = torch.where(cls == 2, 0.1, 1.0)
    assert torch.allclose(r['loss_ce'], -(w * lsm[torch.arange(3), cls]).sum() / w.sum(), atol=1e-6)

def test_uncertain_points_and_from_preset():
    logits = torch.full((2, 1, 8, 8), 20.0); logits[:, :, 2, 2] = 0.0
    pts = uncertain_points(logits, 40, oversample_ratio=3, importance_sample_ratio=0.5)
    assert pts.shape == (2, 40, 2) and ((pts >= 0) & (pts <= 1)).all()
    vals = point_sample(logits, pts)[:, 0]
    assert (vals[:, :20].abs().mean() < vals[:, 20:].abs().mean())      # importance points are the uncertain ones
    assert CriterionConfig.from_preset('smoke').num_points == 256
    assert CriterionConfig.from_preset('full', 'semantic').num_classes == 71
    with pytest.raises(ValueError): CriterionConfig.from_preset('smoke', 'panoptic')

# ---------------------------------------------------------------- per-pixel losses

def _pixel_data(seed=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 1, 5, 5, generator=g, requires_grad=True)
    target = (torch.rand(2, 3, 5, 5, generator=g) > 0.6).long()
    return logits, target

def test_bce_direct():
    logits, target = _pixel_data()
    p, y = logits.sigmoid(), target.reshape(6, 1, 5, 5).float()
    assert torch.allclose(bce_loss(logits, target), F.binary_cross_entropy(p, y), atol=1e-6)                 # official F5 BCE
    assert torch.allclose(bce_loss(logits, target, first_frame_only=True), F.binary_cross_entropy(p[::3], y[::3]), atol=1e-6)
    has_gt = torch.tensor([[True, False, True], [False, False, True]])
    keep = has_gt.reshape(-1)
    assert torch.allclose(bce_loss(logits, target, has_gt), F.binary_cross_entropy(p[keep], y[keep]), atol=1e-6)
    t = target.clone(); t[0, 0, :, :2] = 255      # ignored pixels: frame 0 is averaged over its 15 valid pixels
    per = [F.binary_cross_entropy(p[0, 0, :, 2:], y[0, 0, :, 2:])] + [F.binary_cross_entropy(p[i], y[i]) for i in range(1, 6)]
    assert torch.allclose(bce_loss(logits, t), torch.stack(per).mean(), atol=1e-6)
    with pytest.raises(ValueError, match='first_frame_only'): bce_loss(logits, target.reshape(6, 5, 5), first_frame_only=True)
    with pytest.raises(ValueError, match='target size'): bce_loss(logits[:, :, :4], target)

def test_dice_direct():
    logits, target = _pixel_data(4)
    p, g = logits.sigmoid().flatten(1), target.reshape(6, -1).float()
    d = 1 - 2 * (p * g).sum(1) / ((p * p).sum(1) + 0.001 + (g * g).sum(1) + 0.001)     # AVSegFormer F5_Dice_loss
    assert torch.allclose(dice_loss(logits, target), d.mean(), atol=1e-6)
    assert torch.allclose(dice_loss(logits, target, first_frame_only=True), d[::3].mean(), atol=1e-6)
    assert torch.allclose(dice_loss(logits[:, 0], target, torch.tensor([[0, 1, 1], [0, 0, 0]]).bool()), d[1:3].mean(), atol=1e-6)

def test_focal_direct():
    from torchvision.ops import sigmoid_focal_loss
    logits, target = _pixel_data(5)
    y = target.reshape(6, 1, 5, 5).float()
    assert torch.allclose(focal_loss(logits, target), sigmoid_focal_loss(logits, y, reduction='mean'), atol=1e-6)
    assert torch.allclose(focal_loss(logits, target, alpha=-1, gamma=0), F.binary_cross_entropy_with_logits(logits, y), atol=1e-6)

def test_ce_direct():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 5, 6, 6, generator=g)
    target = torch.randint(0, 5, (2, 2, 6, 6), generator=g)
    flag = torch.tensor([1., 1., 0., 1.])
    official = (F.cross_entropy(logits, target.reshape(4, 6, 6), reduction='none').mean((-1, -2)) * flag).sum() / flag.sum()
    assert torch.allclose(ce_loss(logits, target, flag.bool().reshape(2, 2)), official, atol=1e-6)
    t = target.clone(); t[0, 0, 0] = 255
    per = [F.cross_entropy(logits[:1, :, 1:], target[0, :1, 1:])] + [F.cross_entropy(logits[i:i + 1], target.reshape(4, 6, 6)[i:i + 1]) for i in range(1, 4)]
    assert torch.allclose(ce_loss(logits, t), torch.stack(per).mean(), atol=1e-6)
    with pytest.raises(ValueError, match='classes'): ce_loss(logits, torch.full((4, 6, 6), 7))

@pytest.mark.parametrize('loss', [bce_loss, dice_loss, focal_loss])
def test_pixel_losses_zero_without_gt(loss):
    logits, target = _pixel_data()
    r = loss(logits, target, torch.zeros(2, 3, dtype=torch.bool))
    r.backward()
    assert r.item() == 0 and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() == 0
    r = ce_loss(torch.randn(6, 3, 5, 5, requires_grad=True), torch.full((2, 3, 5, 5), 255))
    assert r.item() == 0
