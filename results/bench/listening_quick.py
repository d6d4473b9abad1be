"Listening of one quick FreeAVS run (retrained for its weights if its checkpoint is missing): real / silent / mismatched audio."
# run from the repository root: .venv/bin/python results/bench/listening_quick.py MODEL TASK [zero]
import json, sys, time
from avss_nb.config import apply_threads
from avss_nb.reproduce import task_spec, run_model, revision
from avss_nb.runs import build_dataset, load_record
from avss_nb.robustness import listening_metrics
if __name__ == '__main__':
    apply_threads(1)
    model, task, audio = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else 'real')
    spec = task_spec(model, task, 'freeavs', 'quick', 0, **({} if audio == 'real' else dict(audio='zero')))
    t = time.time(); net = run_model(spec, progress=False)
    lm = listening_metrics(net, build_dataset(spec.dataset, 'test', spec.task, spec.preset), spec.task, seed=0)
    rec = load_record(spec.key())
    out = dict(revision=revision(), machine='2-core x86_64 CPU, 1 torch thread', model=model, task=task, audio=audio,
               run=spec.key(), record_test_miou=rec['metrics']['test']['miou'], git=rec['git'], seconds=round(time.time() - t), **lm)
    path = f'results/bench/listening-{model}-{task}-{spec.key()}.json'
    json.dump(out, open(path, 'w'), indent=1)
    print(path, json.dumps(out), flush=True)
