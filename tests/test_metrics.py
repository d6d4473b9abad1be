"Metrics against hand-computed cases and against straightforward re-implementations of the official code."
import io, contextlib, os, tempfile
import numpy as np
import pytest
import torch
from avss_nb.metrics import (binary_iou_frames, binary_miou, binary_fscore, binary_pr_counts, fscore_curves,
                             fscore_thresholds, threshold_counts, BinaryMetrics, SemanticMetrics, semantic_miou_fscore,
                             confusion_miou, fscore_curves_loop, semantic_scores_loop, bench_metrics)

# ---------------------------------------------------------------- independent references (plain loops, official order)

def ref_iou(pred, gt):
    "AVSBench `mask_iou` for one frame (numpy, float64); pred and gt 0/1."
    pred, gt = np.asarray(pred, float), np.asarray(gt, float)
    if gt.sum() == 0: inter, union = ((1 - gt) * (1 - pred)).sum(), gt.size
    else: inter, union = (pred * gt).sum(), np.maximum(pred, gt).sum()
    return inter / (union + 1e-7)

def ref_fscore_official(prob, gt, batch_size, beta2=0.3):
    "AVSBench `Eval_Fmeasure`: per batch of videos, mean curve of frames with GT, max; mean over batches. prob/gt [V,T,H,W]."
    th = torch.linspace(0, 1 - 1e-10, 255)
    scores = []
    for b in range(0, prob.shape[0], batch_size):
        p, g = prob[b:b + batch_size].reshape(-1, *prob.shape[-2:]), gt[b:b + batch_size].reshape(-1, *gt.shape[-2:]).float()
        curve, n = torch.zeros(255), 0
        for y_pred, y in zip(p, g):
            if torch.mean(y) == 0.0: continue
            prec, recall = torch.zeros(255), torch.zeros(255)
            for i in range(255):
                y_temp = (y_pred >= th[i]).float()
                tp = (y_temp * y).sum()
                prec[i], recall[i] = tp / (y_temp.sum() + 1e-20), tp / (y.sum() + 1e-20)
            f = (1 + beta2) * prec * recall / (beta2 * prec + recall)
            f[f != f] = 0
            curve += f; n += 1
        scores.append((curve / n).max().item() if n else 0.0)
    return float(np.mean(scores))

def ref_semantic_official(pred, gt, K, beta2=0.3):
    "AVSBench `_batch_miou_fscore` + `calc_color_miou_fscore` with torch.histc on labels shifted to 1..K; returns per-class lists."
    ious, fs, count = torch.zeros(K), torch.zeros(K), torch.zeros(K)
    for p, g in zip(pred.reshape(-1, pred.shape[-1] * pred.shape[-2]), gt.reshape(-1, gt.shape[-1] * gt.shape[-2])):
        p, g = p.float() + 1, g.float() + 1
        inter = p * (p == g).float()
        a_i = torch.histc(inter, bins=K, min=1, max=K)
        a_p = torch.histc(p, bins=K, min=1, max=K)
        a_g = torch.histc(g, bins=K, min=1, max=K)
        union = a_p + a_g - a_i
        ious += a_i / (2.220446049250313e-16 + union)
        count[torch.nonzero(union).squeeze(-1)] += 1
        prec, rec = a_i / a_p, a_i / a_g
        f = (1 + beta2) * prec * rec / (beta2 * prec + rec)
        f[f != f] = 0
        fs += f
    miou_pc, f_pc = ious / count, fs / count
    miou_pc[torch.isnan(miou_pc)] = 0; f_pc[torch.isnan(f_pc)] = 0
    return miou_pc, f_pc, count

# ---------------------------------------------------------------- binary Jaccard

def test_iou_hand_cases():
    z, o = torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)
    half = torch.tensor([[1, 1], [0, 0]])
    pred = torch.stack([z, o, z, half, o]).float()
    gt = torch.stack([z, z, half, half, half])
    iou, valid = binary_iou_frames(pred, gt)
    # empty GT + empty pred: 1; empty GT + full pred: 0 true negatives; empty pred on an object: 0; perfect: 1; 2 of 4
    np.testing.assert_allclose(iou.numpy(), [1, 0, 0, 1, 0.5], atol=1e-6)
    assert valid.all()

