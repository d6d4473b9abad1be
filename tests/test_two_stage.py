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
    from avss_nb.two_stage import run_two_stage
    from avss_nb.config import get_settings
    t0 = time.time()
    res = run_two_stage('toy', 'smoke', 0, train={'epochs': 1}, settings=get_settings(runs_dir=runs, device='cpu', workers=0),
                        progress=False)
    assert (res['stage1']['hash'], res['stage2']['hash']) == (h1, h2)
    assert time.time() - t0 < 30, 'cached runs must not train again'
    assert time.time() - start < 180
