"The smoke Stepping Stones pipeline end to end through the CLI: stage 1, export-priors, stage 2, evaluate, runs list."
import contextlib, io, json, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from avss_nb.cli import main


def cli(runs_dir, *argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(['--runs-dir', str(runs_dir), '--device', 'cpu', '--workers', '0', *map(str, argv)])
    assert rc == 0, out.getvalue()
    return out.getvalue()


def test_smoke_two_stage_pipeline(tmp_path):
    start = time.time()
    runs = tmp_path/'runs'
    common = ['--dataset', 'toy', '--preset', 'smoke', '--seed', '0', '--train-set', 'epochs=1']

    # stage 1: binary AAVS on the toy v1s+v1m+v2
    s1 = json.loads(cli(runs, 'train', '--task', 'binary', *common))
    h1 = s1['hash']
    assert 0 <= s1['val']['miou'] <= 1 and 0 <= s1['test']['miou'] <= 1

    # export-priors: official layout, 0/255 grayscale, the priors' own mIoU
    exported = json.loads(cli(runs, 'export-priors', '--run', h1, '--splits', 'val', 'test'))
    priors = Path(exported['out'])
    assert priors == runs/h1/'priors'
    for split in ('val', 'test'):
        stats = exported[split]
        assert stats['videos'] > 0 and 0 <= stats['miou'] <= 1 and set(stats['per_subset']) == {'v1s', 'v1m', 'v2'}
    pngs = sorted(priors.glob('*/*/*.png'))
    assert {p.parent.parent.name for p in pngs} == {'v1s', 'v1m', 'v2'}
    v2 = [p for p in pngs if p.parent.parent.name == 'v2']
    assert sorted(int(p.stem) for p in v2 if p.parent == v2[0].parent) == list(range(10))
    values = np.unique(np.concatenate([np.unique(np.asarray(Image.open(p))) for p in pngs]))
    assert set(values.tolist()) <= {0, 255} and Image.open(pngs[0]).mode == 'L' and Image.open(pngs[0]).size == (64, 64)
    meta = json.loads((priors/'priors.json').read_text())
    assert meta['size'] == [64, 64] and meta['source'] == f'run:{h1}' and len(meta['scores']) == 2

    # stage 2: semantic AAVS with all three prior paths, GT prior in training, stage-1 prior at val/test
    s2 = json.loads(cli(runs, 'train', '--task', 'semantic', '--priors', 'all', '--train-prior', 'gt',
                        '--eval-prior', f'run:{h1}', *common))
    h2 = s2['hash']
    rec2 = json.loads((runs/f'{h2}.json').read_text())
    assert rec2['spec']['eval_prior'] == f'run:{h1}' and rec2['spec']['train_prior'] == 'gt' and rec2['spec']['priors'] == 'all'
    rec1 = json.loads((runs/f'{h1}.json').read_text())              # the priors name the stage-1 weights that made them
    assert rec1['weights_sha256'] and rec2['priors']['eval']['weights_sha256'] == rec1['weights_sha256']
    # the test evaluation used the exported stage-1 priors: their measured quality equals export-priors' number
    assert abs(rec2['metrics']['test']['prior_miou'] - exported['test']['miou']) < 1e-6
    for key in ('git', 'device', 'wall_s', 'preset', 'seed', 'train_config', 'history', 'checkpoint'):
        assert rec2.get(key) is not None, key
    assert (runs/rec2['checkpoint']).is_file() and (runs/h2/'log.csv').is_file()

    # evaluate the stage-2 run with other priors (Table 2): oracle and calibrated low-quality
    oracle = json.loads(cli(runs, 'evaluate', '--run', h2, '--prior', 'gt'))
    low = json.loads(cli(runs, 'evaluate', '--run', h2, '--prior', 'degraded:low'))
    assert oracle['prior_miou'] > 0.999
    assert abs(low['prior_miou'] - 0.5) < 0.05 and low['prior_source']['strength'] > 0
    assert set(json.loads((runs/f'{h2}.json').read_text())['evaluations']) == \
        {f'toy|test|gt', 'toy|test|degraded:low'}

    # runs list shows both; asking again trains nothing; run_two_stage finds the same runs
    listing = cli(runs, 'runs', 'list')
    assert h1 in listing and h2 in listing
    from avss_nb.stepping_stones import run_two_stage
    from avss_nb.config import get_settings
    t0 = time.time()
    res = run_two_stage('toy', 'smoke', 0, train={'epochs': 1}, settings=get_settings(runs_dir=runs, device='cpu', workers=0),
                        progress=False)
    assert (res['stage1']['hash'], res['stage2']['hash']) == (h1, h2)
    assert time.time() - t0 < 30, 'cached runs must not train again'
    assert time.time() - start < 180


def test_prior_files_error_lists_every_problem(tmp_path):
    import torch
    from avss_nb.two_stage import PriorDir, PriorFilesError, VideoKey, prior_path, write_prior_png
    keys = [VideoKey('v1s', 'ok', 2, 16), VideoKey('v1s', 'gone', 5, 16), VideoKey('v2', 'holes', 4, 16),
            VideoKey('v2', 'odd', 2, 16)]
    for vid, n in [('ok', 2), ('holes', 4), ('odd', 2)]:
        sub = 'v1s' if vid == 'ok' else 'v2'
        for i in range(n):
            if vid == 'holes' and i in (1, 3): continue
            side = 24 if (vid == 'odd' and i == 1) else 32
            write_prior_png(prior_path(tmp_path, sub, vid, i), torch.rand(side, side))
    with pytest.raises(PriorFilesError) as err:
        PriorDir(tmp_path).validate(keys)
    msg = str(err.value)
    assert '3 problem(s)' in msg
    assert 'v1s/gone: missing' in msg and 'missing frame(s) [1, 3] of 4' in msg and 'odd/1.png: size 24x24' in msg
    assert 'ok' not in msg.replace('holes', '')                            # the complete video is not reported
    assert PriorDir(tmp_path).load('v2', 'odd', 1, 16).shape == (1, 16, 16)  # resized to the frame side


def test_run_spec_hash_covers_every_field():
    from dataclasses import fields
    from avss_nb.runs import RunSpec
    base = RunSpec(task='semantic', priors='all', train_prior='gt', eval_prior='degraded:high')
    changed = dict(model='tpavi', task='binary', dataset='toy:v2', preset='quick', seed=1, schedule='official',
                   priors='mask_fusion', train_prior='degraded:low', eval_prior='gt', variant={'dropout': 0.1}, train={'epochs': 1},
                   train_frames='labelled', empty_v1m='skip', audio='zero')
    assert set(changed) == {f.name for f in fields(RunSpec)}
    keys = {base.key()}
    for name, value in changed.items():
        kw = dict(priors='none', train_prior='none', eval_prior='none') if name == 'task' else {}
        keys.add(base.replace(**{name: value, **kw}).key())
    assert len(keys) == len(changed) + 1
    assert RunSpec(task='semantic', priors='robust_keys,mask_fusion,attn_init', train_prior='oracle',
                   eval_prior='degraded:high').key() == base.key()


def _thin_objects(n_videos:int, T:int=5, S:int=48):
    "Videos of 1-2 px wide sounding objects (strings, poles) and small blobs: what a blur-first degradation erases."
    import torch
    g, out = torch.Generator().manual_seed(0), []
    for v in range(n_videos):
        t = torch.zeros(T, S, S, dtype=torch.long)
        for f in range(T):
            x, w = int(torch.randint(4, S - 8, (1,), generator=g)), 1 + v % 2
            t[f, 4:S - 4, x:x + w] = 3                                  # a thin vertical object
            y = int(torch.randint(4, S - 8, (1,), generator=g)); t[f, y:y + 3, 2:5] = 9   # a small one
        out.append((f'v1m/thin{v}', t, torch.ones(T, dtype=torch.bool)))
    return out


def test_degraded_priors_reach_a_high_target_on_thin_objects():
    "Strength 0 is the ground truth itself, so a high target is met, not silently missed at the strength-0 floor."
    from avss_nb.two_stage import calibrate_strength, degrade_mask, prior_metrics
    from avss_nb.robust_keys import prior_from_target
    videos = _thin_objects(12)
    s, measured = calibrate_strength(videos, 0.8)
    assert abs(measured - 0.8) <= 0.02 and s > 0, (s, measured)
    key, t, has = videos[0]
    assert prior_metrics(degrade_mask(prior_from_target(t), 0.0, key), t, has).compute()['miou'] > 1 - 1e-6


def test_unreachable_targets_raise(monkeypatch):
    "No silent fallback: a target out of reach, or one the strength curve jumps over, is an error naming the cause."
    import torch
    from avss_nb import two_stage
    blocks = torch.zeros(4, 32, 32, dtype=torch.long); blocks[:, 8:24, 6:20] = 5
    videos = [(f'v2/b{i}', blocks, torch.ones(4, dtype=torch.bool)) for i in range(4)]
    with pytest.raises(ValueError, match='at full strength'):
        two_stage.calibrate_strength(videos, 0.05)                         # big objects keep more than 0.05 at strength 1
    monkeypatch.setattr(two_stage, 'degrade_mask', lambda gt, s, key, seed=0, plan=None: gt * (s < 0.3))  # all or nothing
    with pytest.raises(ValueError, match='calibrate on more videos'):
        two_stage.calibrate_strength(videos, 0.5)


def test_calibration_samples_every_subset():
    from torch.utils.data import ConcatDataset
    from avss_nb.freeavs import ToyAVS
    from avss_nb.two_stage import WithPrior
    ds = ConcatDataset([ToyAVS('v1s', 'val', n_videos=6, size=32), ToyAVS('v1m', 'val', n_videos=2, size=32),
                        ToyAVS('v2', 'val', n_videos=2, size=32)])
    info = WithPrior(ds, 'degraded:0.6', calib_videos=6).describe()
    assert info['calibration_subsets'] == {'v1m': 2, 'v1s': 2, 'v2': 2} and abs(info['calibration_miou'] - 0.6) <= 0.02


def test_table2_priors_default_to_real_stage1_runs():
    from avss_nb.reproduce import table2_prior, stage1_spec, TABLE2_BUDGETS
    low, high = (table2_prior(l, 'toy', 'quick') for l in ('low', 'high'))
    assert low == f"run:{stage1_spec('toy', 'quick', budget=TABLE2_BUDGETS['low']).key()}" != high
    assert high == f"run:{stage1_spec('toy', 'quick').key()}" and dict(stage1_spec('toy', 'quick', budget=0.1).train) == {'epochs': 1}
