"Tables rebuild from run records alone; weights missing on this machine are retrained when an evaluation needs them."
import shutil
from avss_nb.reproduce import task_spec, measure, run_model, has_checkpoint
from avss_nb.runs import run_dir, load_record

def test_record_without_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    spec = task_spec('tpavi', 's4', 'toy', 'smoke')
    row = measure(spec, tmp_path/'table', progress=False)
    assert row['run'] == spec.key() and row['run_file'] == f'../runs/{spec.key()}.json'
    assert row['miou_present'] is None and 0 <= row['miou'] <= 1   # binary metrics have no classes to leave out
    shutil.rmtree(run_dir(spec.key()))                    # what a fresh clone has: the record, no checkpoint
    assert not has_checkpoint(spec) and load_record(spec) is not None
    again = measure(spec, tmp_path/'table', progress=False)  # a table needs only the record: no training
    assert again['miou'] == row['miou'] and not has_checkpoint(spec)
    model = run_model(spec, progress=False)                # weights needed: trained again, then loaded
    assert has_checkpoint(spec) and hasattr(model, 'predict')


def test_tables_print_each_papers_f_definition(tmp_path, monkeypatch):
    """Beside the paper's number stands the paper's F (official per batch, at that paper's test batch); the one-curve F is extra.
    AVSS rows carry the mIoU over the classes present in the ground truth (FreeAVS has 36 of the 71); binary rows None."""
    from avss_nb.runs import write_record
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    test = dict(miou=0.5, fscore=0.61, fscore_b1=0.71, fscore_b2=0.72, fscore_b4=0.74)
    for model, task, want in [('tpavi', 's4', 0.74), ('avsegformer', 'ms3', 0.72), ('aavs', 's4', 0.71), ('aavs', 'avss', 0.61)]:
        spec = task_spec(model, task, 'toy', 'smoke')
        metrics = dict(test, miou_present=0.55) if task == 'avss' else test
        write_record(dict(hash=spec.key(), spec=spec.to_dict(), status='done', metrics=dict(test=metrics)))
        row = measure(spec, tmp_path/'table', progress=False)               # the record exists: nothing is trained
        assert (row['fscore'], row['fscore_curve']) == (want, 0.61), (model, task, row)
        assert (row['miou'], row['miou_present']) == (0.5, 0.55 if task == 'avss' else None), (model, task, row)


def test_train_runs_side_by_side_trains_each_missing_run_once(tmp_path, monkeypatch):
    """`reproduce --jobs 2` trains the missing runs in two processes before the notebooks: a stage-2 run whose stage-1 run
    the other process holds waits for it, every run gets a finished record and checkpoint, and a second call trains nothing."""
    from avss_nb.reproduce import train_runs, stage1_spec, ss_spec
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    specs = [stage1_spec('toy', 'smoke'), ss_spec('aavs', 'toy', 'smoke'), task_spec('tpavi', 's4', 'toy', 'smoke')]
    done = train_runs(specs, jobs=2)
    assert sorted(key for key, _, _ in done) == sorted(s.key() for s in specs)
    for s in specs: assert load_record(s.key())['status'] == 'done' and has_checkpoint(s), s.key()
    first = {s.key(): load_record(s.key())['created'] for s in specs}
    assert train_runs(specs, jobs=2) == []                                   # nothing left to train
    assert {s.key(): load_record(s.key())['created'] for s in specs} == first

def _written(key) -> float:
    "When a run's record was written, in seconds since the epoch (records keep whole seconds)."
    from datetime import datetime
    return datetime.fromisoformat(load_record(key)['created']).timestamp()

def _started_after(later, earlier) -> bool:
    "Whether run `later` began training after run `earlier`'s record was written (1 s: the records' time resolution)."
    rec = load_record(later)
    return _written(later) - rec['wall_s'] >= _written(earlier) - 1

def test_train_runs_trains_stage1_before_the_stage2_runs_reading_it(tmp_path, monkeypatch):
    """With `force` and two jobs, a stage-2 run starts only after its stage-1 run is retrained (not on the old weights); a
    stage-1 run whose record is here without its checkpoint (a fresh clone) is trained again for its weights first."""
    from avss_nb.reproduce import train_runs, stage1_spec, ss_spec, _stage1_first
    from avss_nb.runs import record_path
    from avss_nb.config import get_settings
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    s1, s2, other = stage1_spec('toy', 'smoke'), ss_spec('aavs', 'toy', 'smoke'), task_spec('tpavi', 's4', 'toy', 'smoke')
    train_runs([s2, other, s1], jobs=2)                          # stage 2 listed first: the stage-1 run still leads
    assert _started_after(s2.key(), s1.key())
    before = _written(s1.key())
    train_runs([s2, other, s1], jobs=2, force=True)
    assert _written(s1.key()) > before and _started_after(s2.key(), s1.key())   # retrained, before stage 2 began
    shutil.rmtree(run_dir(s1.key())); shutil.rmtree(run_dir(s2.key())); record_path(s2.key()).unlink()
    first, later = _stage1_first([s2], get_settings())
    assert [(s.key(), w) for s, w in first] == [(s1.key(), True)] and [(s.key(), w) for s, w in later] == [(s2.key(), False)]
    done = train_runs([s2, s1], jobs=2)                          # the stage-1 record is done: only its weights are made
    assert [key for key, _, _ in done] == [s1.key(), s2.key()] and has_checkpoint(s1) and has_checkpoint(s2)
    assert _started_after(s2.key(), s1.key())

