"Issue 18's before/after in one process: AAVS with the unoptimised path and with the current code, beside Hugging Face Mask2Former."
# run from the repository root: .venv/bin/python results/bench/perf_before_after.py [--preset full] [--task semantic] [--steps 5]
# 'before' is the code the tests hold as the unoptimised path (tests/criterion_reference.py: per-frame Hungarian matching,
# as at df1a8a3; tests/deform_reference.py: every level's samples stacked; AdamW's default for-loop step, as before d1a1927),
# swapped in around each of its calls on the same model, so before, now and HF are timed interleaved step by step.
import argparse, contextlib, json, subprocess, sys
sys.path.insert(0, 'tests')
import torch
import criterion_reference as reference_criterion
from deform_reference import ms_deform_attn as reference_deform_attn
import avss_nb.backbone as backbone, avss_nb.criterion as criterion
from avss_nb.aavs import (AAVSConfig, build_aavs, hf_mask2former_config, _runners, _interleaved, _rate_stats,
                          _random_target, _loadavg)
from avss_nb.config import get_preset, apply_threads
from avss_nb.criterion import CriterionConfig, semantic_targets

SHARED_MATH = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::convolution_backward', 'aten::mkldnn_convolution',
               'aten::grid_sampler_2d', 'aten::grid_sampler_2d_backward', 'aten::_scaled_dot_product_flash_attention_for_cpu',
               'aten::_scaled_dot_product_flash_attention_for_cpu_backward')   # kernels both implementations run on the same shapes

@contextlib.contextmanager
def unoptimised():
    "The code before issue 18's work: stacked deformable attention and the per-frame matcher."
    saved = backbone.ms_deform_attn, criterion.SetCriterion
    backbone.ms_deform_attn, criterion.SetCriterion = reference_deform_attn, reference_criterion.SetCriterion
    try: yield
    finally: backbone.ms_deform_attn, criterion.SetCriterion = saved

def op_profile(fn, calls:int=3, top:int=5) -> dict:
    "Top operators by self CPU time per call of `fn` (averaged over `calls` profiled calls), and the share spent in SHARED_MATH."
    from torch.profiler import profile, ProfilerActivity
    fn()                                                                                  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls): fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)
    return dict(calls=calls, total_ms=total / 1e3 / calls,
                top=[(e.key, round(e.self_cpu_time_total / 1e3 / calls, 1), round(100 * e.self_cpu_time_total / total, 1), e.count // calls) for e in rows[:top]],
                shared_math_ms=sum(e.self_cpu_time_total for e in events if e.key in SHARED_MATH) / 1e3 / calls)

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--preset', default='full'); p.add_argument('--task', default='semantic')
    p.add_argument('--frames', type=int, default=5); p.add_argument('--steps', type=int, default=5); p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=1); p.add_argument('--json', default=None)
    args = p.parse_args()
    apply_threads(args.threads); torch.manual_seed(0)
    pre = get_preset(args.preset)
    cfg = AAVSConfig.from_preset(pre, args.task, None, freeze='none', from_scratch=True, audio_queries='none')   # the pure Mask2Former path
    model = build_aavs(config=cfg)
    s, n, g = cfg.image_size, args.frames, torch.Generator().manual_seed(0)
    batch = dict(frames=torch.randn(1, n, 3, s, s, generator=g), audio=torch.randn(1, n, 96, 64, generator=g), id=['bench'],
                 target=_random_target(1, n, s, cfg.num_classes, g), has_gt=torch.ones(1, n, dtype=torch.bool))
    from transformers import Mask2FormerForUniversalSegmentation
    hf_cfg = hf_mask2former_config(cfg, model.backbone); hf_cfg.train_num_points = pre.train_points
    hf = Mask2FormerForUniversalSegmentation(hf_cfg)
    images, segs = batch['frames'].flatten(0, 1), semantic_targets(batch['target'], num_classes=cfg.num_classes)
    aavs_loss = lambda: criterion.SetCriterion(CriterionConfig.from_preset(pre, args.task))(model(batch), batch)['loss']   # the class in force
    hf_loss = lambda: hf(pixel_values=images, mask_labels=[t['masks'] for t in segs], class_labels=[t['labels'] for t in segs]).loss
    before_infer, before_step = [unoptimised()(f) for f in _runners(model, lambda: model(batch), None, aavs_loss, fused=False)]   # for-loop AdamW
    now_infer, now_step = _runners(model, lambda: model(batch), None, aavs_loss)                 # fused AdamW, as the trainer
    hf_infer, hf_step = _runners(hf, lambda: hf(pixel_values=images), None, hf_loss)            # HF Trainer's default: fused too
    names = ['AAVS before (unoptimised path)', 'AAVS now', 'HF Mask2Former']
    load = [_loadavg()]
    timed = dict(infer_fps=_interleaved([before_infer, now_infer, hf_infer], args.steps, args.warmup, torch.device('cpu')))
    load.append(_loadavg())
    timed['train_fps'] = _interleaved([before_step, now_step, hf_step], args.steps, args.warmup, torch.device('cpu')); load.append(_loadavg())
    rows = [dict(model=m) for m in names]
    for key, times in timed.items():
        for row, secs in zip(rows, times): _rate_stats(row, key, [n / t for t in secs])
    for a, b in [(1, 0), (1, 2), (0, 2)]:                                                   # one ratio per pair of adjacent steps
        rows.append(dict(model=f'{names[a]} / {names[b]}'))
        for key, times in timed.items(): _rate_stats(rows[-1], key, [tb / ta for ta, tb in zip(times[a], times[b])])
    profiles = {'AAVS before, train step': op_profile(before_step), 'AAVS now, train step': op_profile(now_step),
                'HF, train step': op_profile(hf_step), 'AAVS now, inference': op_profile(now_infer), 'HF, inference': op_profile(hf_infer)}
    rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    print(f"# {args.preset}/{args.task}, {n} images of {s} px, fp32, CPU, {torch.get_num_threads()} thread(s), {args.steps} interleaved steps "
          f"(+{args.warmup} warm-up), set criterion; revision {rev}; load average {[round(x, 2) for x in load]} (start, after inference, after training)")
    print(f"{'':48}{'infer f/s median [quartiles] {range}':>42}{'train f/s median [quartiles] {range}':>42}")
    cell = lambda r, k: f"{r[k]:.2f} [{r[k + '_q1']:.2f}-{r[k + '_q3']:.2f}] {{{r[k + '_min']:.2f}..{r[k + '_max']:.2f}}}" if k in r else '-'
    for r in rows: print(f"{r['model']:48}{cell(r, 'infer_fps'):>42}{cell(r, 'train_fps'):>42}")
    for name, prof in profiles.items():
        print(f"\n{name}: {prof['total_ms']:.0f} ms of operator self time per call (mean of {prof['calls']}); kernels both implementations share (GEMMs, convolutions, "
              f"grid_sample, attention): {prof['shared_math_ms']:.0f} ms ({100 * prof['shared_math_ms'] / prof['total_ms']:.0f}%)")
        for op, ms, pct, count in prof['top']: print(f"  {op:60}{ms:10.1f} ms {pct:5.1f}%  (x{count})")
    if args.json: json.dump(dict(rows=rows, profiles=profiles, load=load, revision=rev), open(args.json, 'w'), indent=1)