def test_iou_ignores_padded_frames_and_pixels():
    gt = torch.tensor([[[1, 255], [0, 0]], [[255, 255], [255, 255]], [[1, 1], [0, 0]]])
    pred = torch.tensor([[[1, 1], [0, 0]], [[1, 1], [1, 1]], [[0, 0], [0, 0]]])
    iou, valid = binary_iou_frames(pred, gt, has_gt=[True, True, False])
    assert valid.tolist() == [True, False, False]
    assert abs(iou[0].item() - 1.0) < 1e-6             # the 255 pixel predicted 1 does not count
    assert abs(binary_miou(pred, gt, has_gt=[True, True, False]) - 1.0) < 1e-6
    # empty GT with an ignored pixel: union is the number of valid pixels (3), 2 true negatives
    iou, _ = binary_iou_frames(torch.tensor([[1, 1], [0, 0]]), torch.tensor([[0, 255], [0, 0]]))
    assert abs(iou.item() - 2 / 3) < 1e-6
    assert np.isnan(binary_miou(pred, gt, has_gt=[False, False, False]))

def test_iou_random_vs_reference_and_batches():
    g = torch.Generator().manual_seed(1)
    prob = torch.rand(6, 5, 12, 12, generator=g)
    gt = (torch.rand(6, 5, 12, 12, generator=g) > 0.6).long()
    gt[2, 1] = 0; gt[4] = 0
    ref = [ref_iou((p > 0.5).numpy(), y.numpy()) for p, y in zip(prob.reshape(-1, 12, 12), gt.reshape(-1, 12, 12))]
    assert abs(binary_miou(prob, gt) - np.mean(ref)) < 1e-12
    labels = (prob > 0.5).long()
    assert abs(binary_miou(labels, gt) - np.mean(ref)) < 1e-12           # 0/1 labels give the same
    for bs in (1, 2, 4):   # official: mean over each batch's frames, then over batches (last batch partial for 4)
        per_batch = [np.mean(ref[b * 5:(b + bs) * 5]) for b in range(0, 6, bs)]
        assert abs(binary_miou(prob, gt, batch_size=bs) - np.mean(per_batch)) < 1e-12

# ---------------------------------------------------------------- binary F-score

def test_threshold_counts_exact_near_every_threshold():
    th = fscore_thresholds()
    bits = th.view(torch.int32)
    near = (bits[:, None] + torch.arange(-64, 65, dtype=torch.int32)[None]).reshape(-1)
    near = near[(near >= 0) & (near <= bits[-1])].view(torch.float32)
    values = torch.cat([near, torch.rand(20000), torch.tensor([0.0, 1.0, 0.5])])
    assert torch.equal(threshold_counts(values), torch.bucketize(values, th, right=True).int())

def test_fscore_hand_cases():
    gt = torch.tensor([[1, 0], [0, 0]])
    # empty prediction (all zero scores): threshold 0 still predicts every pixel: P = 1/4, R = 1
    assert abs(binary_fscore(torch.zeros(2, 2), gt) - 1.3 * 0.25 / (0.3 * 0.25 + 1)) < 1e-9
    # perfect separation
    assert abs(binary_fscore(torch.tensor([[0.7, 0.2], [0.1, 0.0]]), gt) - 1.0) < 1e-9
    # scores exactly 1.0 reach the last threshold (1.0 in float32) too
    assert abs(binary_fscore(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), gt) - 1.0) < 1e-9
    # only empty GT: 0; has_gt False frames are left out
    assert binary_fscore(torch.rand(3, 2, 2), torch.zeros(3, 2, 2, dtype=torch.long)) == 0.0
    two_p = torch.stack([torch.tensor([[0.7, 0.2], [0.1, 0.0]]), torch.zeros(2, 2)])
    two_g = torch.stack([gt, gt])
    assert abs(binary_fscore(two_p, two_g, has_gt=[True, False]) - 1.0) < 1e-9

