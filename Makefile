# avss_nb: the two commands are `make reproduce` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What this machine kind needs (local wheels); override for other machines, e.g. TORCH_PINS="torch torchvision torchaudio".
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
PRESET ?= quick
PYTEST_ARGS ?=
REPRODUCE_ARGS ?=   # more `avss-nb reproduce` arguments, e.g. REPRODUCE_ARGS=--force to train every run again

.PHONY: install hooks test sync-check reproduce gpu-wheels gpu-check clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed hooks

# JupyterLab rewrites a notebook's metadata when it saves it (kernelspec display name, language_info), which sync-check
# rejects. With `jupyter_hooks = true` in pyproject.toml, nbdev's pre-save hook cleans every save; nbdev-install-hooks puts
# it in ~/.jupyter/jupyter_{server,notebook}_config.py (--globally: no files in the repo; no git merge/diff drivers).
hooks: $(VENV)/.installed
	@$(BIN)/nbdev-install-hooks --globally true --merge false --diff false >/dev/null && \
		echo "nbdev Jupyter hook in ~/.jupyter: JupyterLab (started from $(VENV)) saves notebooks through nbdev-clean"

# nbdev-export and nbdev-clean must leave the work tree exactly as they found it.
sync-check: install
	@state() { git status --porcelain --untracked-files=all; git diff; }; \
	before=$$(state | md5sum); \
	$(BIN)/nbdev-export; \
	if [ "$$(state | md5sum)" != "$$before" ]; then git status --short; echo "nbdev-export changed files: notebooks and library are not in sync. Run nbdev-export and commit."; exit 1; fi; \
	$(BIN)/nbdev-clean; \
	if [ "$$(state | md5sum)" != "$$before" ]; then git status --short; echo "nbdev-clean changed notebooks (JupyterLab rewrites their metadata unless make install set up the nbdev hook): run $(BIN)/nbdev-clean and commit."; exit 1; fi; \
	echo "sync-check: notebooks exported and clean"

test: sync-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Install, build the FreeAVS media pack and the preset's dataset if missing (rebuild it if an older plan wrote it), then run every experiment notebook.
reproduce: install
	@set -e; \
	pack=$$($(BIN)/python -c "from avss_nb.config import get_settings; print(get_settings().freeavs_pack)"); \
	data=$$($(BIN)/python -c "from avss_nb.config import get_settings, get_preset; s = get_settings(); print(s.freeavs_root/get_preset('$(PRESET)').freeavs)"); \
	fpreset=$$($(BIN)/python -c "from avss_nb.config import get_preset; print(get_preset('$(PRESET)').freeavs)"); \
	if [ ! -f "$$pack/manifest.json" ]; then echo "== FreeAVS pack missing: building it in $$pack"; $(BIN)/avss-nb freeavs pack; fi; \
	if [ ! -f "$$data/metadata.csv" ]; then echo "== FreeAVS $$fpreset missing: building it in $$data"; $(BIN)/avss-nb freeavs build --preset $$fpreset --out "$$data"; \
	elif ! $(BIN)/python -c "import sys; from avss_nb.config import get_settings; from avss_nb.freeavs import build_is_current; sys.exit(not build_is_current('$$data', '$$fpreset', get_settings().seed))"; then \
	  echo "== FreeAVS $$fpreset in $$data is from another plan or seed: rebuilding it"; $(BIN)/avss-nb freeavs build --preset $$fpreset --out "$$data" --overwrite; fi; \
	echo "== running the experiment notebooks at preset $(PRESET)"; \
	$(BIN)/avss-nb reproduce --preset $(PRESET) --dataset freeavs $(REPRODUCE_ARGS)

# Wheels for a GPU machine that reaches no registry (Python 3.12, x86_64): what it lacks to run the experiment
# notebooks (papermill, its kernel, nbdev, soundfile). Packages that machine already has are removed (a second numpy
# breaks its torch). Carry .whl/ and data/freeavs_pack with the working tree; see README "On a GPU machine".
GPU_PY ?= 3.12
GPU_HAS := numpy pandas matplotlib pillow scipy torch torchvision torchaudio timm transformers tqdm safetensors psutil \
	pyyaml requests contourpy kiwisolver fonttools cycler pyparsing python_dateutil packaging six urllib3 idna \
	charset_normalizer certifi tzdata pytz
gpu-wheels: install
	rm -rf .whl
	$(BIN)/python -m pip download -q --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform any -d .whl papermill nbdev ipykernel soundfile cffi
	@cd .whl && for name in $(GPU_HAS); do rm -f $$name-*.whl $$(echo $$name | sed 's/^./\U&/')-*.whl; done; \
	ls | wc -l | xargs echo "wheels in .whl:"; du -sh . | cut -f1 | xargs echo "size:"

# One command for a lent GPU machine (<= 8 min): environment, bench model --vs-hf at the paper configuration, one short
# epoch + evaluation per model on FreeAVS rendered from data/freeavs_pack; report gpu_check.{md,json} in $(OUT)
# (default results/gpu). Runs with the machine's own python3 (no venv, no install); see README "On a GPU machine".
GPU_CHECK_PYTHON ?= python3
OUT ?= results/gpu
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 $(GPU_CHECK_PYTHON) -m avss_nb.gpu_check --out "$(OUT)" $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
