"Shared pytest set-up: keep every test's outputs out of the work tree."
import os, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

# Tests (and the notebooks they execute) must leave `git status` clean: results, runs and datasets they
# make go to a scratch folder unless the caller chose one.
_SCRATCH = Path(tempfile.mkdtemp(prefix='avss_nb_tests_'))
for key, sub in [('AVSS_RESULTS_DIR', 'results'), ('AVSS_RUNS_DIR', 'results/runs'),
                 ('AVSS_FREEAVS_ROOT', 'freeavs'), ('AVSS_FREEAVS_PACK', 'freeavs_pack')]:
    os.environ.setdefault(key, str(_SCRATCH/sub))
os.environ.setdefault('AVSS_DEVICE', 'cpu')
os.environ.setdefault('AVSS_WORKERS', '0')
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
