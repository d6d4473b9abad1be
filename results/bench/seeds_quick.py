"""Three seeds of Table 1's S4 and MS3 runs at `quick` on FreeAVS: Table 1's S4/MS3 columns and claims, as mean ± std.

    .venv/bin/python results/bench/seeds_quick.py [--train] [--jobs 2] [--seeds 0 1 2]

`--train` first trains the runs that have no record, `--jobs` at a time (`reproduce.train_runs`); without it a missing
run is trained inside this process by `reproduce.measure`, as a table notebook would. The rows, cells and claims are
built by the same functions as Table 1's notebook (`measure`, `summarise`, `comparison_table`, `cell_claim`,
`write_table`) and written to results/bench/seeds-quick.{csv,md}. AVSS is left out: its runs are the longest and every
AVSS model scores near background at this preset (Table 1).
"""
import argparse
from pathlib import Path
import pandas as pd

from avss_nb.reproduce import (PAPER, MODELS, ROBUSTNESS_TASKS, task_spec, train_runs, measure, summarise,
                               comparison_table, cell_claim, write_table, experiment_setup)

ROWS = {m: {} for m in MODELS} | {'aavs (visual-only)': dict(audio='zero')}   # Table 1's row -> task_spec keywords
NAMES = dict(tpavi='TPAVI', avsegformer='AVSegFormer', avsc='AVSC')
OUT = Path(__file__).parent


def specs(seeds) -> list[tuple]:
    "(spec, labels) of every run the table needs."
    return [(task_spec(m.split()[0], t, 'freeavs', 'quick', s, **kw), dict(method=m, task=t, seed=s))
            for s in seeds for m, kw in ROWS.items() for t in ROBUSTNESS_TASKS]


def claims(summary:pd.DataFrame) -> list:
    "Table 1's S4/MS3 claims, one peer at a time, and AAVS against its visual-only control."
    out = []
    for t in ROBUSTNESS_TASKS:
        out += [cell_claim(f"AAVS beats {NAMES[p]} on {t.upper()} (mIoU)", summary, 'method', 'task', 'aavs', p, t) for p in MODELS[1:]]
        out.append(cell_claim(f"AAVS listens: it beats its visual-only control on {t.upper()} (mIoU)", summary, 'method', 'task',
                              'aavs', 'aavs (visual-only)', t))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--train', action='store_true', help='train the runs without a record first, side by side')
    ap.add_argument('--jobs', default='auto', help='runs trained at once')
    args = ap.parse_args()
    todo = specs(args.seeds)
    if args.train: train_runs([s for s, _ in todo], args.jobs)
    _, seeds, _, caption = experiment_setup('freeavs', 'quick', seeds=args.seeds)
    rows = pd.DataFrame([measure(spec, OUT, progress=False, **labels) for spec, labels in todo])
    summary = summarise(rows, ['method', 'task'], ['miou', 'fscore', 'fscore_curve'])
    csv, md = comparison_table(summary, 'method', 'task', PAPER['table1'], list(ROWS), list(ROBUSTNESS_TASKS),
                               metrics=('miou', 'fscore', 'fscore_curve'))
    caption += (" S4 and MS3 only; each cell links to its runs in seed order. A verdict is 'within noise' when the gap"
                " between the means is no larger than the two stds combined, sqrt(std_a² + std_b²).")
    paths = write_table('seeds-quick', csv, md, claims(summary), caption, OUT)
    print(Path(paths[1]).read_text())


if __name__ == '__main__':
    main()