def test_fscore_empty_gt_batch_counts_zero_per_batch():
    gt = torch.stack([torch.tensor([[1, 0], [0, 0]]), torch.zeros(2, 2, dtype=torch.long)])[:, None]   # [V=2, T=1]
    prob = torch.stack([torch.tensor([[0.7, 0.2], [0.1, 0.0]]), torch.rand(2, 2)])[:, None]
    assert abs(binary_fscore(prob, gt, batch_size=1) - 0.5) < 1e-9      # official: (1 + 0) / 2
    assert abs(binary_fscore(prob, gt, 0.3, 1) - 0.5) < 1e-9           # the positional order (prob, gt, beta2, batch_size)
    assert abs(binary_fscore(prob, gt) - 1.0) < 1e-9                    # one curve: the empty frame is skipped
    # a batch whose frames all lack ground truth does not exist (not counted as 0)
    assert abs(binary_fscore(prob, gt, has_gt=[[True], [False]], batch_size=1) - 1.0) < 1e-9

@pytest.mark.parametrize('batch_size', [1, 2, 3, None])
def test_fscore_random_vs_official_loop(batch_size):
    g = torch.Generator().manual_seed(2)
    gt = (torch.rand(5, 3, 10, 10, generator=g) > 0.7).long()
    shift = 4 * torch.rand(5, 3, 1, 1, generator=g) - 2           # informative scores whose best threshold differs per frame
    prob = torch.sigmoid(2 * torch.randn(5, 3, 10, 10, generator=g) + 3 * gt + shift)
    prob[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    gt[1] = 0; gt[3, 2] = 0
    ref = ref_fscore_official(prob, gt, batch_size or 5)
    assert abs(binary_fscore(prob, gt, batch_size=batch_size) - ref) < 1e-6

def test_fscore_counts_and_curves_vs_loop():
    g = torch.Generator().manual_seed(3)
    prob, gt = torch.rand(4, 20, 20, generator=g), (torch.rand(4, 20, 20, generator=g) > 0.5).long()
    c = binary_pr_counts(prob, gt, chunk_pixels=500)                     # several frames per chunk and chunk edges
    th = fscore_thresholds()
    for n in range(4):
        ge = prob[n].reshape(-1, 1) >= th[None]
        assert torch.equal(c['pred_pos'][n], ge.sum(0))
        assert torch.equal(c['tp'][n], (ge & (gt[n].reshape(-1, 1) == 1)).sum(0))
    diff = (fscore_curves(c['tp'], c['pred_pos'], c['gt_pos']) - fscore_curves_loop(prob, gt).double()).abs().max()
    assert diff < 1e-6

def test_fscore_ignored_pixels_equal_removed_pixels():
    g = torch.Generator().manual_seed(4)
    prob, gt = torch.rand(1, 8, 8, generator=g), (torch.rand(1, 8, 8, generator=g) > 0.5).long()
    gt_ign = gt.clone(); gt_ign[0, :, 6:] = 255
    assert abs(binary_fscore(prob, gt_ign) - binary_fscore(prob[:, :, :6], gt[:, :, :6])) < 1e-12

def test_fscore_bad_input_is_explained():
    with pytest.raises(ValueError, match=r'\[0, 1\]'): binary_fscore(torch.full((2, 2), 1.5), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='outside'): binary_fscore(torch.rand(2, 2), torch.full((2, 2), 300))
    with pytest.raises(ValueError, match='differ'): binary_fscore(torch.rand(2, 3), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='has_gt'): binary_fscore(torch.rand(2, 2, 2), torch.ones(2, 2, 2, dtype=torch.long), has_gt=[True])

# ---------------------------------------------------------------- accumulators

def _binary_data(seed=5):
    g = torch.Generator().manual_seed(seed)
    gt = (torch.rand(6, 5, 8, 8, generator=g) > 0.6).long()
    shift = 4 * torch.rand(6, 5, 1, 1, generator=g) - 2
    prob = torch.sigmoid(2 * torch.randn(6, 5, 8, 8, generator=g) + 3 * gt + shift)
    gt[2] = 0
    has_gt = torch.ones(6, 5, dtype=torch.bool); has_gt[1, 1:] = False
    return prob, gt, has_gt

def test_binary_accumulator_matches_functions_and_merges():
    prob, gt, has_gt = _binary_data()
    acc = BinaryMetrics()
    for b in range(0, 6, 2): acc.update(prob[b:b + 2], gt[b:b + 2], has_gt[b:b + 2])
    r = acc.compute()
    assert abs(r['fscore_batch'] - binary_fscore(prob, gt, batch_size=2, has_gt=has_gt)) < 1e-12
    assert abs(r['fscore'] - binary_fscore(prob, gt, has_gt=has_gt)) < 1e-12
    assert abs(r['miou'] - binary_miou(prob, gt, has_gt=has_gt)) < 1e-12
    assert abs(r['miou_batch'] - binary_miou(prob, gt, batch_size=2, has_gt=has_gt)) < 1e-12
    assert r['frames'] == int(has_gt.sum()) and r['batches'] == 3
    assert abs(r['fscore_batch'] - r['fscore']) > 1e-3            # the data does show the batch dependence
    # two "ranks": summing state tensors == merge == one pass
    a, b = BinaryMetrics(), BinaryMetrics()
    for v in range(0, 6, 2): (a if v < 4 else b).update(prob[v:v + 2], gt[v:v + 2], has_gt[v:v + 2])
    summed = {k: a.state_tensors()[k] + b.state_tensors()[k] for k in a.state}
    import re
    official = lambda d: {k: v for k, v in d.items() if not re.fullmatch(r'(fscore|miou)_b\d+', k)}   # all but the per-video sums
    for other in (BinaryMetrics().load_state_tensors(summed).compute(), a.merge(b).compute()):
        assert official(other) == official(r)
        # per-video sums of the official batches: the same terms, added in another order (exact up to rounding)
        assert other.keys() == r.keys() and all(abs(other[k] - r[k]) < 1e-12 for k in r)
    with pytest.raises(ValueError): BinaryMetrics().merge(SemanticMetrics())

def test_accumulator_all_reduce_single_process_gloo():
    import torch.distributed as dist
    prob, gt, has_gt = _binary_data()
    acc = BinaryMetrics().update(prob, gt, has_gt)
    before = acc.compute()
    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group('gloo', init_method=f'file://{d}/store', rank=0, world_size=1)
        try: acc.all_reduce()
        finally: dist.destroy_process_group()
    assert acc.compute() == before                   # world size 1: the sum is itself

# ---------------------------------------------------------------- semantic

def test_semantic_hand_cases():
    K = 4
    bg = torch.zeros(1, 2, 2, dtype=torch.long)
    # all background, predicted perfectly: background IoU 1, the other classes never occur -> 0
    assert semantic_miou_fscore(bg, bg, K) == (pytest.approx(1 / K), pytest.approx(1 / K))
    # a class only predicted: IoU 0 and F 0 in that frame, and counted
    pred = torch.tensor([[[0, 3], [0, 0]]])
    r = SemanticMetrics(K).update(pred, bg).compute()
    assert r['per_class_iou'][3] == 0 and r['per_class_fscore'][3] == 0
    assert r['per_class_iou'][0] == pytest.approx(3 / 4)
    assert r['per_class_fscore'][0] == pytest.approx(1.3 * 1 * 0.75 / (0.3 * 1 + 0.75))
    assert r['miou'] == pytest.approx(0.75 / K)
    # the class only in GT (empty prediction of an object): IoU 0, counted
    r = SemanticMetrics(K).update(bg, pred).compute()
    assert r['per_class_iou'][3] == 0 and r['miou'] == pytest.approx(0.75 / K)
    # a class present in one frame and absent from another is averaged over its one frame only
    gt2 = torch.tensor([[[0, 2], [0, 0]], [[0, 0], [0, 0]]])
    r = SemanticMetrics(K).update(gt2, gt2).compute()
    assert r['per_class_iou'][2] == pytest.approx(1.0) and r['per_class_iou'][0] == pytest.approx(1.0)

def test_semantic_no_background_variants():
    K = 3
    gt, pred = torch.tensor([[[0, 1], [2, 2]]]), torch.tensor([[[0, 1], [2, 0]]])
    iou = [1 / 2, 1.0, 1 / 2]
    assert semantic_miou_fscore(pred, gt, K)[0] == pytest.approx(np.mean(iou))
    assert semantic_miou_fscore(pred, gt, K, no_background=True)[0] == pytest.approx(np.mean(iou[1:]))
    assert semantic_miou_fscore(pred, gt, K, no_background=True, official_nobg_bug=True)[0] == pytest.approx(np.mean(iou[:-1]))

def test_semantic_padded_frames():
    K = 3
    gt = torch.tensor([[[0, 1], [1, 1]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 0]]])
    has_gt = torch.tensor([True, False])
    # our default: the padded frame does not exist
    assert semantic_miou_fscore(pred, gt, K, has_gt=has_gt) == semantic_miou_fscore(pred[:1], gt[:1], K)
    # AVSBench/AVSegFormer: the zero-padded frame is a perfect background frame, whatever was predicted
    with_pad = semantic_miou_fscore(pred, gt, K, has_gt=has_gt, padded_as_background=True)
    official = ref_semantic_official(torch.stack([pred[0], torch.zeros_like(pred[1])]), gt, K)
    assert with_pad[0] == pytest.approx(official[0].mean().item()) and with_pad[1] == pytest.approx(official[1].mean().item())
    # background: frame 1 IoU 0 (0 of 2), padded frame 1 -> 1/2; class 1: 3/4; class 2: never -> 0
    assert with_pad[0] == pytest.approx((0.5 + 0.75 + 0) / 3)