def test_train_runs_retrains_the_runs_whose_weights_a_notebook_loads(tmp_path, monkeypatch):
    """A fresh clone has the records of the robustness runs but not their weights: `train_runs(weights=...)` trains those
    again side by side (not one by one inside the notebook), a stage-2 run in `weights` after the stage-1 run it reads, and a
    run with its checkpoint here is left alone."""
    from avss_nb.reproduce import train_runs, stage1_spec, ss_spec, weight_specs
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    s1, s2, other = stage1_spec('toy', 'smoke'), ss_spec('aavs', 'toy', 'smoke'), task_spec('tpavi', 's4', 'toy', 'smoke')
    train_runs([s1, s2, other], jobs=2)
    shutil.rmtree(run_dir(s1.key())); shutil.rmtree(run_dir(s2.key()))      # records kept, weights gone; `other` keeps both
    created = {s.key(): load_record(s.key())['created'] for s in (s1, s2, other)}
    assert train_runs([s1, s2, other], jobs=2) == []                     # records are all a table needs
    done = train_runs([s1, s2, other], jobs=2, weights=[s2, other])
    assert [key for key, _, _ in done] == [s1.key(), s2.key()] and has_checkpoint(s1) and has_checkpoint(s2)
    assert _started_after(s2.key(), s1.key()) and load_record(other.key())['created'] == created[other.key()]
    keys = {s.key() for s in weight_specs(['table1', 'robustness'], 'toy', 'smoke', [0])}
    assert keys == {task_spec(m, t, 'toy', 'smoke', 0).key() for m in ('aavs', 'tpavi', 'avsegformer', 'avsc') for t in ('s4', 'ms3')}
    assert weight_specs(['table1', 'table3'], 'toy', 'smoke', [0]) == []

def test_weight_specs_adds_table_runs_whose_prior_evaluation_is_not_cached(tmp_path, monkeypatch):
    """Table 2 scores each stepped peer with the low, high and oracle priors, cached in its record. A record without one
    of them (a retrain that changed the weights drops them) needs the run's weights and the stage-1 run behind that prior,
    trained in `train_runs`' pool before the notebook; once the evaluation is cached, nothing is."""
    from avss_nb.reproduce import table2_runs, weight_specs, unscored_prior
    from avss_nb.runs import write_record
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    stage1, rows = table2_runs('toy', 'smoke', [0])
    for s1, _ in stage1: write_record(dict(hash=s1.key(), spec=s1.to_dict(), status='done', metrics={}))
    stepped = [(s, labels) for s, labels in rows if labels['method'] == 'tpavi' and 'prior' in labels]
    spec, prior = stepped[0][0], {labels['level']: labels['prior'] for _, labels in stepped}
    cached = {f"{spec.dataset}|test|{prior[level]}": {} for level in ('high', 'oracle')}
    write_record(dict(hash=spec.key(), spec=spec.to_dict(), status='done', metrics={}, evaluations=cached))
    low = next(s1 for s1, labels in stage1 if labels['level'] == 'low')
    assert prior['low'] == f'run:{low.key()}' and unscored_prior(spec, dict(prior=prior['low'])) == prior['low']
    assert unscored_prior(spec, dict(prior=prior['high'])) is None and unscored_prior(spec, {}) is None
    assert {s.key() for s in weight_specs(['table2'], 'toy', 'smoke', [0])} == {spec.key(), low.key()}   # no record: trained anyway
    write_record(dict(load_record(spec.key()), evaluations=dict(cached, **{f"{spec.dataset}|test|{prior['low']}": {}})))
    assert weight_specs(['table2', 'table1'], 'toy', 'smoke', [0]) == []

def test_a_stage1_retrain_with_other_weights_makes_the_stage2_scores_stale(tmp_path, monkeypatch):
    """A stage-2 score names the stage-1 weights whose priors it read. Once that stage-1 run has other weights (retrained on
    another machine), the score is stale: the table run needs its weights again, to be scored with the new priors."""
    from avss_nb.reproduce import table2_runs, table4_runs, unscored_prior
    from avss_nb.runs import write_record
    monkeypatch.setenv('AVSS_RUNS_DIR', str(tmp_path/'runs'))
    stage1, rows = table2_runs('toy', 'smoke', [0])
    low = next(s1 for s1, labels in stage1 if labels['level'] == 'low')
    spec, labels = next((s, l) for s, l in rows if l.get('prior') == f'run:{low.key()}')
    write_record(dict(hash=low.key(), spec=low.to_dict(), status='done', metrics={}, weights_sha256='1' * 16))
    source = dict(source=f'run:{low.key()}', weights_sha256='1' * 16)
    write_record(dict(hash=spec.key(), spec=spec.to_dict(), status='done', metrics={},
                      evaluations={f"{spec.dataset}|test|{labels['prior']}": dict(prior_source=source)}))
    assert unscored_prior(spec, labels) is None
    write_record(dict(load_record(low.key()), weights_sha256='2' * 16))         # stage 1 retrained: other weights
    assert unscored_prior(spec, labels) == labels['prior']
    final, actual = next((s, l) for s, l in table4_runs('toy', 'smoke', [0]) if 'prior' not in l)   # its own test score, stage-1 prior
    from avss_nb.reproduce import stage1_spec
    s1 = stage1_spec('toy', 'smoke').key()
    assert final.eval_prior == f'run:{s1}'
    write_record(dict(hash=s1, spec=stage1_spec('toy', 'smoke').to_dict(), status='done', metrics={}, weights_sha256='1' * 16))
    write_record(dict(hash=final.key(), spec=final.to_dict(), status='done', metrics={}, priors=dict(eval=dict(source=final.eval_prior, weights_sha256='1' * 16))))
    assert unscored_prior(final, actual) is None
    write_record(dict(load_record(s1), weights_sha256='2' * 16))
    assert unscored_prior(final, actual) == final.eval_prior
