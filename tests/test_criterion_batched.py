"The batched matcher (all frames at once, one copy to the CPU for all layers) against the unoptimised per-frame path."
import pytest, torch
from avss_nb.criterion import CriterionConfig, SetCriterion, HungarianMatcher, semantic_targets, stack_targets
import criterion_reference as ref

def _problem(seed, n=5, q=7, k=6, size=32, layers=3, ignore=True):
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *s: (torch.randn(*s, generator=g) * 2).requires_grad_(True)
    outputs = [dict(pred_logits=leaf(n, q, k + 1), pred_masks=leaf(n, q, size // 4, size // 4)) for _ in range(layers)]
    coarse = torch.randint(0, k, (n, 1, 4, 4), generator=g).float()   # 1..min(16, k) segments per frame: counts differ
    target = torch.nn.functional.interpolate(coarse, size=(size, size)).long().reshape(1, n, size, size)
    target[0, 1] = 3                                                  # a frame with one segment
    if ignore: target[0, 2, :, : size // 3] = 255                     # a frame with ignored pixels (weights)
    has_gt = torch.ones(1, n, dtype=torch.bool); has_gt[0, 3] = False # a frame without ground truth
    out = dict(outputs[-1], aux_outputs=outputs[:-1])
    return out, dict(target=target, has_gt=has_gt), [t for o in outputs for t in (o['pred_logits'], o['pred_masks'])]

@pytest.mark.parametrize('seed,ignore', [(0, True), (1, False), (2, True), (3, False)])
def test_batched_criterion_equals_unoptimised(seed, ignore):
    cfg = CriterionConfig(num_classes=6, num_points=96)
    out_a, batch, leaves_a = _problem(seed, ignore=ignore)
    out_b, _, leaves_b = _problem(seed, ignore=ignore)
    old = ref.SetCriterion(cfg)
    torch.manual_seed(7); a = old(out_a, batch)
    new = SetCriterion(cfg)
    recorded = []
    assign = new.matcher.assign
    new.matcher.assign = lambda costs, counts: recorded.append(assign(costs, counts)) or recorded[-1]
    torch.manual_seed(7); b = new(out_b, batch)
    # the same matches, layer by layer (new: main first, then the aux layers, as the old loop)
    old_order = old.matches                      # main layer first, then aux in order
    assert len(recorded) == 1 and len(recorded[0]) == len(old_order)
    for old_layer, new_layer in zip(old_order, recorded[0]):
        for (r0, c0), (r1, c1) in zip(old_layer, new_layer):
            assert torch.equal(r0, r1) and torch.equal(c0, c1)
    assert a.keys() <= b.keys()
    for key in a: assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    a['loss'].backward(); b['loss'].backward()
    for la, lb in zip(leaves_a, leaves_b): assert torch.allclose(la.grad, lb.grad, rtol=1e-4, atol=1e-7)

def test_cost_matrices_equal_per_frame():
    g = torch.Generator().manual_seed(5)
    logits, masks = torch.randn(4, 6, 5, generator=g), torch.randn(4, 6, 8, 8, generator=g)
    target = torch.randint(0, 4, (4, 32, 32), generator=g); target[0] = 2; target[1, :5] = 255
    targets = semantic_targets(target, num_classes=4)
    coords = torch.rand(4, 50, 2, generator=g)
    old = ref.HungarianMatcher(num_points=50).cost_matrices(logits, masks, targets, coords)
    new = HungarianMatcher(num_points=50).cost_matrices(logits, masks, targets, coords)
    assert [c.shape for c in old] == [c.shape for c in new]
    for c0, c1 in zip(old, new): assert torch.allclose(c0, c1, rtol=1e-5, atol=1e-6)
    s = stack_targets(targets)
    assert s['counts'] == [len(t['labels']) for t in targets] and s['masks'].shape[1] == max(s['counts'])
