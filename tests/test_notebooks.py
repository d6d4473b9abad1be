"Run every notebook under nbs/ through nbdev's test machinery: one test per notebook, `slow`/`gpu` cells skipped."
from pathlib import Path
import pytest
import nbdev.test as nbtest   # not `from nbdev.test import test_nb`: pytest would collect it

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb')
                   if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT/'nbs').parts))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT/'nbs')))
def test_notebook(nb):
    ok, seconds = nbtest.test_nb(nb, skip_flags=['slow', 'gpu'], basepath=ROOT)
    assert ok, f"{nb.relative_to(ROOT)} failed (the error is printed above)"