@pytest.mark.parametrize('K', [5, 71])
def test_semantic_random_vs_official(K):
    g = torch.Generator().manual_seed(K)
    gt = torch.randint(0, K, (6, 9, 9), generator=g)
    gt[0] = 0                                                            # an all-background frame
    pred = torch.where(torch.rand(6, 9, 9, generator=g) < 0.6, gt, torch.randint(0, K, (6, 9, 9), generator=g))
    pred[1] = 0                                                          # an empty prediction
    miou_pc, f_pc, count = ref_semantic_official(pred, gt, K)
    r = SemanticMetrics(K).update(pred[:2], gt[:2]).merge(SemanticMetrics(K).update(pred[2:], gt[2:])).compute()
    np.testing.assert_allclose(r['per_class_iou'], miou_pc.numpy(), atol=1e-6)
    np.testing.assert_allclose(r['per_class_fscore'], f_pc.numpy(), atol=1e-6)
    assert r['miou'] == pytest.approx(miou_pc.mean().item(), abs=1e-6)
    assert r['fscore'] == pytest.approx(f_pc.mean().item(), abs=1e-6)
    assert r['miou_nobg'] == pytest.approx(miou_pc[1:].mean().item(), abs=1e-6)
    assert r['miou_nobg_official'] == pytest.approx(miou_pc[:-1].mean().item(), abs=1e-6)
    # the per-class loop of the benchmark agrees too
    i_ref, f_ref, n_ref = semantic_scores_loop(pred, gt, K)
    st = SemanticMetrics(K).update(pred, gt).state
    assert torch.allclose(st['iou_sum'], i_ref) and torch.allclose(st['f_sum'], f_ref) and torch.equal(st['cls_count'], n_ref)

