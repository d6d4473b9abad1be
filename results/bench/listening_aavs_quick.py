"Retrain (for weights) AAVS's S4 and MS3 quick runs and measure how they listen: real / silent / mismatched audio."
# run from the repository root: .venv/bin/python results/bench/listening_aavs_quick.py (retrains a run whose checkpoint is missing)
import json, sys, time, torch
from avss_nb.config import apply_threads
from avss_nb.reproduce import task_spec, run_model, revision
from avss_nb.runs import build_dataset, load_record
from avss_nb.robustness import listening_metrics
if __name__ == '__main__':
    apply_threads(1)
    out = {}
    for task, audio in [('s4', 'real'), ('ms3', 'real'), ('s4', 'zero')]:
        spec = task_spec('aavs', task, 'freeavs', 'quick', 0, **({} if audio == 'real' else dict(audio='zero')))
        t = time.time(); net = run_model(spec, progress=False)
        test = build_dataset(spec.dataset, 'test', spec.task, spec.preset)
        lm = listening_metrics(net, test, spec.task, seed=0)
        rec = load_record(spec.key())
        out[f'{task}-{audio}'] = dict(run=spec.key(), record_test_miou=rec['metrics']['test']['miou'], git=rec['git'], **lm)
        print(task, audio, spec.key(), round(time.time() - t), json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in lm.items()}), flush=True)
    json.dump(dict(revision=revision(), machine='2-core x86_64 CPU, 1 torch thread', results=out), open('results/bench/listening-aavs-quick-session7.json', 'w'), indent=1)
