"""Three seeds of Table 1's S4 and MS3 runs at `quick` on FreeAVS: mean ± std per model, and the S4/MS3 claims with the seeds' spread.

    .venv/bin/python results/bench/seeds_quick.py [--train] [--jobs 2] [--seeds 0 1 2]

`--train` first trains the runs that have no record (two at a time with `--jobs 2`); without it the table is built from the
records in results/runs/ and a missing run is an error. Writes results/bench/seeds-quick.md and .json. AVSS is left out: its
runs are the longest and every AVSS model scores near background at this preset (Table 1).
"""
import argparse, json, os, sys
from pathlib import Path
import pandas as pd

from avss_nb.reproduce import (task_spec, train_runs, summarise, fmt_cell, check_claim, MODELS, ROBUSTNESS_TASKS)
from avss_nb.runs import load_record, record_path

ROWS = {m: {} for m in MODELS} | {'aavs (visual-only)': dict(audio='zero')}   # row -> task_spec keywords
OUT = Path(__file__).parent
NAMES = dict(aavs='AAVS', tpavi='TPAVI', avsegformer='AVSegFormer', avsc='AVSC')


def specs(seeds) -> list[tuple]:
    "(spec, row, task, seed) of every run the table needs."
    return [(task_spec(m.split()[0], t, 'freeavs', 'quick', s, **kw), m, t, s)
            for s in seeds for m, kw in ROWS.items() for t in ROBUSTNESS_TASKS]


def runs_frame(seeds) -> pd.DataFrame:
    "One row per run: its labels, test mIoU, F (one curve) and record path."
    rows = []
    for spec, row, task, seed in specs(seeds):
        rec = load_record(spec.key())
        if rec is None or rec.get('status') != 'done':
            sys.exit(f"run {spec.key()} ({row}, {task}, seed {seed}) has no finished record {record_path(spec.key())}: pass --train")
        test = rec['metrics']['test']
        rows.append(dict(method=row, task=task, seed=seed, miou=test['miou'], fscore=test.get('fscore'),
                         run=spec.key(), run_file=os.path.relpath(record_path(spec.key()), OUT),
                         git=rec['git']['commit'][:7] + ('+dirty' if rec['git'].get('dirty') else '')))
    return pd.DataFrame(rows)


def claims(stats:pd.DataFrame) -> list:
    "Table 1's S4/MS3 claims, with the seeds' combined spread ('within noise' when the gap is no larger)."
    cell = lambda m, t, k='miou': stats[(stats.method == m) & (stats.task == t)].iloc[0][[k, k + '_std']].tolist()
    out = []
    for t in ROBUSTNESS_TASKS:
        a, a_std = cell('aavs', t)
        for other, name in [*((p, f"AAVS beats {NAMES[p]} on {t.upper()} (mIoU)") for p in MODELS[1:]),
                            ('aavs (visual-only)', f"AAVS listens: it beats its visual-only control on {t.upper()} (mIoU)")]:
            b, b_std = cell(other, t)
            out.append(check_claim(name, a, b, a_std, b_std))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--train', action='store_true', help='train the runs without a record first')
    ap.add_argument('--jobs', default='auto', help='runs trained at once')
    args = ap.parse_args()
    if args.train: train_runs([s for s, *_ in specs(args.seeds)], args.jobs)
    runs = runs_frame(args.seeds)
    stats = summarise(runs, ['method', 'task'], ['miou', 'fscore'])
    seeds = ', '.join(map(str, args.seeds))
    lines = [f"# Three seeds of Table 1's S4 and MS3 runs (quick, FreeAVS, test split, seeds {seeds})", '',
             "mIoU and F (one curve over the test set) in %, mean ± sample std over the seeds; each number links to its runs "
             "(seed order). Revisions that trained them: " + ', '.join(sorted(set(runs.git))) + '.', '',
             '| method | ' + ' | '.join(f'{t} mIoU | {t} F (one curve) | {t} mIoU per seed' for t in ROBUSTNESS_TASKS) + ' |',
             '|---|' + '---|---|---|' * len(ROBUSTNESS_TASKS)]
    for m in ROWS:
        cells = []
        for t in ROBUSTNESS_TASKS:
            r = stats[(stats.method == m) & (stats.task == t)].iloc[0]
            links = [f"../runs/{Path(f).name}" for f in r.run_files]
            per_seed = ' / '.join(f"{100 * v:.1f}" for v in runs[(runs.method == m) & (runs.task == t)].miou)
            cells += [fmt_cell(r.miou, r.miou_std, r.seeds, links), fmt_cell(r.fscore, r.fscore_std, r.seeds), per_seed]
        lines.append(f"| {m} | " + ' | '.join(cells) + ' |')
    lines += ['', "A verdict is 'within noise' when the gap between the means is no larger than the two stds combined "
              "(sqrt(std_a² + std_b²)).", '', '| claim | ours | spread | verdict |', '|---|---|---|---|']
    cl = claims(stats)
    lines += [f"| {c.claim} | {c.left:.1f} vs {c.right:.1f} | {c.spread:.1f} | {c.verdict} |" for c in cl]
    text = '\n'.join(lines) + '\n'
    (OUT/'seeds-quick.md').write_text(text)
    (OUT/'seeds-quick.json').write_text(json.dumps(dict(runs=runs.to_dict('records'), stats=stats.to_dict('records'),
                                                        claims=[dict(claim=c.claim, left=c.left, right=c.right, spread=c.spread,
                                                                     verdict=c.verdict) for c in cl]), indent=1))
    print(text)


if __name__ == '__main__':
    main()