def test_semantic_ignored_pixels_and_confusion():
    K = 6
    g = torch.Generator().manual_seed(9)
    gt = torch.randint(0, K, (3, 7, 7), generator=g)
    pred = torch.randint(0, K, (3, 7, 7), generator=g)
    gt_ign = gt.clone(); gt_ign[:, :, 5:] = 255
    a = SemanticMetrics(K).update(pred, gt_ign).compute()
    b = SemanticMetrics(K).update(pred[:, :, :5], gt[:, :, :5]).compute()
    assert a == b
    # confusion-matrix mIoU against numpy
    p, t = pred[:, :, :5].reshape(-1).numpy(), gt[:, :, :5].reshape(-1).numpy()
    ious = []
    for c in range(K):
        inter, union = ((p == c) & (t == c)).sum(), ((p == c) | (t == c)).sum()
        if union: ious.append(inter / union)
    assert confusion_miou(pred, gt_ign, K) == pytest.approx(np.mean(ious))
    assert confusion_miou(pred, gt_ign, K, no_background=True) == pytest.approx(
        np.mean([((p == c) & (t == c)).sum() / ((p == c) | (t == c)).sum() for c in range(1, K) if ((p == c) | (t == c)).any()]))

def test_inputs_are_not_modified():
    gt = torch.randint(0, 4, (2, 5, 5), dtype=torch.int32); gt[0, 0] = 255
    pred = torch.randint(0, 4, (2, 5, 5), dtype=torch.int32)
    g0, p0 = gt.clone(), pred.clone()
    SemanticMetrics(4).update(pred, gt, has_gt=[True, False])
    binary_fscore(torch.rand(2, 5, 5), (gt == 1).int())
    assert torch.equal(gt, g0) and torch.equal(pred, p0)

