"Listening of one quick FreeAVS run (retrained for its weights if its checkpoint is missing): real / silent / mismatched audio."
# run from the repository root: .venv/bin/python results/bench/listening_quick.py MODEL TASK [zero] [--split train --videos 300]
# --split train scores scenes built from the training media (cut-outs and recordings the model was trained on; v1s train
# has ground truth on frame 0 only), the first --videos of them: does the model pair a sound with an object it has seen?
import argparse, json, time
from torch.utils.data import Subset
from avss_nb.config import apply_threads
from avss_nb.reproduce import task_spec, run_model, revision
from avss_nb.runs import build_dataset, load_record
from avss_nb.robustness import listening_metrics
if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('model'); p.add_argument('task'); p.add_argument('audio', nargs='?', default='real', choices=['real', 'zero'])
    p.add_argument('--split', default='test', choices=['train', 'val', 'test'])
    p.add_argument('--videos', type=int, default=None, help='score only the first N videos of the split')
    args = p.parse_args()
    apply_threads(1)
    spec = task_spec(args.model, args.task, 'freeavs', 'quick', 0, **({} if args.audio == 'real' else dict(audio='zero')))
    t = time.time(); net = run_model(spec, progress=False)
    ds = build_dataset(spec.dataset, args.split, spec.task, spec.preset)
    if args.videos: ds = Subset(ds, range(min(args.videos, len(ds))))
    lm = listening_metrics(net, ds, spec.task, seed=0)
    rec = load_record(spec.key())
    out = dict(revision=revision(), machine='2-core x86_64 CPU, 1 torch thread', model=args.model, task=args.task, audio=args.audio,
               split=args.split, videos=len(ds), run=spec.key(), record_test_miou=rec['metrics']['test']['miou'], git=rec['git'],
               seconds=round(time.time() - t), **lm)
    suffix = '' if args.split == 'test' and not args.videos else f'-{args.split}{args.videos or ""}'
    path = f'results/bench/listening-{args.model}-{args.task}-{spec.key()}{suffix}.json'
    json.dump(out, open(path, 'w'), indent=1)
    print(path, json.dumps(out), flush=True)
