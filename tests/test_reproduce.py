"Tables rebuild from run records alone; weights missing on this machine are retrained when an evaluation needs them."
import shutil
from avss_nb.reproduce import task_spec, measure, run_model, has_checkpoint
from avss_nb.runs import run_dir, load_record

def test_record_without_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    spec = task_spec('tpavi', 's4', 'toy', 'smoke')
    row = measure(spec, tmp_path/'table', progress=False)
    assert row['run'] == spec.key() and row['run_file'] == f'../runs/{spec.key()}.json'
    shutil.rmtree(run_dir(spec.key()))                    # what a fresh clone has: the record, no checkpoint
    assert not has_checkpoint(spec) and load_record(spec) is not None
    again = measure(spec, tmp_path/'table', progress=False)  # a table needs only the record: no training
    assert again['miou'] == row['miou'] and not has_checkpoint(spec)
    model = run_model(spec, progress=False)                # weights needed: trained again, then loaded
    assert has_checkpoint(spec) and hasattr(model, 'predict')