def test_semantic_bad_labels_are_explained():
    with pytest.raises(ValueError, match='outside 0..3'): semantic_miou_fscore(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7), 4)
    bad = torch.tensor([[[255, 7], [0, 0]]])                      # an invalid label next to ignored pixels
    with pytest.raises(ValueError, match=r'\[7\]'): semantic_miou_fscore(torch.zeros(1, 2, 2, dtype=torch.long), bad, 4)
    with pytest.raises(ValueError, match='outside'): semantic_miou_fscore(torch.zeros(1, 2, 2, dtype=torch.long), -bad, 4)
    with pytest.raises(ValueError, match='predicted labels'): semantic_miou_fscore(torch.full((1, 2, 2), 9), torch.zeros(1, 2, 2, dtype=torch.long), 4)

# ---------------------------------------------------------------- benchmark command

def test_bench_cli_runs_and_agrees():
    from avss_nb.cli import build_parser
    from avss_nb.config import get_settings
    args = build_parser(['avss_nb.metrics']).parse_args(['bench', 'metrics', '--frames', '2', '--size', '24', '--repeat', '1'])
    args.settings = get_settings()
    out = io.StringIO()
    with contextlib.redirect_stdout(out): assert args.func(args) == 0
    assert 'speed-up' in out.getvalue() and 'max abs diff' in out.getvalue()
    r = bench_metrics(frames=2, size=24, repeat=1)
    assert r['fscore_max_abs_diff'] <= 1e-6 and r['semantic_max_abs_diff'] <= 1e-9


def test_one_evaluation_scores_every_papers_batch():
    "BinaryMetrics fed one video at a time also yields the official per-batch F of batches of 2 and 4 (AVSegFormer, AVSBench)."
    g = torch.Generator().manual_seed(3)
    prob = torch.rand(7, 5, 12, 12, generator=g) ** 2                     # 7 videos: the last batch of 2 and of 4 is partial
    gt = (torch.rand(7, 5, 12, 12, generator=g) > 0.7).long()
    gt[2] = 0; gt[4, 1:] = 0                                               # an all-empty video, some empty frames
    acc = BinaryMetrics()
    for v in range(7): acc.update(prob[v:v + 1], gt[v:v + 1])
    r = acc.compute()
    for b in (1, 2, 4):
        assert abs(r[f'fscore_b{b}'] - ref_fscore_official(prob, gt, b)) < 1e-6, b
    assert len({round(r[k], 6) for k in ('fscore_b1', 'fscore_b2', 'fscore_b4', 'fscore')}) == 4   # four different numbers
