"JupyterLab's saves go through nbdev-clean (pyproject `jupyter_hooks`), so opening a notebook there does not break sync-check."
import json, shutil
from pathlib import Path
import nbdev.clean

ROOT = Path(__file__).resolve().parent.parent


def test_jupyter_save_is_cleaned(tmp_path):
    "The pre-save hook `make install` installs cleans the metadata JupyterLab writes, with this project's pyproject.toml."
    shutil.copy(ROOT/'pyproject.toml', tmp_path/'pyproject.toml')
    (tmp_path/'nbs').mkdir()
    path = tmp_path/'nbs'/'x.ipynb'
    nb = json.loads((ROOT/'nbs'/'00a_labels.ipynb').read_text())
    path.write_text(json.dumps(nb))
    nb['metadata']['kernelspec'] = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}
    nb['metadata']['language_info'] = {'name': 'python', 'version': '3.11.7'}   # what JupyterLab adds on save
    nb['cells'][0]['execution_count'] = 7
    nbdev.clean.clean_jupyter(path=str(path), model={'type': 'notebook', 'content': nb})   # the hook, as the server calls it
    assert nb['metadata'] == {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    assert nb['cells'][0]['execution_count'] is None


def test_makefile_installs_the_hook():
    "`make install` runs nbdev-install-hooks."
    text = (ROOT/'Makefile').read_text()
    assert 'install: $(VENV)/.installed hooks' in text and '$(BIN)/nbdev-install-hooks' in text
