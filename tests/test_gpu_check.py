"`avss-nb gpu-check` on the CPU at smoke sizes: every stage runs, the report has its structure, failures do not stop it."
import json
import pytest
from avss_nb.gpu_check import GPUCheckConfig, run_gpu_check, main, REPORT_NAME
from avss_nb.models import MODELS

STATUSES = {'ok', 'error', 'timeout'}

def read_report(folder):
    js, md = folder/f'{REPORT_NAME}.json', folder/f'{REPORT_NAME}.md'
    assert js.is_file() and md.is_file(), sorted(p.name for p in folder.iterdir())
    assert not list(folder.glob('*.tmp')), 'a temporary file was left behind'
    return json.loads(js.read_text()), md.read_text()

def test_quick_check_runs_every_stage(tmp_path):
    "The command line's --quick-test: environment, bench (AAVS vs HF), data, and a train + eval stage per model and task."
    assert main(['--quick-test', '--out', str(tmp_path)]) == 0
    report, md = read_report(tmp_path)
    names = [s['name'] for s in report['stages']]
    assert names == ['environment', 'bench', 'data'] + [f'train {m}/{t}' for t in ('binary', 'semantic') for m in MODELS]
    assert all(s['status'] in STATUSES and s['seconds'] >= 0 and s['limit_s'] > 0 for s in report['stages'])
    failed = {s['name']: s.get('error') for s in report['stages'] if s['status'] != 'ok'}
    assert not failed, failed
    env = report['environment']
    assert env['torch'] and env['device'] == 'cpu' and 'timm' in env['packages'] and env['avss_nb_import_errors'] == {}
    bench = report['stages'][1]['result']['runs']
    assert bench[0]['status'] == 'ok' and any('HF' in r['model'] for r in bench[0]['rows'])
    for s in report['stages'][3:]:
        r = s['result']
        assert r['steps'] >= 1 and r['finite'] and r['master_dtypes'] == ['torch.float32'], (s['name'], r)
        assert 0 <= r['val']['miou'] <= 1 and r['val']['frames'] > 0, (s['name'], r['val'])
    assert report['summary'] == {'ok': len(names), 'error': 0, 'timeout': 0}
    for heading in ('## Environment', '## Stages', '## bench model --vs-hf', '## One short epoch per model'):
        assert heading in md, heading
    assert md.count('| ok |') >= len(names)

def test_failures_are_recorded_and_the_rest_runs(tmp_path):
    "An unknown model fails its stage, a stage out of time is a timeout, and the stages after them still run."
    cfg = GPUCheckConfig.quick_test(out_dir=str(tmp_path), models=('nosuchmodel', 'tpavi'), tasks=('binary',), vs_hf=False,
                                    bench_s=0.001)
    report = run_gpu_check(cfg, verbose=False)
    status = {s['name']: s['status'] for s in report['stages']}
    assert status['bench'] == 'timeout'
    assert report['stages'][1]['result']['preset'] == 'smoke'            # what the stage had done is kept
    assert status['train nosuchmodel/binary'] == 'error' and status['train tpavi/binary'] == 'ok', status
    saved, md = read_report(tmp_path)
    assert saved['summary'] == {'ok': 3, 'error': 1, 'timeout': 1}
    assert '### train nosuchmodel/binary (error)' in md and 'unknown model' in md

def test_runs_without_what_the_gpu_machine_lacks(tmp_path):
    "`python -m avss_nb.gpu_check` with soundfile, PyAV, nbdev, papermill, Jupyter and TensorBoard unimportable (as there)."
    import subprocess, sys, os
    from pathlib import Path
    lacks = ('soundfile', 'av', 'nbdev', 'papermill', 'nbformat', 'nbclient', 'ipykernel', 'fastcore', 'execnb', 'tensorboard',
             'torch.utils.tensorboard')
    code = (f"import sys\nfor m in {lacks!r}: sys.modules[m] = None\n"
            "from avss_nb.gpu_check import main\n"
            f"sys.exit(main(['--quick-test', '--no-hf', '--models', 'tpavi', '--tasks', 'binary', '--out', {str(tmp_path)!r}]))")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, '-c', code], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, md = read_report(tmp_path)
    assert report['environment']['avss_nb_import_errors'] == {}, report['environment']['avss_nb_import_errors']
    assert report['environment']['packages']['soundfile'] is None and report['environment']['packages']['av'] is None
    assert report['summary'] == {'ok': 4, 'error': 0, 'timeout': 0}, [(s['name'], s['status'], s.get('error')) for s in report['stages']]
    assert 'soundfile missing' in md and '# avss_nb gpu-check' in proc.stdout   # the report is printed too
